"""DecodeSpec: one rule for which decodings are valid, one record in a checkpoint entry."""

from __future__ import annotations

import math

import pytest
import torch

from instantvir_cli.decoding import DecodeSpec, decode_student, smooth_change, stillness


def test_entry_round_trip_and_defaults_of_an_older_file():
    spec = DecodeSpec(init="fast", residual=True, correction_ema=0.75, still_ema=0.98, consistency=0)
    entry = spec.to_entry()
    assert entry == {"consistency": False, "init": "fast", "residual": True, "delta": False, "correction_ema": 0.75,
                     "still_ema": 0.98}
    assert DecodeSpec.from_entry(entry) == spec
    assert DecodeSpec.from_entry({}) == DecodeSpec(init="operator", residual=False, consistency=1)


@pytest.mark.parametrize("entry,key", [({"correction_ema": "abc"}, "correction_ema"), ({"residual": 1}, "residual"),
                                       ({"init": ["fast"]}, "init"), ({"consistency": "no"}, "consistency"),
                                       ({"correction_ema": True}, "correction_ema")])
def test_an_entry_field_of_the_wrong_type_names_itself(entry, key):
    with pytest.raises(ValueError, match=key):
        DecodeSpec.from_entry(entry)


@pytest.mark.parametrize("kwargs,word", [({"init": "magic"}, "initial estimate"), ({"delta": True}, "residual"),
                                         ({"correction_ema": 0.5}, "correction_ema"),
                                         ({"residual": True, "correction_ema": 1.0}, "correction_ema"),
                                         ({"still_ema": 0.9}, "still_ema"),
                                         ({"residual": True, "correction_ema": 0.75, "still_ema": 0.5}, "still_ema"),
                                         ({"residual": True, "still_ema": 1.0}, "still_ema"),
                                         ({"consistency": -1}, "consistency")])
def test_invalid_combinations_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DecodeSpec(**kwargs)


def test_smooth_change_is_the_causal_ema_frame_by_frame():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 3, 6, 4, 5, generator=g)
    b = 0.3
    want = [c[:, :, 0]]
    for t in range(1, 6):
        want.append((1 - b) * c[:, :, t] + b * want[-1])
    out, last = smooth_change(c.clone(), b)
    torch.testing.assert_close(out, torch.stack(want, 2))
    torch.testing.assert_close(last.change, want[-1])


def _levels(x):
    return x / 127.5


def test_stillness_is_one_where_the_estimate_stands_still_and_local():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(1, 3, 40, 50, generator=g) * 2 - 1
    torch.testing.assert_close(stillness(a, a.clone()), torch.ones(1, 1, 40, 50))
    b = a.clone()
    b[:, :, :, 30:] += _levels(20.0)                          # the right part moves by 20 levels
    s = stillness(b, a)
    assert s.shape == (1, 1, 40, 50)
    assert float(s[..., :20].min()) == 1.0                    # beyond the 9-pixel box: untouched
    assert float(s[..., 35:].max()) < 1e-6                    # 20 levels is far beyond 2
    small = stillness(a + _levels(2.0), a)                    # 2 levels everywhere: 1/e
    torch.testing.assert_close(small, torch.full_like(small, math.exp(-1)))


def _ema(c, weights):
    """c'_0 = c_0, c'_t = (1 - w_t) c_t + w_t c'_(t-1), the weights given per frame."""
    out = [c[:, :, 0]]
    for t in range(1, c.shape[2]):
        out.append((1 - weights[t]) * c[:, :, t] + weights[t] * out[-1])
    return torch.stack(out, 2)


def test_still_ema_smooths_a_still_shot_with_b_s_and_a_moving_one_with_b():
    g = torch.Generator().manual_seed(3)
    c = torch.randn(1, 3, 6, 12, 12, generator=g)
    b, b_s = 0.5, 0.9
    still = torch.zeros(1, 3, 6, 12, 12) + 0.1                               # x0 constant in time
    moving = _levels(30.0) * torch.arange(6.0).view(1, 1, 6, 1, 1) + still     # 30 levels a frame
    out, _ = smooth_change(c.clone(), b, x0=still, still=b_s)
    torch.testing.assert_close(out, _ema(c, [b_s] * 6), atol=1e-5, rtol=0)
    out, _ = smooth_change(c.clone(), b, x0=moving, still=b_s)
    torch.testing.assert_close(out, _ema(c, [b] * 6), atol=1e-6, rtol=0)
    # still for three frames, then moving from frame 3 on: b again at once
    half = torch.cat([still[:, :, :3], moving[:, :, 3:] + 1.0], 2)
    out, _ = smooth_change(c.clone(), b, x0=half, still=b_s)
    torch.testing.assert_close(out, _ema(c, [b_s] * 3 + [b] * 3), atol=1e-5, rtol=0)


def test_still_ema_in_blocks_with_state_equals_whole_and_gradients_agree():
    g = torch.Generator().manual_seed(4)
    c = torch.randn(1, 3, 8, 16, 16, generator=g)
    x0 = torch.rand(1, 3, 8, 16, 16, generator=g) * 0.02                     # a few levels of noise
    whole, _ = smooth_change(c.clone(), 0.6, x0=x0, still=0.95)
    first, state = smooth_change(c[:, :, :3].clone(), 0.6, x0=x0[:, :, :3], still=0.95)
    second, _ = smooth_change(c[:, :, 3:].clone(), 0.6, state, x0=x0[:, :, 3:], still=0.95)
    torch.testing.assert_close(torch.cat([first, second], 2), whole)
    leaf = c.clone().requires_grad_(True)
    with_grad, _ = smooth_change(leaf, 0.6, x0=x0, still=0.95)
    torch.testing.assert_close(with_grad.detach(), whole)
    with_grad.sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0


def test_decode_student_paths():
    """plain D(z_hat); residual x0 + D(z_hat) - D(z_in); delta x0 + D(z_hat - z_in) - D(0), here with a
    decoder that is affine per element, D(z) = 2 z + 1, where all three are known in closed form."""
    g = torch.Generator().manual_seed(1)
    z_hat, z_in, x0 = (torch.randn(2, 3, 4, 5, 6, generator=g) for _ in range(3))

    def decode(z):
        return 2 * z + 1

    def zero():
        return torch.ones(1, 3, 4, 5, 6)

    plain, _ = decode_student(DecodeSpec(), decode, z_hat, z_in, x0.clone())
    torch.testing.assert_close(plain, 2 * z_hat + 1)
    res, _ = decode_student(DecodeSpec(residual=True), decode, z_hat, z_in, x0.clone())
    torch.testing.assert_close(res, x0 + 2 * (z_hat - z_in))
    delta, _ = decode_student(DecodeSpec(residual=True, delta=True), decode, z_hat, z_in, x0.clone(), zero)
    torch.testing.assert_close(delta, x0 + 2 * (z_hat - z_in))
