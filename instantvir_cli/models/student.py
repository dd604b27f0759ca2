"""The causal one-step student: the teacher's weights with block-causal attention and a KV cache.

InstantViR (arXiv 2511.14208) restores a degraded latent in ONE pass:

    z_hat = z_in - s* v(z_in, t* = 1000 s*, text)          s* = 0.522 (t* = 522), no noise added

Attention is bidirectional inside a block of `block_frames` latent frames (3) and causal
across blocks. Training runs the whole clip with a block-causal mask (`forward`, `restore`);
inference streams one block at a time (`step`) against a `KVCache` written by the same single
pass (no re-run on the output, unlike CausVid).

Rolling window and RoPE positions. The cache keeps the last `cache_blocks` blocks, so a block
attends to itself and at most `cache_blocks` earlier blocks: memory is flat for any video
length, and `forward` applies the same window through its mask, so training and streaming
see the same attention. The cache stores keys BEFORE RoPE. Each step rotates the cached and
new keys with frame positions counted from the oldest cached frame (0, 1, ...), the queries
with the positions that follow. Until the window is full these are the absolute positions;
afterwards they are the absolute positions minus the window's first frame. RoPE scores depend
only on position differences (R(a) q . R(b) k = q . R(b - a) k), so this is exactly attention
with absolute positions (tested), while every position stays below
(cache_blocks + 1) * block_frames: no drift, no extrapolation past the trained length.
`KVCache.frame_offset` still counts absolute frames for the caller's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .dit import DiT, DiTConfig


@dataclass(frozen=True)
class StudentConfig:
    block_frames: int = 3                              # latent frames per causal block
    cache_blocks: int | None = 6                       # earlier blocks attended (6 + 1 = 21 frames, Wan's
                                                       # training length); 0 = block only; None = unbounded
    s_star: float = 0.522                              # flow time of the one-step restore (t* = 1000 s*)

    def __post_init__(self):
        if self.block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {self.block_frames}")
        if self.cache_blocks is not None and self.cache_blocks < 0:
            raise ValueError(f"cache_blocks must be >= 0 or None, got {self.cache_blocks}")
        if not 0.0 < self.s_star <= 1.0:
            raise ValueError(f"s_star must be in (0, 1], got {self.s_star}")

    @property
    def t_star(self) -> float:
        return 1000.0 * self.s_star


def block_causal_mask(
    frames: int,
    tokens_per_frame: int,
    block_frames: int,
    window_blocks: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(L, L) bool mask, True = may attend: query block q sees key blocks q - window .. q.

    Blocks are `block_frames` consecutive frames counted from frame 0 (the last may be short);
    `window_blocks` None = every earlier block.
    """
    blk = torch.arange(frames, device=device) // block_frames
    blk = blk.repeat_interleave(tokens_per_frame)                      # (L,)
    q, k = blk[:, None], blk[None, :]                                  # (L, 1), (1, L)
    mask = k <= q
    if window_blocks is not None:
        mask &= k >= q - window_blocks
    return mask                                                        # (L, L)


@dataclass
class KVCache:
    """Streaming state of the student: per-layer self-attention keys/values of earlier blocks.

    k[i], v[i]: (B, Lc, nh, hd) for layer i, keys un-rotated (see the module docstring), or
    None before the first block. `block_frames` lists the frames of each cached block, oldest
    first; `frame_offset` counts every frame streamed so far. `cross` holds the per-layer text
    keys/values, computed on the first step (the text must stay the same for a stream; call
    `reset_text()` to change it).
    """

    cache_blocks: int | None
    k: list[Tensor | None]
    v: list[Tensor | None]
    block_frames: list[int] = field(default_factory=list)
    tokens_per_frame: int = 0
    frame_offset: int = 0
    cross: list[tuple[Tensor, Tensor]] | None = None

    @classmethod
    def empty(cls, depth: int, cache_blocks: int | None) -> KVCache:
        return cls(cache_blocks, [None] * depth, [None] * depth)

    @property
    def cached_frames(self) -> int:
        return sum(self.block_frames)

    def nbytes(self) -> int:
        """Bytes held by the cached tensors (their whole storages, views included)."""
        ts = [t for t in self.k + self.v if t is not None]
        if self.cross:
            ts += [t for kv in self.cross for t in kv]
        return sum(t.untyped_storage().nbytes() for t in ts)

    def reset_text(self) -> None:
        self.cross = None

    def layer(self, i: int, drop_tokens: int) -> _LayerCache:
        return _LayerCache(self, i, drop_tokens)


