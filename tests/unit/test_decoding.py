"""DecodeSpec: one rule for which decodings are valid, one record in a checkpoint entry."""

from __future__ import annotations

import pytest
import torch

from instantvir_cli.decoding import DecodeSpec, decode_student, smooth_change


def test_entry_round_trip_and_defaults_of_an_older_file():
    spec = DecodeSpec(init="fast", residual=True, correction_ema=0.75, consistency=0)
    entry = spec.to_entry()
    assert entry == {"consistency": False, "init": "fast", "residual": True, "delta": False, "correction_ema": 0.75}
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
    torch.testing.assert_close(last, want[-1])


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
