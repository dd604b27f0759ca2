"""Distillation losses: per-sample (batch-independent) values, DMD's gradient, the measurement
term through the decoder, per-sample inpainting masks, the latent scale folded into the VAE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from instantvir_cli.distill.export import fold_latent_scale
from instantvir_cli.distill.losses import DMD, BatchOperator, FlowMatching, Measurement, VAELoss
from instantvir_cli.models.dit import DIT_PRESETS, DiT
from instantvir_cli.models.vae import VAE_PRESETS, LeanVAE

SEEDS = torch.tensor([11, 22, 33, 44])


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return LeanVAE(VAE_PRESETS["tiny"]).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    net = DiT(dataclasses.replace(DIT_PRESETS["tiny"], in_channels=4, out_channels=4))
    with torch.no_grad():   # adaLN-Zero starts at v = 0: give the test a non-trivial network
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval().requires_grad_(False)


def test_vae_loss_terms():
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    mean, logvar = torch.zeros(2, 4, 2, 2, 2), torch.zeros(2, 4, 2, 2, 2)
    out = VAELoss(l1=1, wavelet_low=0.5, wavelet_high=0.5, kl=1.0)(x, x, mean, logvar)
    assert out["loss"].shape == (2,) and float(out["loss"].abs().max()) == 0.0   # perfect and N(0, 1)
    out = VAELoss()(x, x + 0.1, mean + 1, logvar)
    assert torch.allclose(out["l1"], torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(out["wavelet_low"], torch.full((2,), 0.4), atol=1e-6)     # LL sums 2 x 2 pixels
    assert float(out["wavelet_high"].abs().max()) < 1e-6                            # a constant shift has no high band
    assert torch.allclose(out["kl"], torch.full((2,), 0.5 * 4 * 2 * 2 * 2))


def test_flow_matching_is_per_sample(dit):
    z0 = torch.randn(4, 4, 3, 4, 4)
    fm = FlowMatching(shift=3.0)
    net = lambda z, t: dit(z, t)
    whole = fm(net, z0, SEEDS)
    parts = torch.cat([fm(net, z0[i:i + 1], SEEDS[i:i + 1]) for i in range(4)])
    assert whole.shape == (4,) and torch.allclose(whole, parts, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole, fm(net, z0, SEEDS + 1))          # noise follows the seeds


def test_dmd_gradient_is_the_normalized_score_difference(dit):
    z_hat = torch.randn(2, 4, 3, 4, 4, requires_grad=True)
    real = lambda z, t: dit(z, t)
    loss, _ = DMD()(z_hat, real, real, SEEDS[:2])
    loss.sum().backward()
    assert float(loss.detach().abs().max()) == 0.0 and float(z_hat.grad.abs().max()) == 0.0   # fake = real: no push
    fake = lambda z, t: dit(z, t) + 0.1
    z_hat.grad = None
    loss, stats = DMD()(z_hat, real, fake, SEEDS[:2])
    loss.sum().backward()
    # x0 = z_t - s v, so x0_fake - x0_real = -0.1 s < 0 everywhere: g < 0, and d loss / d z_hat = g / n
    n = z_hat[0].numel()
    assert bool((z_hat.grad < 0).all())
    assert torch.allclose(loss.detach(), 0.5 * (z_hat.grad * n).pow(2).flatten(1).mean(1), rtol=1e-5)
    g = z_hat.grad * n                                                # constant per sample: 0.1 s / scale
    assert torch.allclose(g, g.flatten(1)[:, :1].view(2, 1, 1, 1, 1).expand_as(g), rtol=1e-4)
    assert stats["dmd_scale"] > 0


def test_dmd_weight_restricts_the_push(dit):
    z_hat = torch.randn(1, 4, 3, 4, 4, requires_grad=True)
    weight = torch.zeros(1, 1, 1, 4, 4)
    weight[..., :2, :] = 1
    loss, _ = DMD()(z_hat, lambda z, t: dit(z, t), lambda z, t: dit(z, t) + 0.1, SEEDS[:1], weight)
    loss.sum().backward()
    assert float(z_hat.grad[..., 2:, :].abs().max()) == 0.0 and float(z_hat.grad[..., :2, :].abs().min()) > 0


@pytest.mark.parametrize("task", ["inpaint", "deblur", "sr4x"])
def test_measurement_in_pixels_differentiates_through_the_decoder(vae, task):
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    op = BatchOperator.build(task, {}, 32, 32, SEEDS[:2])
    y = op.measure(x, SEEDS[:2])
    z_in = vae.encode(op.init(y))
    z_hat = z_in.clone().requires_grad_(True)
    loss = Measurement("pixel")(z_hat, y, z_in, op, vae)
    assert loss.shape == (2,)
    loss.sum().backward()
    assert float(z_hat.grad.abs().sum()) > 0
    ref = ((op.A(vae.decode(z_in)) - y) ** 2).flatten(1).mean(1)
    assert torch.allclose(loss.detach(), ref)


def test_measurement_latent_shortcut_has_identity_gradient(vae):
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    op = BatchOperator.build("deblur", {}, 32, 32, SEEDS[:1])
    y = op.measure(x, SEEDS[:1])
    z_in = vae.encode(op.init(y))
    z_hat = (z_in + 0.1).requires_grad_(True)
    loss = Measurement("latent")(z_hat, y, z_in, op, vae)
    loss.sum().backward()
    with torch.no_grad():
        f = vae.encode(op.init(op.A(vae.decode(z_hat))))
    assert torch.allclose(z_hat.grad, 2 * (f - z_in) / z_hat.numel(), atol=1e-7)


def test_inpainting_masks_differ_per_sample():
    op = BatchOperator.build("inpaint", {"ratio": 0.5}, 32, 32, SEEDS)
    masks = [o.mask for o in op.ops]
    assert all(int(m.sum()) == 512 for m in masks) and not torch.equal(masks[0], masks[1])
    again = BatchOperator.build("inpaint", {"ratio": 0.5}, 32, 32, SEEDS)
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(op.ops, again.ops))   # from the seeds
    x = torch.rand(4, 3, 5, 32, 32)
    y = op.measure(x, SEEDS)
    assert torch.equal(y[1], x[1] * masks[1])
    missing = op.missing(torch.zeros(4, 4, 2, 4, 4))
    assert missing.shape == (4, 1, 1, 4, 4) and set(missing.unique().tolist()) <= {0.0, 1.0}
    assert BatchOperator.build("sr4x", {}, 32, 32, SEEDS).missing(torch.zeros(4, 4, 2, 4, 4)) is None


def test_folded_latent_scale_keeps_the_round_trip():
    torch.manual_seed(1)
    vae = LeanVAE(VAE_PRESETS["tiny"]).eval()
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z, rec = vae.encode(x), vae.decode(vae.encode(x))
        _, logvar = vae.encode_dist(x)
        fold_latent_scale(vae, 2.5)
        z2, rec2 = vae.encode(x), vae.decode(vae.encode(x))
        _, logvar2 = vae.encode_dist(x)
    assert torch.allclose(z2, z / 2.5, atol=1e-6)
    assert torch.allclose(rec2, rec, atol=1e-4)
    assert torch.allclose(logvar2, (logvar - 2 * torch.log(torch.tensor(2.5))).clamp(-30, 20), atol=1e-5)