@dataclass
class _LayerCache:
    """One layer's view of a KVCache during a step: prepends the cache, stores the new window."""

    cache: KVCache
    i: int
    drop: int                                          # oldest tokens to forget after this step

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v (B, Lb, nh, hd) of the current block -> cached + current, (B, Lk, nh, hd)."""
        c = self.cache
        old_k, old_v = c.k[self.i], c.v[self.i]
        k_all = k if old_k is None else torch.cat([old_k, k], dim=1)  # (B, Lk, nh, hd)
        v_all = v if old_v is None else torch.cat([old_v, v], dim=1)  # (B, Lk, nh, hd)
        if self.drop >= k_all.shape[1]:
            c.k[self.i] = c.v[self.i] = None
        elif self.drop:
            # clone so the dropped tokens' storage is freed (a slice would keep it alive)
            c.k[self.i], c.v[self.i] = k_all[:, self.drop:].clone(), v_all[:, self.drop:].clone()
        else:
            c.k[self.i], c.v[self.i] = k_all, v_all
        return k_all, v_all


class CausalStudent(DiT):
    """The teacher's architecture (same parameters and state-dict keys) run block-causally."""

    def __init__(self, config: DiTConfig, student: StudentConfig = StudentConfig()):
        if config.patch[0] != 1:
            raise ValueError(f"the causal student needs temporal patch 1, got patch {config.patch}")
        super().__init__(config)
        self.student_config = student

    @classmethod
    def from_teacher(cls, teacher: DiT, student: StudentConfig = StudentConfig()) -> CausalStudent:
        """A student holding a copy of `teacher`'s weights (same device and dtype)."""
        p = next(teacher.parameters())
        with torch.device(p.device):
            model = cls(teacher.config, student).to(p.dtype)
        model.load_state_dict(teacher.state_dict())
        return model

    @property
    def t_star(self) -> float:
        return self.student_config.t_star

    # ------------------------------------------------------------ full clip
    def block_mask(self, frames: int, tokens_per_frame: int, device=None) -> Tensor:
        sc = self.student_config
        return block_causal_mask(frames, tokens_per_frame, sc.block_frames, sc.cache_blocks, device)

    def forward(self, z: Tensor, t: Tensor | float, context: Tensor | None = None, frame_start: int = 0) -> Tensor:
        """Velocity of a whole clip under the block-causal (windowed) mask (training).

        Args:
            z: (B, C, T', h, w); blocks are frames [0, bf), [bf, 2 bf), ...
            t: number, (B,) or (B, T') timesteps in [0, 1000].
            context: (B, Lc, text_dim) or None.
            frame_start: RoPE position of frame 0 (results do not depend on it).
        Returns:
            v: (B, C, T', h, w).
        """
        _, ph, pw = self.config.patch
        T, h, w = z.shape[2:]
        mask = self.block_mask(T, (h // ph) * (w // pw), z.device)
        return super().forward(z, t, context, frame_start, mask)

    def restore(self, z_in: Tensor, context: Tensor | None = None) -> Tensor:
        """One-step restore of a whole clip: z_in - s* v(z_in, t*); (B, C, T', h, w)."""
        return z_in - self.student_config.s_star * self(z_in, self.t_star, context)

    # ------------------------------------------------------------- streaming
    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config.depth, self.student_config.cache_blocks)

    def step_velocity(
        self,
        z: Tensor,
        cache: KVCache,
        context: Tensor | None = None,
        t: Tensor | float | None = None,
    ) -> Tensor:
        """Velocity of the next block, attending to the cached blocks; updates `cache`.

        Args:
            z: (B, C, Tb, h, w), Tb <= block_frames (a short block ends a stream).
            cache: the stream's KVCache (from `new_cache()`).
            context: (B, Lc, text_dim) text; read on the first step only (cached).
            t: timestep(s) of this block; default t*.
        Returns:
            v: (B, C, Tb, h, w).
        """
        sc = self.student_config
        x, (Fb, h, w) = self.embed(z)                                  # (B, Lb, D)
        if Fb > sc.block_frames:
            raise ValueError(f"a block has at most {sc.block_frames} frames, got {Fb}")
        if cache.block_frames and cache.tokens_per_frame != h * w:
            raise ValueError(f"block of {h}x{w} tokens per frame does not match the cache's {cache.tokens_per_frame}")
        if cache.block_frames and cache.block_frames[-1] < sc.block_frames:
            raise ValueError("a short block ends a stream: start a new cache to continue")
        e, e0 = self.embed_time(self.t_star if t is None else t, x.shape[0], Fb)
        if self.text_mlp is not None and cache.cross is None:
            ctx = self.embed_text(context)                             # (B, Lc, D)
            cache.cross = [blk.cross.kv(ctx) for blk in self.blocks]
        elif self.text_mlp is None and context is not None:
            self.embed_text(context)                                   # raises: no cross-attention

        Fc, hw = cache.cached_frames, h * w
        cos, sin = self.rope((Fc + Fb, h, w), 0)                       # (Lk, hd/2), window-relative
        rope_q = (cos[Fc * hw:], sin[Fc * hw:])                        # (Lb, hd/2)
        frames_after = cache.block_frames + [Fb]
        n_drop = 0 if sc.cache_blocks is None else max(0, len(frames_after) - sc.cache_blocks)
        drop = sum(frames_after[:n_drop]) * hw
        for i, blk in enumerate(self.blocks):
            kv = cache.cross[i] if cache.cross is not None else None
            x = blk(x, e0, rope_q, (cos, sin), cross_kv=kv, cache=cache.layer(i, drop))
        cache.block_frames = frames_after[n_drop:]
        cache.tokens_per_frame = hw
        cache.frame_offset += Fb
        return self.unpatchify(self.final(x, e), (Fb, h, w))           # (B, C, Tb, h, w)

    def step(self, z_block: Tensor, cache: KVCache, context: Tensor | None = None) -> Tensor:
        """One-step restore of the next block: z - s* v(z, t*), updating `cache`; (B, C, Tb, h, w)."""
        return z_block - self.student_config.s_star * self.step_velocity(z_block, cache, context)


__all__ = ["CausalStudent", "KVCache", "StudentConfig", "block_causal_mask"]
