"""Inference speed paths: the student's int8 linears, the VAE's chunked feed-forward and pixel head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import instantvir_cli.models.vae as vae_mod
import instantvir_cli.models.wavelet as wavelet_mod
from instantvir_cli.errors import UsageError
from instantvir_cli.learned import learned_restorer, random_restorer, student_int8
from instantvir_cli.models.int8 import int8_available, is_quantized, quantize_linears
from instantvir_cli.models.vae import LeanVAE, VAEStreamState, vae_config
from instantvir_cli.ops import build_operator
from tests.model_fixtures import save_tiny_checkpoint, tiny_models

needs_int8 = pytest.mark.skipif(not int8_available(), reason="this torch build has no quantized CPU engine")


@needs_int8
@torch.inference_mode()
def test_quantize_linears_takes_the_blocks_and_keeps_the_change():
    _, student = tiny_models()
    z = torch.randn(1, student.config.in_channels, 3, 8, 8)
    before = student.step(z, student.new_cache())
    n_block = sum(type(m) is nn.Linear for name, m in student.named_modules() if name.startswith("blocks."))
    assert quantize_linears(student) == n_block > 0
    assert is_quantized(student)
    assert not any(type(m) is nn.Linear for name, m in student.named_modules() if name.startswith("blocks."))
    assert any(type(m) is nn.Linear for m in student.modules())       # time embedding etc. stay fp32
    after = student.step(z, student.new_cache())
    change = (before - z).norm()
    assert change > 0 and (after - before).norm() < 0.02 * change


def test_precision_names_where_int8_applies(monkeypatch):
    from instantvir_cli import learned
    from instantvir_cli.models.dit import DIT_PRESETS
    from instantvir_cli.models.int8 import Int8Choice

    cfg = DIT_PRESETS["small-p4"]
    assert student_int8("fp32", "cpu", cfg) is False
    assert student_int8("auto", "cpu") is False                     # no widths to measure: fp32
    # auto follows what int8 measured on this CPU, both ways
    monkeypatch.setattr(learned, "int8_pays", lambda d, f: Int8Choice(fp32_ms=10.0, int8_ms=5.0, cpu="x"))
    assert student_int8("auto", "cpu", cfg) is int8_available()
    monkeypatch.setattr(learned, "int8_pays", lambda d, f: Int8Choice(fp32_ms=10.0, int8_ms=9.5, cpu="x"))
    assert student_int8("auto", "cpu", cfg) is False                # within the noise margin: fp32
    assert student_int8("int8", "cpu", cfg) is int8_available()     # asked for: int8 regardless
    with pytest.raises(UsageError, match="CPU only"):
        student_int8("int8", "cuda")
    with pytest.raises(UsageError, match="unknown precision"):
        student_int8("int4", "cpu")


@needs_int8
@torch.inference_mode()
def test_restorers_quantize_the_student_on_auto_and_int8_not_fp32(tmp_path, monkeypatch):
    from instantvir_cli import learned
    from instantvir_cli.models.int8 import Int8Choice

    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    op = build_operator("sr4x", 32, 48)
    monkeypatch.setattr(learned, "int8_pays", lambda d, f: Int8Choice(fp32_ms=2.0, int8_ms=1.0, cpu="x"))
    assert is_quantized(learned_restorer(op, path).student)
    monkeypatch.setattr(learned, "int8_pays", lambda d, f: Int8Choice(fp32_ms=1.0, int8_ms=2.0, cpu="x"))
    assert not is_quantized(learned_restorer(op, path).student)
    assert is_quantized(learned_restorer(op, path, precision="int8").student)
    assert not is_quantized(learned_restorer(op, path, precision="fp32").student)
    assert not is_quantized(learned_restorer(op, path).vae)                  # the VAE stays fp32
    assert not is_quantized(random_restorer(op, "tiny", "tiny").student)         # auto measured fp32 faster
    assert is_quantized(random_restorer(op, "tiny", "tiny", precision="int8").student)
    assert not is_quantized(random_restorer(op, "tiny", "tiny", precision="fp32").student)


@needs_int8
@torch.inference_mode()
def test_int8_restores_like_fp32(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    op = build_operator("deblur", 32, 48)
    y = op.A(torch.rand(1, 3, 13, 32, 48) * 2 - 1)
    outs = []
    for precision in ("fp32", "int8"):
        r = learned_restorer(op, path, precision=precision)
        outs.append(torch.cat([r.push(y), r.flush()], 2))
    mse = float(((outs[0] - outs[1]) ** 2).mean())
    assert outs[0].shape == outs[1].shape and 0 < mse < 4 * 10 ** -4.5    # above 45 dB against fp32


@torch.inference_mode()
def test_chunked_feed_forward_and_head_match_one_pass(monkeypatch):
    """The inference chunking of the NAF feed-forward and of the pixel head changes nothing but
    the matmul's blocking (float rounding, ~1e-9 here)."""
    torch.manual_seed(0)
    vae = LeanVAE(vae_config("tiny")).eval()
    z = torch.randn(2, vae.cfg.latent_channels, 3, 6, 7)
    whole = vae.decode_stream(z, VAEStreamState())
    x = torch.rand(1, 3, 9, 48, 56) * 2 - 1
    enc_whole = vae.encode_stream(x, VAEStreamState())
    monkeypatch.setattr(vae_mod, "FFN_ROWS", 5)           # 84 tokens a frame: many uneven chunks
    monkeypatch.setattr(wavelet_mod, "HEAD_TOKENS", 3)    # one token row a chunk
    torch.testing.assert_close(vae.decode_stream(z, VAEStreamState()), whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(vae.encode_stream(x, VAEStreamState()), enc_whole, rtol=0, atol=1e-6)


def test_chunking_is_off_under_autograd(monkeypatch):
    """Training keeps one pass (the chunks would only cost time), and gradients flow."""
    monkeypatch.setattr(vae_mod, "FFN_ROWS", 5)
    monkeypatch.setattr(wavelet_mod, "HEAD_TOKENS", 3)
    torch.manual_seed(0)
    vae = LeanVAE(vae_config("tiny"))
    z = torch.randn(1, vae.cfg.latent_channels, 2, 4, 4, requires_grad=True)
    vae.decode(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_precision_label_says_what_runs():
    from instantvir_cli.learned import precision_label

    assert precision_label("fp32", "cpu", False) == "fp32"
    assert precision_label("auto", "cpu", True) == "fp32, student linears int8"
    assert precision_label("auto", "cuda", False) == "bf16 autocast"
    assert precision_label("fp16", "cuda", False) == "fp16 autocast"


def test_restorer_says_whether_its_student_runs_in_int8():
    op = build_operator("sr4x", 64, 64)
    assert random_restorer(op, "tiny", "tiny", precision="fp32").precision == "fp32"
    if int8_available():
        assert random_restorer(op, "tiny", "tiny", precision="int8").precision == "fp32, student linears int8"


def test_int8_measurement_is_cached_per_cpu_and_shape(tmp_path, monkeypatch):
    from instantvir_cli.models import int8

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(int8, "_MEASURED", {})
    if not int8_available():
        pytest.fail("this torch build has no quantized engine; the CPU build on disk has one")
    first = int8.int8_pays(64, 128, tokens=64)
    assert first.fp32_ms > 0 and first.int8_ms > 0 and "(" in first.cpu
    cache = tmp_path / "vir" / "int8-choice.json"
    assert cache.is_file()
    monkeypatch.setattr(int8, "_MEASURED", {})
    calls = []
    monkeypatch.setattr(int8, "_best_ms", lambda fs, **kw: calls.append(1) or [1.0, 1.0])
    assert int8.int8_pays(64, 128, tokens=64) == first and not calls        # read back, not measured
    cache.write_text("not json")
    monkeypatch.setattr(int8, "_MEASURED", {})
    assert int8.int8_pays(64, 128, tokens=64) == int8.Int8Choice(1.0, 1.0, first.cpu) and calls  # measured anew
    assert not int8.Int8Choice(10.0, 9.5, "x").faster and int8.Int8Choice(10.0, 8.0, "x").faster
