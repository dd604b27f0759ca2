"""The trainer on tiny models and synthetic clips: exact resume, stage invalidation, the export
format that `vir restore` loads, accumulation, gradient checkpointing, teacher-space DMD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from instantvir_cli.config import DistillConfig, from_dict, to_dict
from instantvir_cli.distill import export as X
from instantvir_cli.distill.dist import DistEnv
from instantvir_cli.distill.stages import StudentStage
from instantvir_cli.distill.trainer import build_context, run_distill
from instantvir_cli.errors import ConfigError, OutputRefused
from instantvir_cli.models.checkpoint import load_checkpoint, read_header
from instantvir_cli.models.vae import VAE_PRESETS, LeanVAE


def tiny(clips: Path, out: Path, **tables) -> DistillConfig:
    """Every stage at test size: 5-frame 32x32 crops, VAE and DiT `tiny`, 1-frame causal blocks."""
    d = {
        "run": {"out": str(out), "log_every": 1, "checkpoint_every": 2, "val_every": 0, "threads": 1},
        "data": {"paths": [str(clips)], "footage": [], "images": ["astronaut"], "val_clips": ["val_b"],
                 "frames": 5, "crop": 32, "val_frames": 5, "val_size": 32, "workers": 0},
        "vae": {"preset": "tiny", "steps": 3, "batch": 2, "lr": 1e-3, "ema": 0.9},
        "teacher": {"preset": "tiny", "steps": 3, "batch": 2, "lr": 1e-3, "ema": 0.9},
        "student": {"tasks": ["sr4x"], "steps": 6, "batch": 2, "lr": 1e-3, "student_every": 2,
                    "causal": {"block_frames": 1, "cache_blocks": 1}},
    }
    for table, values in tables.items():
        d[table] = {**d.get(table, {}), **values}
    return from_dict(DistillConfig, d)


def records(out: Path, kind: str = "train", stage: str | None = None) -> list[dict]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind and (stage is None or r["stage"] == stage)]


def states(out: Path) -> dict[str, dict]:
    return {p.parent.name: torch.load(p, weights_only=True) for p in sorted(out.glob("*/state.pt"))}


def assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def uninterrupted(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    result = run_distill(tiny(clips, out))
    return out, result


def test_run_writes_the_folder(uninterrupted):
    out, result = uninterrupted
    assert result.export == out / X.EXPORT_FILE and set(result.rates) == {"vae", "teacher", "student_sr4x"}
    assert (out / "config.toml").is_file() and (out / X.VAE_FILE).is_file() and (out / X.TEACHER_FILE).is_file()
    train = records(out, stage="student_sr4x")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert "student_loss" in train[0] and "meas" in train[0] and "critic_loss" in train[1]
    assert "student_loss" not in train[1] and train[0]["lr_student"] == 1e-3 and train[0]["steps_per_s"] > 0
    val = records(out, "val", "student_sr4x")
    assert [r["step"] for r in val] == [0, 6]                         # initialization, then the end
    assert {"psnr", "ssim", "flicker", "raw_psnr", "classical_psnr", "init_psnr"} <= set(val[0])
    assert set(records(out, "val", "vae")[0]) >= {"psnr", "ssim"} and "fm" in records(out, "val", "teacher")[0]


def test_a_few_steps_lower_the_loss_and_lift_validation_above_the_estimate(clips, tmp_path):
    """Training learns: inpainting from the operator's estimate (zeros in the holes), residual
    decoding from a silent head (the student starts at x0), the pixel loss to the clean window,
    lr 1e-2 and no EMA. 100 steps lower the loss on 8 windows no step drew (measured 0.1657 ->
    0.1324) and lift the validation PSNR above the estimate's (15.58 -> 17.45 dB); with lr 1e-9
    neither moves (0.1657 -> 0.1657, 15.58 dB) and the test fails."""
    from torch.utils.data import default_collate

    out = tmp_path / "learns"
    cfg = tiny(clips, out, run={"checkpoint_every": 0}, vae={"steps": 100, "lr": 3e-3}, teacher={"steps": 1},
               student={"tasks": ["inpaint"], "steps": 100, "lr": 1e-2, "ema": 0.0, "init": "operator",
                        "residual": True, "zero_head": True, "dmd_weight": 0.0, "gt_weight": 1.0,
                        "gt_space": "pixel"})
    run_distill(cfg)
    start, end = records(out, "val", "student_inpaint")
    assert (start["step"], end["step"]) == (0, 100) and end["init_psnr"] == start["init_psnr"]
    assert abs(start["psnr"] - start["init_psnr"]) < 0.01          # a silent head returns the estimate
    # the student as it started (the run's VAE and teacher, the same seed) against the one it exported
    stage = StudentStage(build_context(cfg, DistEnv()), "inpaint")
    ds = stage.dataset()
    held = stage.prepare(default_collate([ds[10**6 + i] for i in range(8)]))

    def loss() -> float:
        with torch.no_grad():
            return float(stage.student_loss(dict(held), 0.0)["loss"].mean())

    before = loss()
    trained = load_checkpoint(out / "student_inpaint" / "student.safetensors").state_dict("student")
    stage.trained["student"].module.load_state_dict(trained)
    after = loss()
    print(f"held-out loss {before:.4f} -> {after:.4f}; validation PSNR {start['psnr']:.2f} -> {end['psnr']:.2f} dB "
          f"(estimate {end['init_psnr']:.2f})")
    assert after < 0.9 * before
    assert end["psnr"] > end["init_psnr"] + 1.0


def test_export_is_what_vir_restore_loads(uninterrupted, clips):
    out, _ = uninterrupted
    ck = load_checkpoint(out / X.EXPORT_FILE)
    h = ck.header
    assert set(ck.modules) == {"vae", "student_sr4x"}
    assert h["vae_preset"] == "tiny" and h["dit_preset"] == "tiny" and h["vae"]["latent_channels"] == 4
    assert h["dit"]["in_channels"] == 4 and h["dit"]["depth"] == 2
    entry = h["tasks"]["sr4x"]
    assert entry["module"] == "student_sr4x" and entry["consistency"] is True
    assert entry["student"] == {"block_frames": 1, "cache_blocks": 1, "s_star": 0.522}
    assert entry["operator"]["task"] == "sr4x" and entry["operator"]["kernel"] == "area"
    prov = h["provenance"]
    assert prov["recipe"] == to_dict(tiny(clips, out)) and prov["data"]["val"] == ["val_b"]
    assert prov["steps"] == {"vae": 3, "teacher": 3, "student_sr4x": 6} and prov["date"]
    assert "git" in prov
    from instantvir_cli.learned import learned_restorer
    from instantvir_cli.ops import build_operator

    r = learned_restorer(build_operator("sr4x", 48, 64), checkpoint=out / X.EXPORT_FILE)
    y = torch.rand(1, 3, 7, 12, 16) * 2 - 1
    x = torch.cat([r.push(y[:, :, :4]), r.push(y[:, :, 4:]), r.flush()], dim=2)
    assert x.shape == (1, 3, 7, 48, 64)


def test_resume_rewrites_an_export_older_than_a_student(uninterrupted, clips, tmp_path):
    """A student copied in after the export (trained in another folder) is exported on resume;
    a finished run whose export is up to date is left as it is."""
    import os
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted[0], out)
    export, student = out / X.EXPORT_FILE, out / "student_sr4x" / "student.safetensors"
    os.utime(export, (1e9, 1e9))
    os.utime(student, (1e9 - 10, 1e9 - 10))
    run_distill(tiny(clips, out), resume=True)
    assert export.stat().st_mtime == 1e9                  # up to date: untouched
    os.utime(student, (1e9 + 10, 1e9 + 10))
    run_distill(tiny(clips, out), resume=True)
    assert export.stat().st_mtime > 1e9 + 10              # older than the student: written anew
    assert read_header(export)["tasks"]["sr4x"]["module"] == "student_sr4x"


def test_resume_continues_exactly(uninterrupted, clips, tmp_path):
    ref, _ = uninterrupted
    out = tmp_path / "b"
    run_distill(tiny(clips, out), max_steps=3)       # vae, teacher done (3/3); student stops at 3 of 6
    assert read_header(out / "student_sr4x" / "student.safetensors")["provenance"]["steps"]["student_sr4x"] == 3
    run_distill(tiny(clips, out), resume=True)
    assert records(out, "resume", "student_sr4x")[0]["step"] == 3
    assert not records(out, "resume", "vae")                           # finished stages are skipped
    a, b = states(ref), states(out)
    assert a.keys() == b.keys() == {"vae", "teacher", "student_sr4x"}
    for stage in a:
        for part in ("step", "modules", "optim", "ema", "data"):
            assert_same(a[stage][part], b[stage][part], f"{stage}.{part}")
    ea, eb = load_checkpoint(ref / X.EXPORT_FILE), load_checkpoint(out / X.EXPORT_FILE)
    assert_same(ea.modules, eb.modules)


def test_changed_inputs_restart_later_stages(uninterrupted, clips, tmp_path):
    ref, _ = uninterrupted
    out = tmp_path / "c"
    run_distill(tiny(clips, out), max_steps=2)       # every stage stops at step 2
    run_distill(tiny(clips, out), resume=True)       # the VAE goes on to 3: teacher and student restart
    assert records(out, "resume", "vae")[0]["step"] == 2
    assert not records(out, "resume", "teacher") and not records(out, "resume", "student_sr4x")
    a, b = states(ref), states(out)
    for stage in a:
        assert_same(a[stage]["modules"], b[stage]["modules"], stage)


def test_run_folder_is_not_overwritten(uninterrupted, clips):
    out, _ = uninterrupted
    with pytest.raises(OutputRefused, match="already holds a run: pass --resume"):
        run_distill(tiny(clips, out))


def test_later_stages_need_their_inputs(clips, tmp_path):
    with pytest.raises(ConfigError, match="the later stages need a vae"):
        run_distill(tiny(clips, tmp_path / "d", run={"stages": ["teacher"]}))


def test_accumulation_and_checkpointing_keep_the_losses(clips, tmp_path):
    def teacher_losses(name, teacher=None, **run):
        cfg = tiny(clips, tmp_path / name, run={"stages": ["vae", "teacher"], **run},
                   vae={"steps": 1, "batch": 4}, teacher={"steps": 2, "batch": 4, **(teacher or {})})
        run_distill(cfg)
        return [r["loss"] for r in records(tmp_path / name, stage="teacher")]
    ref = teacher_losses("plain")
    assert teacher_losses("accumulate", teacher={"accumulate": 2}) == pytest.approx(ref, rel=1e-5)
    assert teacher_losses("checkpointing", grad_checkpointing=True) == pytest.approx(ref, rel=1e-6)


def test_teacher_space_prior(clips, tmp_path):
    torch.manual_seed(5)
    tvae = LeanVAE(VAE_PRESETS["tiny"])
    tpath = X.save_vae(tmp_path / "teacher_vae.safetensors", tvae, "tiny", 1.0, {})
    out = tmp_path / "e"
    cfg = tiny(clips, out, teacher={"vae": str(tpath)}, student={"steps": 2, "student_every": 1})
    run_distill(cfg)
    assert read_header(out / X.TEACHER_FILE)["vae"] == read_header(tpath)["vae"]
    # the prior's gradient reaches z_hat through the teacher's encoder and the student's decoder
    ctx = build_context(cfg, DistEnv())
    stage = StudentStage(ctx, "sr4x")
    assert stage.tvae is not None
    z_hat = torch.randn(1, 4, 2, 4, 4, requires_grad=True)
    stage.prior_space(z_hat).square().sum().backward()
    assert float(z_hat.grad.abs().sum()) > 0
    train = records(out, stage="student_sr4x")
    assert all(r["dmd_on"] == 1.0 for r in train) and all(torch.isfinite(torch.tensor(r["dmd"])) for r in train)


def test_residual_student_without_prior_trains_no_critic(uninterrupted, clips, tmp_path):
    """init = fast, residual decoding, pixel GT loss, no DMD: the student steps every iteration,
    no critic is trained, and the export tells `vir restore` how the student was trained."""
    src, out = uninterrupted[0], tmp_path / "r"
    out.mkdir()
    for f in (X.VAE_FILE, X.TEACHER_FILE):
        (out / f).write_bytes((src / f).read_bytes())
    cfg = tiny(clips, out, run={"stages": ["student"]},
               student={"steps": 3, "init": "fast", "residual": True, "dmd_weight": 0.0,
                        "gt_weight": 1.0, "gt_space": "pixel", "zero_head": True, "temporal_weight": 1.0})
    stage = StudentStage(build_context(cfg, DistEnv()), "sr4x")
    z = torch.randn(1, 4, 2, 8, 8)
    assert torch.equal(stage.restore(z), z)               # a silent head: z_hat = z_in at the start
    # so x_hat = x0, and the temporal term is the estimate's error change from frame to frame
    p = stage.prepare({"x": torch.rand(2, 3, 5, 32, 32) * 2 - 1, "seed": torch.tensor([3, 4])})
    with torch.no_grad():
        terms = stage.student_loss(dict(p), 0.0)
    e = p["x0"] - p["x"]
    want = ((e[:, :, 1:] - e[:, :, :-1]) ** 2).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(terms["temporal"], want)
    assert (terms["temporal"] > 1e-3).all()
    torch.testing.assert_close(terms["loss"], terms["meas"] + terms["gt"] + terms["temporal"])   # all weights 1
    run_distill(cfg, resume=True)
    train = records(out, stage="student_sr4x")
    assert [r["step"] for r in train] == [1, 2, 3]
    for r in train:                                       # the logged total has the temporal term in it
        assert r["temporal"] > 0 and r["student_loss"] == pytest.approx(r["meas"] + r["gt"] + r["temporal"], rel=1e-5)
    assert not any(k.startswith("critic") or k == "dmd" for r in train for k in r)
    entry = read_header(out / X.EXPORT_FILE)["tasks"]["sr4x"]
    assert entry["init"] == "fast" and entry["residual"] is True
    stage = StudentStage(build_context(tiny(clips, out, student={"init": "fast", "inits": {"sr4x": "classical"}}),
                                       DistEnv()), "sr4x")
    assert stage.spec.init == "classical" and stage.estimate.kind == "classical"


def test_delta_student_decodes_the_change_and_exports_its_form(uninterrupted, clips, tmp_path):
    """delta: x_hat = x0 + D(z_hat - z_in) - D(0), so a silent student returns x0 exactly; the
    export carries delta, and no_consistency turns the data-consistency step off for that task."""
    from instantvir_cli.learned import learned_restorer
    from instantvir_cli.ops import build_operator

    src, out = uninterrupted[0], tmp_path / "d"
    out.mkdir()
    for f in (X.VAE_FILE, X.TEACHER_FILE):
        (out / f).write_bytes((src / f).read_bytes())
    cfg = tiny(clips, out, run={"stages": ["student"]},
               student={"steps": 2, "init": "fast", "residual": True, "delta": True, "dmd_weight": 0.0,
                        "gt_weight": 1.0, "gt_space": "pixel", "zero_head": True, "train_vae": "all",
                        "no_consistency": ["sr4x"]})
    stage = StudentStage(build_context(cfg, DistEnv()), "sr4x")
    x0 = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    p = {"x0": x0, "z_in": stage.codec.encode(x0)}
    with torch.no_grad():
        torch.testing.assert_close(stage.decode(stage.restore(p["z_in"]), p), x0, atol=1e-6, rtol=0)
        moved = stage.decode(p["z_in"] + 0.5, p)
    assert (moved - x0).abs().mean() > 1e-3
    run_distill(cfg, resume=True)
    entry = read_header(out / X.EXPORT_FILE)["tasks"]["sr4x"]
    assert entry["delta"] is True and entry["residual"] is True and entry["consistency"] is False
    r = learned_restorer(build_operator("sr4x", 32, 32), out / X.EXPORT_FILE)
    assert r.spec.delta and r.consistency.steps == 0
    with pytest.raises(ConfigError, match="residual"):
        tiny(clips, out, student={"delta": True})


def test_correction_ema_student_trains_through_the_smoothing_and_exports_it(uninterrupted, clips, tmp_path):
    """correction_ema: the trainer's x_hat is the residual decoding with its change smoothed
    over the window's frames (as `vir restore` streams it), and the export carries the weight."""
    src, out = uninterrupted[0], tmp_path / "e"
    out.mkdir()
    for f in (X.VAE_FILE, X.TEACHER_FILE):
        (out / f).write_bytes((src / f).read_bytes())
    over = {"steps": 2, "init": "fast", "residual": True, "dmd_weight": 0.0, "gt_weight": 1.0,
            "gt_space": "pixel", "temporal_weight": 1.0, "temporal_boundary": 4.0}
    cfg = tiny(clips, out, run={"stages": ["student"]}, student={**over, "correction_ema": 0.3})
    stage = StudentStage(build_context(cfg, DistEnv()), "sr4x")
    plain = StudentStage(build_context(tiny(clips, out, run={"stages": ["student"]}, student=over), DistEnv()), "sr4x")
    x0 = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        p = {"x0": x0, "z_in": stage.codec.encode(x0)}
        z_hat = p["z_in"] + 0.3 * torch.randn_like(p["z_in"])
        change = plain.decode(z_hat, p) - x0
        # the EMA from its definition, frame by frame: c'_0 = c_0, c'_t = (1 - b) c_t + b c'_(t-1)
        smoothed = [change[:, :, 0]]
        for t in range(1, change.shape[2]):
            smoothed.append(0.7 * change[:, :, t] + 0.3 * smoothed[-1])
        want = x0 + torch.stack(smoothed, 2)
        torch.testing.assert_close(stage.decode(z_hat, p), want)
        moved = float((want - x0 - change).abs().mean()) / float(change.abs().mean())
        assert moved > 0.2, moved                          # measured 0.31: the smoothing moves x_hat
    run_distill(cfg, resume=True)
    for r in records(out, stage="student_sr4x"):          # temporal_weight 1: a positive term in the total
        assert r["temporal"] > 0 and r["student_loss"] == pytest.approx(r["meas"] + r["gt"] + r["temporal"], rel=1e-5)
    assert read_header(out / X.EXPORT_FILE)["tasks"]["sr4x"]["correction_ema"] == 0.3
    for bad in ({"correction_ema": 0.3}, {"residual": True, "correction_ema": 1.5}):
        with pytest.raises(ConfigError, match="correction_ema"):
            tiny(clips, out, student=bad)


