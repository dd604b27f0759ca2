"""The InstantViR restorer: streaming equals the whole-clip computation, any frame count, checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from instantvir_cli.decoding import DecodeSpec
from instantvir_cli.errors import CheckpointError, UsageError
from instantvir_cli.learned import InstantViRRestorer, learned_restorer, random_restorer
from instantvir_cli.models.vae import LeanVAE, vae_config
from instantvir_cli.ops import build_operator
from tests.model_fixtures import save_tiny_checkpoint, tiny_models

H, W = 32, 48


def _models(seed=0):
    return tiny_models(seed)


def _stream(r, y, chunk):
    outs = [r.push(y[:, :, i:i + chunk]) for i in range(0, y.shape[2], chunk)]
    outs.append(r.flush())
    return outs


@pytest.mark.parametrize("task", ["sr4x", "deblur", "inpaint"])
@torch.inference_mode()
def test_streaming_equals_whole_clip(task):
    vae, student = _models()
    op = build_operator(task, H, W)
    y = op.A(torch.rand(1, 3, 21, H, W) * 2 - 1)
    r = InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0))
    x_stream = torch.cat(_stream(r, y, 5), 2)
    z = vae.encode(op.init(y))                                   # whole clip, 21 = 1 + 4 * 5 frames
    x_full = vae.decode(student.restore(z)).clamp(-1, 1)
    assert x_stream.shape == x_full.shape
    torch.testing.assert_close(x_stream, x_full, atol=2e-5, rtol=0)


@pytest.mark.parametrize("frames", [1, 2, 4, 5, 9, 10, 13, 22, 30])
@torch.inference_mode()
def test_any_frame_count_gives_exactly_that_many_frames(frames):
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, frames, H, W) * 2 - 1)
    out = torch.cat(_stream(InstantViRRestorer(op, vae, student), y, 4), 2)
    assert out.shape == (1, 3, frames, H, W)
    assert torch.isfinite(out).all() and out.abs().max() <= 1


@torch.inference_mode()
def test_tail_is_restored_as_the_padded_clip_cropped():
    vae, student = _models()
    op = build_operator("deblur", H, W)
    y = op.A(torch.rand(1, 3, 23, H, W) * 2 - 1)
    x_stream = torch.cat(_stream(InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0)), y, 7), 2)
    padded = torch.cat([y, y[:, :, -1:].repeat(1, 1, 2, 1, 1)], 2)  # 25 = 1 + 4 * 6
    x_full = vae.decode(student.restore(vae.encode(op.init(padded)))).clamp(-1, 1)[:, :, :23]
    torch.testing.assert_close(x_stream, x_full, atol=2e-5, rtol=0)


@torch.inference_mode()
def test_first_output_after_one_block():
    vae, student = _models()
    op = build_operator("deblur", H, W)
    r = InstantViRRestorer(op, vae, student)
    y = op.A(torch.rand(1, 3, 30, H, W) * 2 - 1)
    assert r.push(y[:, :, :8]).shape[2] == 0
    assert r.push(y[:, :, 8:9]).shape[2] == 9                    # 1 + 4 * 2 frames: the first block
    assert r.push(y[:, :, 9:20]).shape[2] == 0
    assert r.push(y[:, :, 20:21]).shape[2] == 12


@torch.inference_mode()
def test_inpaint_consistency_keeps_observed_pixels_exactly():
    vae, student = _models()
    op = build_operator("inpaint", H, W, seed=3)
    x = torch.rand(1, 3, 13, H, W) * 2 - 1
    y = op.A(x)
    out = torch.cat(_stream(InstantViRRestorer(op, vae, student), y, 6), 2)
    m = op.mask_like(y) > 0.5
    assert torch.equal(torch.where(m, out, y), y)


@torch.inference_mode()
def test_sr_consistency_step_makes_the_output_consistent():
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, 9, H, W) * 2 - 1) * 0.5
    no_dc = torch.cat(_stream(InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0)), y, 9), 2)
    dc = torch.cat(_stream(InstantViRRestorer(op, vae, student, DecodeSpec(consistency=1)), y, 9), 2)
    assert (op.A(dc) - y).abs().max() < 1e-5 < (op.A(no_dc) - y).abs().max()


@torch.inference_mode()
def test_state_stays_bounded_over_a_long_stream():
    op = build_operator("deblur", H, W)
    r = random_restorer(op, "tiny", "tiny", cache_blocks=2)
    y = torch.zeros(1, 3, 12, H, W)
    r.push(torch.zeros(1, 3, 9, H, W))
    sizes = []
    for _ in range(20):
        assert r.push(y).shape[2] == 12
        sizes.append(r._cache.nbytes() + r._enc.nbytes + r._dec.nbytes)
    assert len(set(sizes[3:])) == 1


def _save(tmp_path, tasks=("sr4x",)):
    vae, student = tiny_models(cache_blocks=6)
    return save_tiny_checkpoint(tmp_path / "model.safetensors", tasks), vae, student


@torch.inference_mode()
def test_checkpoint_round_trip_gives_the_same_restorer(tmp_path):
    path, vae, student = _save(tmp_path)
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, 9, H, W) * 2 - 1)
    a = torch.cat(_stream(InstantViRRestorer(op, vae, student), y, 9), 2)
    b = torch.cat(_stream(learned_restorer(op, path, precision="fp32"), y, 9), 2)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_checkpoint_without_the_task_is_refused(tmp_path):
    path, _, _ = _save(tmp_path, tasks=("sr4x",))
    with pytest.raises(CheckpointError, match="no student for task 'deblur'"):
        learned_restorer(build_operator("deblur", H, W), path)


def test_no_checkpoint_lists_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.delenv("VIR_CHECKPOINT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr("instantvir_cli.models.lookup._package_weights", lambda: None)
    with pytest.raises(CheckpointError, match="searched") as err:
        learned_restorer(build_operator("sr4x", H, W), None)
    assert str(tmp_path) in str(err.value)


def test_precision_auto_is_fp32_on_cpu_and_bf16_refused():
    from instantvir_cli.errors import UsageError
    from instantvir_cli.learned import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cuda) is torch.bfloat16 and autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("fp32", cuda) is None
    with pytest.raises(UsageError, match="CPU"):
        autocast_dtype("bf16", cpu)
    with pytest.raises(UsageError, match="unknown precision"):
        autocast_dtype("fp8", cpu)


def _identity_student(student):
    """A student whose velocity is zero everywhere: z_hat = z_in."""
    with torch.no_grad():
        student.final.linear.weight.zero_()
        student.final.linear.bias.zero_()
    return student


@pytest.mark.parametrize("init", ["classical", "fast"])
@torch.inference_mode()
def test_residual_path_returns_the_initial_estimate_when_the_student_changes_nothing(init):
    vae, student = _models()
    op = build_operator("deblur", H, W)
    y = op.A(torch.rand(1, 3, 13, H, W) * 2 - 1)
    r = InstantViRRestorer(op, vae, _identity_student(student), DecodeSpec(consistency=0, init=init, residual=True))
    x = torch.cat(_stream(r, y, 4), 2)
    from instantvir_cli.estimate import InitialEstimate

    torch.testing.assert_close(x, InitialEstimate(init)(op, y).clamp(-1, 1), atol=1e-5, rtol=0)
    plain = torch.cat(_stream(InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0, init=init)), y, 4), 2)
    assert (plain - x).abs().max() > 1e-2          # the plain path decodes D(E(x0)) instead


@torch.inference_mode()
def test_residual_path_streams_like_the_whole_clip():
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, 21, H, W) * 2 - 1)
    r = InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0, init="fast", residual=True))
    x_stream = torch.cat(_stream(r, y, 5), 2)
    from instantvir_cli.estimate import InitialEstimate

    x0 = InitialEstimate("fast")(op, y)
    z = vae.encode(x0)
    x_full = (x0 + vae.decode(student.restore(z)) - vae.decode(z)).clamp(-1, 1)
    torch.testing.assert_close(x_stream, x_full, atol=5e-5, rtol=0)


@pytest.mark.parametrize("frames,chunk", [(21, 5), (35, 12)])
@torch.inference_mode()
def test_delta_path_streams_like_the_whole_clip(frames, chunk):
    """x = x0 + D(z_hat - z_in) - D(0): streamed blocks (the cached D(0) of first and later
    blocks, a padded tail) equal one decode of the whole clip."""
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, frames, H, W) * 2 - 1)
    r = InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0, init="fast", residual=True, delta=True))
    x_stream = torch.cat(_stream(r, y, chunk), 2)
    from instantvir_cli.estimate import InitialEstimate

    x0 = InitialEstimate("fast")(op, y)
    pad = (-(frames - 1)) % 4          # the VAE's chunks: 1 + 4k frames (the restorer repeats the last)
    x0p = torch.cat([x0, x0[:, :, -1:].repeat(1, 1, pad, 1, 1)], 2)
    z = vae.encode(x0p)
    dz = student.restore(z) - z
    x_full = (x0p + vae.decode(dz) - vae.decode(torch.zeros_like(dz)))[:, :, :frames].clamp(-1, 1)
    torch.testing.assert_close(x_stream, x_full, atol=5e-5, rtol=0)
    assert (x_stream - x0.clamp(-1, 1)).abs().max() > 1e-3   # the student's change is there


@torch.inference_mode()
def test_delta_path_returns_the_initial_estimate_when_the_student_changes_nothing():
    vae, student = _models()
    op = build_operator("inpaint", H, W)
    y = op.A(torch.rand(1, 3, 17, H, W) * 2 - 1)
    spec = DecodeSpec(consistency=0, init="fast", residual=True, delta=True)
    r = InstantViRRestorer(op, vae, _identity_student(student), spec)
    from instantvir_cli.estimate import InitialEstimate

    torch.testing.assert_close(torch.cat(_stream(r, y, 7), 2), InitialEstimate("fast")(op, y).clamp(-1, 1),
                               atol=1e-5, rtol=0)


def test_delta_without_residual_is_refused():
    with pytest.raises(ValueError, match="residual"):
        DecodeSpec(residual=False, delta=True)


def test_checkpoint_entry_selects_delta_decoding(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.safetensors", init="fast", residual=True, delta=True)
    assert learned_restorer(build_operator("sr4x", H, W), path).spec.delta
    path = save_tiny_checkpoint(tmp_path / "o.safetensors", init="fast", residual=True)
    assert not learned_restorer(build_operator("sr4x", H, W), path).spec.delta


@torch.inference_mode()
def test_correction_ema_streams_like_the_whole_clip():
    """The change x - x0 is smoothed causally, c'_t = (1 - b) c_t + b c'_(t-1), carried between
    blocks: streamed in uneven chunks it equals the EMA over the whole clip's residual output."""
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    y = op.A(torch.rand(1, 3, 23, H, W) * 2 - 1)
    spec = DecodeSpec(consistency=0, init="fast", residual=True)
    plain = torch.cat(_stream(InstantViRRestorer(op, vae, student, spec), y, 23), 2)
    r = InstantViRRestorer(op, vae, student, DecodeSpec(consistency=0, init="fast", residual=True, correction_ema=0.4))
    x_stream = torch.cat(_stream(r, y, 5), 2)
    from instantvir_cli.estimate import InitialEstimate

    x0 = InitialEstimate("fast")(op, y)
    change = plain - x0          # the residual path's change (no clamping bites at these values)
    want = [change[:, :, 0]]
    for t in range(1, change.shape[2]):
        want.append(0.6 * change[:, :, t] + 0.4 * want[-1])
    torch.testing.assert_close(x_stream, (x0 + torch.stack(want, 2)).clamp(-1, 1), atol=5e-5, rtol=0)
    assert (x_stream - plain).abs().max() > 1e-3


