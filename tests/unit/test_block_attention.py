"""Block-causal attention without an L x L mask: chunked SDPA and FlexAttention against the dense form."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from instantvir_cli.models import block_attention as ba
from instantvir_cli.models.block_attention import BlockCausal, block_causal_attention, chunked

SPECS = [BlockCausal(7, 3, 2, None), BlockCausal(9, 4, 3, 1), BlockCausal(6, 5, 1, 0), BlockCausal(8, 2, 3, 6)]


def qkv(spec, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, spec.tokens, 8, generator=g, dtype=torch.float64).requires_grad_(grad) for _ in range(3)]


def dense(q, k, v, spec):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=spec.dense())


def test_spans_cover_exactly_the_dense_mask():
    for spec in SPECS:
        m = torch.zeros(spec.tokens, spec.tokens, dtype=torch.bool)
        for q0, q1, k0 in spec.spans():
            m[q0:q1, k0:q1] = True
        assert torch.equal(m, spec.dense())


@pytest.mark.parametrize("spec", SPECS)
def test_chunked_equals_dense_forward_and_gradients(spec):
    a, b = qkv(spec, grad=True), qkv(spec, grad=True)
    out_c, out_d = chunked(*a, spec), dense(*b, spec)
    assert (out_c - out_d).abs().max() < 1e-12
    w = torch.randn_like(out_c)
    (out_c * w).sum().backward()
    (out_d * w).sum().backward()
    for x, y in zip(a, b):
        assert (x.grad - y.grad).abs().max() < 1e-12


@pytest.mark.skipif(not ba.flex_available(), reason="torch without flex_attention")
@pytest.mark.parametrize("spec", SPECS)
def test_flex_equals_dense_forward(spec):
    """FlexAttention's eager form on the CPU (forward only: it has no CPU backward)."""
    q, k, v = (t.float() for t in qkv(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ba.flex(q, k, v, spec, compiled=False)
    assert (out - dense(q, k, v, spec)).abs().max() < 1e-5


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("VIR_BLOCK_ATTENTION", raising=False)
    assert ba.backend_for(torch.device("cpu")) == "chunked"
    if ba.flex_available():
        assert ba.backend_for(torch.device("cuda")) == "flex"
    monkeypatch.setenv("VIR_BLOCK_ATTENTION", "dense")
    assert ba.backend_for(torch.device("cpu")) == "dense"
    monkeypatch.setenv("VIR_BLOCK_ATTENTION", "fast")
    with pytest.raises(ValueError, match="VIR_BLOCK_ATTENTION"):
        ba.backend_for(torch.device("cpu"))


def test_student_forward_chunked_equals_dense(monkeypatch):
    """The whole student (forward and parameter gradients) under both backends."""
    from test_student import student

    s = student(cache_blocks=1).double().train()
    z = torch.randn(1, 4, 8, 4, 4, dtype=torch.float64)
    grads, outs = {}, {}
    for backend in ("chunked", "dense"):
        monkeypatch.setenv("VIR_BLOCK_ATTENTION", backend)
        s.zero_grad()
        out = s(z, 522.0)
        out.square().sum().backward()
        outs[backend] = out.detach()
        grads[backend] = [p.grad.clone() for p in s.parameters()]
    assert (outs["chunked"] - outs["dense"]).abs().max() < 1e-10
    assert max((a - b).abs().max() for a, b in zip(grads["chunked"], grads["dense"])) < 1e-9


def test_no_dense_mask_is_built(monkeypatch):
    monkeypatch.delenv("VIR_BLOCK_ATTENTION", raising=False)
    monkeypatch.setattr(BlockCausal, "dense", lambda *a, **k: pytest.fail("a dense mask was built"))
    spec = BlockCausal(6, 4, 3, 1)
    block_causal_attention(*qkv(spec), spec)
