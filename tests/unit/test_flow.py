"""Flow-matching schedule: interpolation, targets, shift, training times, Euler sampler."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from instantvir_cli.models import flow
from instantvir_cli.models.dit import DIT_PRESETS, DiT


def test_interpolation_and_conversions_roundtrip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 6, generator=g), torch.randn(2, 4, 3, 5, 6, generator=g)
    for s in (0.3, torch.tensor([0.1, 0.9]), torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]])):
        x_t = flow.add_noise(x0, eps, s)
        v = flow.v_target(x0, eps)
        torch.testing.assert_close(flow.x0_from_v(x_t, v, s), x0)
        torch.testing.assert_close(flow.eps_from_v(x_t, v, s), eps)
    torch.testing.assert_close(flow.add_noise(x0, eps, 0.0), x0)
    torch.testing.assert_close(flow.add_noise(x0, eps, 1.0), eps)
    per_frame = flow.add_noise(x0, eps, torch.tensor([[0.0, 1.0, 0.5]] * 2))
    torch.testing.assert_close(per_frame[:, :, 0], x0[:, :, 0])
    torch.testing.assert_close(per_frame[:, :, 1], eps[:, :, 1])


def test_shift():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    shifted = flow.shift_sigma(s)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert torch.all(shifted[1:] > shifted[:-1]) and torch.all(shifted >= s)
    assert flow.shift_sigma(0.5) == pytest.approx(8 / 9)
    torch.testing.assert_close(flow.shift_sigma(s, 1.0), s)
    assert flow.timestep(0.522) == pytest.approx(522.0)


def test_training_times_are_shifted_clamped_and_seeded():
    s = flow.sample_sigma((4096,), torch.Generator().manual_seed(1))
    assert s.shape == (4096,) and s.dtype == torch.float32
    assert s.min() >= 0.02 and s.max() <= 0.98
    assert s.median() > 0.8                                              # k = 8 pushes mass to high noise
    again = flow.sample_sigma(4096, torch.Generator().manual_seed(1))
    assert torch.equal(s, again)
    assert flow.sample_sigma((2, 5)).shape == (2, 5)


def test_schedule():
    sig = flow.sigma_schedule(50)
    assert sig.shape == (51,) and sig[0] == 1 and sig[-1] == 0
    assert torch.all(sig[1:] < sig[:-1])
    with pytest.raises(ValueError):
        flow.sigma_schedule(0)


def test_euler_with_exact_velocity_reaches_the_data_point():
    """For data = one point x*, the exact v is (x - x*) / s; the straight path is solved exactly."""
    target = torch.randn(1, 4, 2, 3, 3)
    net = lambda x, t: (x - target) / (t / 1000.0).view(-1, 1, 1, 1, 1)
    seen = []
    out = flow.euler_sample(net, torch.randn(1, 4, 2, 3, 3), steps=7, callback=lambda i, x: seen.append(i))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)
    assert seen == list(range(7))
    half = flow.euler_sample(net, flow.add_noise(target, torch.randn_like(target), 0.5), steps=3, s_start=0.5)
    torch.testing.assert_close(half, target, atol=1e-5, rtol=1e-5)


def test_euler_runs_a_dit():
    model = DiT(replace(DIT_PRESETS["tiny"], in_channels=4, out_channels=4)).eval()
    noise = torch.randn(1, 4, 2, 4, 4)
    out = flow.euler_sample(lambda x, t: model(x, t), noise, steps=3)
    torch.testing.assert_close(out, noise)                               # zero-init DiT: v = 0