@torch.inference_mode()
def test_still_ema_streams_like_the_whole_clip_and_holds_a_still_shot():
    """still_ema: on a still shot (one frame repeated) the estimate never changes, so the change is
    smoothed with b_s everywhere, across the stream's blocks (the last estimate is carried too);
    where the shot moves, the weight is correction_ema's."""
    vae, student = _models()
    op = build_operator("sr4x", H, W)
    frame = op.A(torch.rand(1, 3, 1, H, W) * 2 - 1)
    y = frame.repeat(1, 1, 23, 1, 1)
    spec = DecodeSpec(consistency=0, init="fast", residual=True)
    plain = torch.cat(_stream(InstantViRRestorer(op, vae, student, spec), y, 23), 2)
    still = spec.replace(correction_ema=0.3, still_ema=0.9)
    x_stream = torch.cat(_stream(InstantViRRestorer(op, vae, student, still), y, 5), 2)
    from instantvir_cli.estimate import InitialEstimate

    x0 = InitialEstimate("fast")(op, y)
    change = plain - x0
    want = [change[:, :, 0]]
    for t in range(1, change.shape[2]):
        want.append(0.1 * change[:, :, t] + 0.9 * want[-1])
    torch.testing.assert_close(x_stream, (x0 + torch.stack(want, 2)).clamp(-1, 1), atol=5e-5, rtol=0)
    moving = op.A(torch.rand(1, 3, 23, H, W) * 2 - 1)         # every frame new: b = correction_ema
    a = torch.cat(_stream(InstantViRRestorer(op, vae, student, still), moving, 5), 2)
    b = torch.cat(_stream(InstantViRRestorer(op, vae, student, spec.replace(correction_ema=0.3)), moving, 23), 2)
    torch.testing.assert_close(a, b, atol=5e-5, rtol=0)


