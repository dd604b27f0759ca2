"""The initial estimate x0 = init(y): the operator's, the classical restorer's, or its fast form."""

from __future__ import annotations

import pytest
import torch

from instantvir_cli.classical import classical_restorer
from instantvir_cli.errors import UsageError
from instantvir_cli.estimate import InitialEstimate
from instantvir_cli.ops import build_operator

H, W = 48, 64


def _smooth_clip(T=3):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(T, 3, H // 8, W // 8, generator=g), size=(H, W), mode="bicubic")
    return (x.clamp(0, 1) * 2 - 1).transpose(0, 1)[None]          # (1, 3, T, H, W)


@pytest.mark.parametrize("task", ["sr4x", "deblur", "inpaint"])
def test_operator_estimate_is_the_operators_init(task):
    op = build_operator(task, H, W)
    y = op.A(_smooth_clip())
    torch.testing.assert_close(InitialEstimate("operator")(op, y), op.init(y))


@pytest.mark.parametrize("task", ["sr4x", "deblur", "inpaint"])
def test_classical_estimate_is_the_classical_restorer(task):
    op = build_operator(task, H, W)
    y = op.A(_smooth_clip())
    torch.testing.assert_close(InitialEstimate("classical")(op, y), classical_restorer(op).push(y))


@pytest.mark.parametrize("task", ["deblur", "inpaint"])
def test_fast_estimate_skips_the_refinement_but_beats_the_operators_init(task):
    op = build_operator(task, H, W)
    x = _smooth_clip()
    y = op.A(x)
    fast, full, plain = (InitialEstimate(k)(op, y) for k in ("fast", "classical", "operator"))
    err = {k: float(((v - x) ** 2).mean()) for k, v in (("fast", fast), ("full", full), ("plain", plain))}
    assert not torch.equal(fast, full)
    assert err["fast"] < err["plain"]


def test_estimate_follows_a_swapped_operator():
    """A mask video swaps the operator between blocks: each call uses the op it is given."""
    est = InitialEstimate("classical")
    x = _smooth_clip()
    a, b = build_operator("inpaint", H, W, seed=1), build_operator("inpaint", H, W, seed=2)
    out_a, out_b = est(a, a.A(x)), est(b, b.A(x))
    torch.testing.assert_close(out_b, classical_restorer(b).push(b.A(x)))
    assert not torch.equal(out_a, out_b)


def test_unknown_estimate_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown initial estimate"):
        InitialEstimate("magic")
