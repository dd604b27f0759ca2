"""The causal student: block-causal mask, streaming with the KV cache, rolling window, RoPE."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from instantvir_cli.models.dit import DIT_PRESETS, DiT
from instantvir_cli.models.student import CausalStudent, KVCache, StudentConfig, block_causal_mask

TINY = replace(DIT_PRESETS["tiny"], in_channels=4, out_channels=4)


def random_teacher(cfg=TINY, std: float = 0.2, seed: int = 0) -> DiT:
    g = torch.Generator().manual_seed(seed)
    model = DiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def student(cache_blocks=None, cfg=TINY, **kw) -> CausalStudent:
    return CausalStudent.from_teacher(random_teacher(cfg), StudentConfig(cache_blocks=cache_blocks, **kw)).eval()


def stream(model: CausalStudent, z: torch.Tensor, context=None, cache: KVCache | None = None):
    """Restore z block by block; returns (output, cache)."""
    cache = cache or model.new_cache()
    bf = model.student_config.block_frames
    outs = [model.step(z[:, :, i:i + bf], cache, context) for i in range(0, z.shape[2], bf)]
    return torch.cat(outs, dim=2), cache


def test_config_defaults():
    sc = StudentConfig()
    assert (sc.block_frames, sc.cache_blocks, sc.s_star) == (3, 6, 0.522)
    assert sc.t_star == pytest.approx(522.0)
    with pytest.raises(ValueError):
        StudentConfig(s_star=0.0)
    with pytest.raises(ValueError):
        StudentConfig(block_frames=0)


def test_block_causal_mask():
    m = block_causal_mask(frames=5, tokens_per_frame=1, block_frames=2)
    expected = torch.tensor(
        [[1, 1, 0, 0, 0],
         [1, 1, 0, 0, 0],
         [1, 1, 1, 1, 0],
         [1, 1, 1, 1, 0],
         [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    w = block_causal_mask(frames=6, tokens_per_frame=2, block_frames=2, window_blocks=1)
    assert w.shape == (12, 12)
    assert not w[8, 0] and w[8, 4] and w[8, 9] and not w[0, 4]           # block 2 sees blocks 1-2 only


def test_from_teacher_copies_weights():
    teacher = random_teacher()
    s = CausalStudent.from_teacher(teacher)
    assert s.state_dict().keys() == teacher.state_dict().keys()
    for (k, a), b in zip(s.state_dict().items(), teacher.state_dict().values()):
        assert torch.equal(a, b), k
        assert a.data_ptr() != b.data_ptr()                              # a copy, not shared
    with torch.no_grad():
        s.final.linear.bias.add_(1.0)
    assert not torch.equal(s.final.linear.bias, teacher.final.linear.bias)


def test_attention_is_bidirectional_in_a_block_and_causal_across():
    s = student()
    z = torch.randn(1, 4, 6, 4, 4)
    z2 = z.clone()
    z2[:, :, 2] += 1.0                                                   # last frame of block 0
    z3 = z.clone()
    z3[:, :, 4] += 1.0                                                   # inside block 1
    with torch.no_grad():
        v, v2, v3 = s(z, 522.0), s(z2, 522.0), s(z3, 522.0)
    assert not torch.allclose(v[:, :, 0], v2[:, :, 0])                  # frame 0 sees frame 2
    torch.testing.assert_close(v[:, :, :3], v3[:, :, :3], atol=1e-6, rtol=0)  # block 0 blind to block 1
    assert not torch.allclose(v[:, :, 3], v3[:, :, 3])                  # frame 3 sees frame 4


def test_restore_is_one_step_at_t_star():
    s = student(s_star=0.4)
    z = torch.randn(2, 4, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(s.restore(z), z - 0.4 * s(z, 400.0))
    fresh = CausalStudent(TINY)                                          # zero init: v = 0
    assert torch.equal(fresh.restore(z), z)


@pytest.mark.parametrize("frames", [9, 11])                              # 11: a short last block
def test_streaming_equals_full_block_causal_forward(frames):
    s = student(cache_blocks=None)
    z = torch.randn(2, 4, frames, 4, 6)
    with torch.no_grad():
        full = s.restore(z)
        streamed, cache = stream(s, z)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
    assert cache.frame_offset == frames
    assert cache.block_frames == [3, 3, 3] + ([2] if frames == 11 else [])


def test_streaming_with_text_equals_full_forward():
    cfg = replace(TINY, text_dim=8)
    s = student(cache_blocks=None, cfg=cfg)
    z, ctx = torch.randn(1, 4, 7, 4, 4), torch.randn(1, 5, 8)
    with torch.no_grad():
        full = s.restore(z, ctx)
        streamed, cache = stream(s, z, ctx)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
    assert cache.cross is not None and len(cache.cross) == cfg.depth     # text K/V cached once


def test_cache_covering_the_clip_is_the_same_as_unbounded():
    z = torch.randn(1, 4, 12, 4, 4)
    with torch.no_grad():
        a = student(cache_blocks=None).restore(z)
        b = stream(student(cache_blocks=3), z)[0]                          # 4 blocks: window covers all
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [0, 1, 2])
def test_rolling_window_equals_full_forward_with_window_mask(window):
    s = student(cache_blocks=window)
    z = torch.randn(1, 4, 18, 4, 4)                                       # 6 blocks
    with torch.no_grad():
        full = s.restore(z)
        streamed, cache = stream(s, z)
        unbounded = student(cache_blocks=None).restore(z)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full[:, :, -3:], unbounded[:, :, -3:], atol=1e-3)  # the window matters
    assert len(cache.block_frames) == window and cache.frame_offset == 18


def test_rope_positions_stay_bounded_and_results_are_shift_invariant():
    s = student(cache_blocks=2)
    grids = []
    rope = s.rope
    s.rope = lambda grid, start=0: (grids.append((grid, start)), rope(grid, start))[1]
    z = torch.randn(1, 4, 3 * 12, 4, 4)
    with torch.no_grad():
        streamed, cache = stream(s, z)
    # every step's key positions start at 0 and span at most (cache_blocks + 1) blocks
    assert all(start == 0 and grid[0] <= 3 * 3 for grid, start in grids)
    assert grids[0][0][0] == 3 and grids[1][0][0] == 6 and grids[-1][0][0] == 9
    assert cache.frame_offset == 36                                       # absolute count continues
    s.rope = rope
    with torch.no_grad():
        at0, at1000 = s.restore(z), z - s.student_config.s_star * s(z, s.t_star, frame_start=1000)
    torch.testing.assert_close(streamed, at0, atol=1e-5, rtol=1e-5)       # window-relative = absolute
    torch.testing.assert_close(at1000, at0, atol=1e-4, rtol=1e-4)


def test_cache_memory_is_flat_over_50_blocks():
    s = student(cache_blocks=2)
    cache = s.new_cache()
    sizes, ptrs = [], set()
    with torch.no_grad():
        for _ in range(50):
            s.step(torch.randn(1, 4, 3, 4, 4), cache)
            sizes.append(cache.nbytes())
            ptrs.add(cache.k[0].data_ptr())
    # a preallocated ring: layers x (k, v) x (2 + 1) slots x 3 frames x 4 tokens x D x 4 bytes
    expected = TINY.depth * 2 * (3 * 3 * 4) * TINY.dim * 4
    assert sizes == [expected] * 50 and len(ptrs) == 1                   # allocated once, never replaced
    assert cache.frame_offset == 150 and cache.block_frames == [3, 3]


class CatCache(KVCache):
    """The concatenating cache the ring replaced: torch.cat of the whole cache every block."""

    def begin(self, frames, tokens_per_frame):
        self.tokens_per_frame, self._tokens = tokens_per_frame, frames * tokens_per_frame
        return None, None

    def layer(self, i):
        cache = self

        class _Layer:
            def extend(self, k, v):
                if cache.k[i] is not None:
                    k, v = torch.cat([cache.k[i], k], 1), torch.cat([cache.v[i], v], 1)
                cache.k[i], cache.v[i] = k, v
                return k, v

        return _Layer()

    def commit(self, frames):
        after = self.block_frames + [frames]
        n_drop = 0 if self.cache_blocks is None else max(0, len(after) - self.cache_blocks)
        drop = sum(after[:n_drop]) * self.tokens_per_frame
        self.k = [k[:, drop:].clone() for k in self.k]
        self.v = [v[:, drop:].clone() for v in self.v]
        self.block_frames = after[n_drop:]
        self.frame_offset += frames


@pytest.mark.parametrize("cache_blocks,frames", [(2, 3 * 9), (2, 3 * 9 + 2), (3, 3 * 11 + 1), (0, 12), (None, 3 * 9 + 1)])
def test_ring_cache_equals_the_concatenating_cache(cache_blocks, frames):
    """Over more blocks than the ring holds (it wraps several times), with a short last block."""
    s = student(cache_blocks=cache_blocks)
    z = torch.randn(2, 4, frames, 4, 4)
    cat = CatCache.empty(TINY.depth, cache_blocks, 3)
    with torch.no_grad():
        ring_out, ring = stream(s, z)
        cat_out, _ = stream(s, z, cache=cat)
        full = s.restore(z)
    diff = (ring_out - cat_out).abs().max().item()
    assert diff < 1e-5, diff
    torch.testing.assert_close(ring_out, full, atol=1e-5, rtol=1e-5)
    assert ring.block_frames == cat.block_frames and ring.frame_offset == frames
    if cache_blocks is not None:
        assert ring.k[0].shape[1] == (cache_blocks + 1) * 3 * 4          # fixed capacity


def test_ring_cache_before_it_wraps_is_bit_identical_to_concatenation():
    s = student(cache_blocks=6)
    z = torch.randn(1, 4, 3 * 7, 4, 6)                                   # 7 blocks: fills the ring, no wrap
    with torch.no_grad():
        a, _ = stream(s, z)
        b, _ = stream(s, z, cache=CatCache.empty(TINY.depth, 6, 3))
    assert torch.equal(a, b)


def test_step_rejects_bad_blocks():
    s = student(cache_blocks=2)
    cache = s.new_cache()
    with torch.no_grad():
        with pytest.raises(ValueError, match="at most 3 frames"):
            s.step(torch.randn(1, 4, 4, 4, 4), cache)
        s.step(torch.randn(1, 4, 3, 4, 4), cache)
        with pytest.raises(ValueError, match="tokens per frame"):
            s.step(torch.randn(1, 4, 3, 4, 6), cache)
        s.step(torch.randn(1, 4, 1, 4, 4), cache)                         # short block: the end
        with pytest.raises(ValueError, match="short block"):
            s.step(torch.randn(1, 4, 3, 4, 4), cache)
    with pytest.raises(ValueError, match="temporal patch 1"):
        CausalStudent(replace(TINY, patch=(2, 2, 2)))