def test_checkpoint_entry_selects_the_still_ema(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.safetensors", init="fast", residual=True, correction_ema=0.5,
                                still_ema=0.95)
    assert learned_restorer(build_operator("sr4x", H, W), path).spec.still_ema == 0.95


@pytest.mark.parametrize("kwargs", [{"correction_ema": 0.5}, {"residual": True, "correction_ema": 1.0}])
def test_correction_ema_needs_the_residual_path_and_a_weight_below_one(kwargs):
    with pytest.raises(ValueError, match="correction_ema"):
        DecodeSpec(**kwargs)


def test_checkpoint_entry_selects_the_correction_ema(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.safetensors", init="fast", residual=True, correction_ema=0.25)
    assert learned_restorer(build_operator("deblur", H, W), path).spec.correction_ema == 0.25
    path = save_tiny_checkpoint(tmp_path / "o.safetensors", init="fast", residual=True)
    assert learned_restorer(build_operator("deblur", H, W), path).spec.correction_ema == 0.0


@torch.inference_mode()
def test_push_refuses_a_frame_block_of_the_wrong_shape():
    vae, student = _models()
    r = InstantViRRestorer(build_operator("sr4x", H, W), vae, student, DecodeSpec(init="fast", residual=True))
    with pytest.raises(UsageError, match=r"\(B, C, T, H, W\)"):
        r.push(torch.rand(3, 9, H // 4, W // 4))


def test_checkpoint_entry_selects_the_initial_estimate_and_residual(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.safetensors", init="fast", residual=True)
    r = learned_restorer(build_operator("inpaint", H, W), path)
    assert r.estimate.kind == "fast" and r.spec.residual
    old = learned_restorer(build_operator("inpaint", H, W), save_tiny_checkpoint(tmp_path / "o.safetensors"))
    assert old.estimate.kind == "operator" and not old.spec.residual


def test_checkpoint_with_an_unknown_initial_estimate_is_refused(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.safetensors", init="magic")
    with pytest.raises(CheckpointError, match=r"tasks\.\w+\.init: expected one of operator, classical, fast, got .magic."):
        learned_restorer(build_operator("inpaint", H, W), path)


def test_building_the_restorer_leaves_the_compiler_unloaded(tmp_path):
    """The header check builds the models on the meta device; drawing random weights there runs
    normal_'s meta kernel, which imports torch._dynamo (about a second of start-up per restore)."""
    path = tmp_path / "tiny.safetensors"
    save_tiny_checkpoint(path, tasks=("sr4x",))
    code = (
        "import sys\n"
        "from instantvir_cli.learned import learned_restorer\n"
        "from instantvir_cli.ops import build_operator\n"
        f"learned_restorer(build_operator('sr4x', 32, 48), {str(path)!r})\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_models_built_on_the_meta_device_have_the_shapes_of_real_ones():
    real = LeanVAE(vae_config("tiny"))
    with torch.device("meta"):
        meta = LeanVAE(vae_config("tiny"))
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    assert all(v.is_meta for v in meta.state_dict().values())
    assert real.bottleneck.phi.std() > 0                          # the real one still draws its init
    torch.testing.assert_close(real.bottleneck.Q, real.bottleneck.phi.t())
