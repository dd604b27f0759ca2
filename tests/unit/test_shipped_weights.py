"""The default model that ships in the package: found without flags, small, documented, working."""

from __future__ import annotations

import pytest
import torch

from instantvir_cli.learned import learned_restorer
from instantvir_cli.models.checkpoint import read_header
from instantvir_cli.models.lookup import find_checkpoint
from instantvir_cli.ops import build_operator

HELD_OUT = ("carphone_pristine", "bigbuckbunny")


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    monkeypatch.delenv("VIR_CHECKPOINT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    return find_checkpoint(None)


def test_the_package_weights_are_found_without_flags_and_fit_the_budget(shipped):
    assert shipped.parent.name == "weights" and shipped.parent.parent.name == "instantvir_cli"
    assert shipped.stat().st_size <= 40e6


def test_header_has_every_task_and_its_provenance(shipped):
    h = read_header(shipped)
    assert set(h["tasks"]) == {"inpaint", "deblur", "sr4x"}
    assert h["storage"] == "int8"
    for entry in h["tasks"].values():
        assert entry["residual"] is True and entry["init"] in ("fast", "classical")
    prov = h["provenance"]
    assert prov["recipe"]["run"]["name"] == "default" and len(prov["git"]) == 40
    assert all(prov["steps"][f"student_{t}"] > 0 for t in h["tasks"]) and prov["steps"]["vae"] > 0
    trained_on = set(prov["data"]["train_videos"])
    assert trained_on and not trained_on & set(HELD_OUT)        # the evaluation clips were set aside


@pytest.mark.parametrize("task", ["inpaint", "deblur", "sr4x"])
@torch.inference_mode()
def test_each_default_student_restores_held_out_footage(shipped, bunny_mp4, task):
    """13 frames of bigbuckbunny (never trained on), 8-bit measurement as `vir degrade` writes it:
    the output has the clip's shape and stays near its initial estimate's error (the residual
    design starts there; the README's table has the measured gains and losses)."""
    from instantvir_cli.distill.validate import quantize_8bit
    from instantvir_cli.video import VideoReader

    with VideoReader(bunny_mp4, block_size=13) as reader:
        x = next(iter(reader)).x[:, :, :, 300:396, 500:628]          # (1, 3, 13, 96, 128)
    op = build_operator(task, *x.shape[-2:])
    y = quantize_8bit(op.A(x))
    r = learned_restorer(op)
    out = torch.cat([r.push(y), r.flush()], 2)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert float(((out - x) ** 2).mean()) < 1.25 * float(((r.estimate(op, y) - x) ** 2).mean())
