"""The ode stage: the teacher's ODE pairs, one point per causal block, the regression of the causal
student, its checkpoint, exact resume, and the student stage starting from its file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from instantvir_cli.distill import export as X
from instantvir_cli.distill.ode import block_points, ode_points
from instantvir_cli.distill.trainer import run_distill
from instantvir_cli.errors import ConfigError
from instantvir_cli.models.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_trainer import records, tiny  # noqa: E402


def test_ode_points_follow_a_straight_flow():
    """With v = eps - x0 (a straight path) Euler is exact: x_s = (1 - s) x0 + s eps at every kept s."""
    g = torch.Generator().manual_seed(0)
    eps, x0 = torch.randn(2, 4, 3, 2, 2, generator=g), torch.randn(2, 4, 3, 2, 2, generator=g)
    s_points = (1.0, 0.757, 0.522)
    pts = ode_points(lambda x, t: eps - x0, eps, s_points, steps=7, shift=8.0)
    assert pts.shape == (2, 4, 4, 3, 2, 2)
    for k, s in enumerate(s_points):
        assert torch.allclose(pts[:, k], (1 - s) * x0 + s * eps, atol=1e-5)
    assert torch.allclose(pts[:, -1], x0, atol=1e-5)


def test_one_point_per_causal_block():
    pts = torch.arange(3.0).view(1, 3, 1, 1, 1, 1).expand(4, 3, 2, 7, 2, 2).clone()   # value = its k
    x_t, s = block_points(pts, (1.0, 0.5), block_frames=3, seeds=torch.arange(4))
    assert x_t.shape == (4, 2, 7, 2, 2) and s.shape == (4, 7)
    k = x_t[:, 0, :, 0, 0]                                                             # (B, T')
    assert set(k.unique().tolist()) <= {0.0, 1.0}                                      # never x0 itself
    for b in range(4):
        for blk in (k[b, 0:3], k[b, 3:6], k[b, 6:7]):
            assert (blk == blk[0]).all()                                               # one k a block
    assert torch.equal(s, torch.where(k == 0, 1.0, 0.5))
    again, _ = block_points(pts, (1.0, 0.5), block_frames=3, seeds=torch.arange(4))
    assert torch.equal(again, x_t)                                                     # a function of the seeds


def ode_run(clips, out, **ode):
    return tiny(clips, out, run={"stages": ["vae", "teacher", "ode", "student"], "checkpoint_every": 0},
                vae={"steps": 1}, teacher={"steps": 1},
                ode={"steps": 2, "batch": 2, "lr": 1e-3, "sample_steps": 3, **ode},
                student={"steps": 1, "batch": 1})


def test_ode_stage_resumes_exactly_and_starts_the_student(clips, tmp_path):
    ref = tmp_path / "ref"
    run_distill(ode_run(clips, ref))
    log = records(ref, "train", "ode")
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 for r in log)
    ode = load_checkpoint(ref / X.ODE_FILE)
    teacher = load_checkpoint(ref / X.TEACHER_FILE)
    assert ode.header["dit"] == teacher.header["dit"] and ode.header["provenance"]["steps"]["ode"] == 2
    trained = ode.state_dict("teacher")
    assert any(not torch.equal(v, teacher.state_dict("teacher")[k]) for k, v in trained.items())
    state = torch.load(ref / "student_sr4x" / "state.pt", weights_only=True)
    assert state["upstream"]["ode"]                                   # the student started from ode.safetensors
    out = tmp_path / "b"
    run_distill(ode_run(clips, out), max_steps=1)
    run_distill(ode_run(clips, out), resume=True)
    assert records(out, "resume", "ode")[0]["step"] == 1
    a, b = (torch.load(d / "ode" / "state.pt", weights_only=True)["modules"]["student"] for d in (ref, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ode_config_is_validated(clips, tmp_path):
    with pytest.raises(ConfigError, match="ode.timesteps: expected strictly descending"):
        ode_run(clips, tmp_path / "x", timesteps=[522.0, 757.0])
    with pytest.raises(ConfigError, match="ode.sample_steps"):
        ode_run(clips, tmp_path / "x", sample_steps=0)
    cfg = ode_run(clips, tmp_path / "x")
    import dataclasses

    bad = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, weights="elsewhere.safetensors"))
    with pytest.raises(ConfigError, match="student.weights: the ode stage makes the student's start"):
        run_distill(bad)
    assert not (tmp_path / "x").exists()