@pytest.mark.parametrize("part", ["decoder", "all"])
def test_student_stage_fine_tunes_its_own_vae(uninterrupted, clips, tmp_path, part):
    """train_vae: the task's copy of the VAE trains with the student (decoder: the encoding side
    stays frozen), the shared VAE file is untouched, and `vir restore` loads the task's copy."""
    from instantvir_cli.learned import learned_restorer
    from instantvir_cli.ops import build_operator

    src, out = uninterrupted[0], tmp_path / part
    out.mkdir()
    for f in (X.VAE_FILE, X.TEACHER_FILE):
        (out / f).write_bytes((src / f).read_bytes())
    cfg = tiny(clips, out, run={"stages": ["student"]},
               student={"steps": 2, "residual": True, "init": "fast", "dmd_weight": 0.0, "gt_weight": 1.0,
                        "gt_space": "pixel", "train_vae": part, "vae_lr": 1e-2, "ema": 0.0})
    run_distill(cfg, resume=True)
    shared = load_checkpoint(out / X.VAE_FILE).state_dict("vae")
    export = load_checkpoint(out / X.EXPORT_FILE)
    assert export.header["tasks"]["sr4x"]["vae_module"] == "vae_sr4x"
    own = export.state_dict("vae_sr4x")
    torch.testing.assert_close(export.state_dict("vae"), shared)
    changed = {k for k in own if not torch.equal(own[k], shared[k])}
    assert any(k.startswith("decoder") for k in changed)
    assert any(k.startswith("encoder") for k in changed) == (part == "all")
    r = learned_restorer(build_operator("sr4x", 32, 32), out / X.EXPORT_FILE)
    key = next(k for k in sorted(changed) if k.startswith("decoder"))
    assert torch.equal(r.vae.state_dict()[key], own[key])


def test_quantized_measurements_sit_on_the_8bit_grid(uninterrupted, clips, tmp_path):
    from instantvir_cli.distill.validate import quantize_8bit

    y = torch.rand(2, 3, 4, 8, 8) * 2.2 - 1.1
    q = quantize_8bit(y)
    levels = (q + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert float((q - y.clamp(-1, 1)).abs().max()) <= 1 / 255 + 1e-6
    cfg = tiny(clips, uninterrupted[0], student={"quantize": ["sr4x"]})
    stage = StudentStage(build_context(cfg, DistEnv()), "sr4x")
    p = stage.prepare({"x": torch.rand(1, 3, 5, 32, 32) * 2 - 1, "seed": torch.tensor([3])})
    assert torch.equal(p["y"], quantize_8bit(p["y"]))
    with pytest.raises(ConfigError, match="quantize"):
        tiny(clips, tmp_path / "q2", student={"quantize": ["denoise"]})
