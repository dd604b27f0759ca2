"""The bidirectional DiT (teacher): shapes, presets, init, timesteps, RoPE, text, guidance."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from instantvir_cli.models.dit import DIT_PRESETS, DiT, DiTConfig, forward_flops
from instantvir_cli.models.layers import apply_rope, attention, rope_angles, rope_split, timestep_embedding

TINY = replace(DIT_PRESETS["tiny"], in_channels=4, out_channels=4)


def randomize(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (the zero init would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def test_wan_preset_has_1_419_b_parameters():
    with torch.device("meta"):
        model = DiT(DIT_PRESETS["wan2.1-1.3b"])
    assert model.num_params == 1_418_996_800
    assert round(model.num_params / 1e9, 3) == 1.419


@pytest.mark.parametrize("name", list(DIT_PRESETS))
def test_every_preset_builds_on_meta(name):
    with torch.device("meta"):
        model = DiT(DIT_PRESETS[name])
    assert model.num_params > 0
    assert (model.text_mlp is None) == (DIT_PRESETS[name].text_dim == 0)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(dim=50, heads=3)
    with pytest.raises(ValueError, match="head dim"):
        DiTConfig(dim=8, heads=2)
    assert DiTConfig(patch=[1, 2, 2]).patch == (1, 2, 2)
    assert DiTConfig(text_dim=None).text_dim == 0


def test_forward_shape_and_zero_init_is_identity():
    torch.manual_seed(0)
    model = DiT(TINY).eval()
    z = torch.randn(2, 4, 5, 8, 12)
    v = model(z, torch.tensor([500.0, 20.0]))
    assert v.shape == z.shape
    assert torch.count_nonzero(v) == 0                                   # adaLN-Zero: v starts at 0
    x, grid = model.embed(z)
    _, e0 = model.embed_time(500.0, 2, grid[0])
    rope = model.rope(grid)
    for blk in model.blocks:                                             # every block is the identity
        assert torch.equal(blk(x, e0, rope), x)


def test_patchify_roundtrip_and_shape_errors():
    model = DiT(replace(TINY, patch=(1, 2, 2)))
    z = torch.randn(1, 4, 3, 6, 8)
    x, grid = model.embed(z)
    assert x.shape == (1, 3 * 3 * 4, TINY.dim) and grid == (3, 3, 4)
    tokens = torch.arange(1 * 36 * 16, dtype=torch.float32).view(1, 36, 16)
    out = model.unpatchify(tokens, grid)
    assert out.shape == (1, 4, 3, 6, 8)
    # Wan's unpatchify: token vectors ordered (pt, ph, pw, c), einsum 'fhwpqrc->cfphqwr'
    ref = torch.einsum("fhwpqrc->cfphqwr", tokens[0].view(3, 3, 4, 1, 2, 2, 4)).reshape(4, 3, 6, 8)
    assert torch.equal(out[0], ref)
    assert out[0, 1, 2, 3, 5] == tokens[0, 2 * 12 + 1 * 4 + 2, (1 * 2 + 1) * 4 + 1]
    with pytest.raises(ValueError, match="does not fit"):
        model(torch.randn(1, 4, 3, 5, 8), 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        model(torch.randn(1, 3, 3, 6, 8), 1.0)


def test_per_frame_timesteps():
    model = randomize(DiT(TINY))
    z = torch.randn(2, 4, 4, 4, 4)
    t = torch.tensor([300.0, 800.0])
    with torch.no_grad():
        v1 = model(z, t)
        v2 = model(z, t[:, None].expand(2, 4))                            # same t on every frame
        v3 = model(z, torch.tensor([[300.0, 300.0, 300.0, 900.0], [800.0] * 4]))
    torch.testing.assert_close(v1, v2, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(v1[0], v3[0], atol=1e-4)                     # frame 3's t matters
    torch.testing.assert_close(v1[1], v3[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="timesteps"):
        model(z, torch.zeros(2, 3))


def test_timestep_embedding_matches_wan_formula():
    t = torch.tensor([0.0, 1.0, 522.0, 999.0])
    half = 128
    ref = torch.outer(t.double(), torch.pow(10000, -torch.arange(half).double().div(half)))
    ref = torch.cat([torch.cos(ref), torch.sin(ref)], dim=1)
    assert torch.allclose(timestep_embedding(t, 256), ref, atol=1e-12)
    assert timestep_embedding(torch.zeros(2, 3), 8).shape == (2, 3, 8)


def test_rope_split_and_shift_invariance():
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(24) == (8, 8, 8)
    assert rope_split(12) == (4, 4, 4)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2 * 3 * 4, 2, 24, generator=g) for _ in range(3))
    outs = []
    for start in (0, 7, 1000):
        cos, sin = rope_angles(24, 2, 3, 4, frame_start=start)
        outs.append(attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(outs[0], outs[2], atol=1e-5)
    cos, sin = rope_angles(24, 2, 3, 4)
    assert torch.allclose(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1), atol=1e-5)  # a rotation


def test_text_conditioning():
    model = randomize(DiT(replace(TINY, text_dim=8)))
    assert all(hasattr(b, "cross") for b in model.blocks)
    z, ctx = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 5, 8)
    with torch.no_grad():
        a, b = model(z, 400.0, ctx), model(z, 400.0, ctx * 2)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="needs a text context"):
        model(z, 400.0)
    plain = DiT(TINY)
    assert not any(hasattr(b, "cross") for b in plain.blocks)
    with pytest.raises(ValueError, match="no cross-attention"):
        plain(z, 400.0, ctx)


def test_forward_with_cfg():
    model = randomize(DiT(replace(TINY, text_dim=8)))
    z, ctx, null = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 5, 8), torch.zeros(1, 5, 8)
    t = torch.tensor([100.0, 700.0])
    with torch.no_grad():
        cond, uncond = model(z, t, ctx), model(z, t, null.expand(2, -1, -1))
        assert torch.allclose(model.forward_with_cfg(z, t, ctx, null, 1.0), cond, atol=1e-5)
        assert torch.allclose(model.forward_with_cfg(z, t, ctx, null, 0.0), uncond, atol=1e-5)
        g5 = model.forward_with_cfg(z, t, ctx, null, 5.0)
    assert torch.allclose(g5, uncond + 5.0 * (cond - uncond), atol=1e-4)


def test_forward_flops_counts_linear_layers():
    cfg = DIT_PRESETS["small"]
    L = 3 * 30 * 52
    flops = forward_flops(cfg, L)
    with torch.device("meta"):
        n = DiT(cfg).num_params
    assert 2 * L * n * 0.8 < flops - cfg.depth * 4 * L * L * cfg.dim < 2 * L * n * 1.2
    assert forward_flops(cfg, L, keys=3 * L) > flops
    assert math.isfinite(flops)
