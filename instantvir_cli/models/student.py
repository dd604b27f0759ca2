"""The causal one-step student: the teacher's weights with block-causal attention and a KV cache.

InstantViR (arXiv 2511.14208) restores a degraded latent in ONE pass:

    z_hat = z_in - s* v(z_in, t* = 1000 s*, text)          s* = 0.522 (t* = 522), no noise added

Attention is bidirectional inside a block of `block_frames` latent frames (3) and causal
across blocks. Training runs the whole clip with a block-causal mask (`forward`, `restore`),
described rather than built (`BlockCausal`: FlexAttention on CUDA, one SDPA per query block
otherwise; no L x L tensor); inference streams one block at a time (`step`) against a `KVCache`,
a preallocated ring written by the same single pass (no re-run on the output, unlike CausVid).

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

from .block_attention import BlockCausal
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
    `window_blocks` None = every earlier block. The dense reference of `BlockCausal`.
    """
    return BlockCausal(frames, tokens_per_frame, block_frames, window_blocks).dense(device)


@dataclass
class KVCache:
    """Streaming state of the student: per-layer self-attention keys/values in preallocated rings.

    k[i], v[i]: (B, S * Lblk, nh, hd) for layer i, S block slots of Lblk = block_size *
    tokens_per_frame tokens, keys un-rotated (see the module docstring), allocated on the first
    step (None before). S = cache_blocks + 1: the cached blocks plus the block being restored,
    which is written into the slot after the newest (the oldest's, once the window is full) and
    attends to the ring in place: no concatenation, no copy per block. `slots` and
    `block_frames` list the ring slot and frames of each cached block, oldest first; until the
    ring wraps, slots are in time order and the keys are its prefix. cache_blocks None: nothing
    is dropped and the ring doubles when full. `frame_offset` counts every frame streamed so far.
    `cross` holds the per-layer text keys/values, computed on the first step (the text must stay
    the same for a stream; call `reset_text()` to change it).
    """

    cache_blocks: int | None
    block_size: int
    k: list[Tensor | None]
    v: list[Tensor | None]
    block_frames: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    tokens_per_frame: int = 0
    frame_offset: int = 0
    cross: list[tuple[Tensor, Tensor]] | None = None
    _write: int = 0                                    # the current step's slot
    _tokens: int = 0                                   # the current step's tokens

    @classmethod
    def empty(cls, depth: int, cache_blocks: int | None, block_size: int = 3) -> KVCache:
        return cls(cache_blocks, block_size, [None] * depth, [None] * depth)

    @property
    def cached_frames(self) -> int:
        return sum(self.block_frames)

    @property
    def n_slots(self) -> int:
        """Slots of a bounded ring; an unbounded one's current size."""
        if self.cache_blocks is not None:
            return self.cache_blocks + 1
        ring = next((t for t in self.k if t is not None), None)
        return 0 if ring is None else ring.shape[1] // (self.block_size * self.tokens_per_frame)

    def nbytes(self) -> int:
        """Bytes held by the cached tensors (their whole storages, views included)."""
        ts = [t for t in self.k + self.v if t is not None]
        if self.cross:
            ts += [t for kv in self.cross for t in kv]
        return sum(t.untyped_storage().nbytes() for t in ts)

    def reset_text(self) -> None:
        self.cross = None

    def begin(self, frames: int, tokens_per_frame: int) -> tuple[Tensor | None, Tensor | None]:
        """Plan a step of `frames` frames: the slot it writes, and how its keys are laid out.

        Returns (key_index, key_valid): key_index (Lk,) long maps each key of the ring's prefix
        in use to its token in time order (None: the prefix is in time order already);
        key_valid (Lk,) bool marks the tokens a short block leaves stale in its slot (None: all
        valid).
        """
        self.tokens_per_frame = tokens_per_frame
        bt = self.block_size * tokens_per_frame
        if self.cache_blocks is None:
            write = len(self.slots)
        else:
            write = (self.slots[-1] + 1) % self.n_slots if self.slots else 0
        self._write, self._tokens = write, frames * tokens_per_frame
        order = self.slots + [write]                                   # time order
        used = max([(s + 1) * bt for s in self.slots] + [write * bt + self._tokens])
        if order == list(range(len(order))):
            return None, None
        index = torch.zeros(used, dtype=torch.long)
        valid = torch.zeros(used, dtype=torch.bool)
        for rank, slot in enumerate(order):
            n = self._tokens if slot == write else bt
            index[slot * bt: slot * bt + n] = torch.arange(rank * bt, rank * bt + n)
            valid[slot * bt: slot * bt + n] = True
        return index, (None if bool(valid.all()) else valid)

    def layer(self, i: int) -> _LayerCache:
        return _LayerCache(self, i)

    def commit(self, frames: int) -> None:
        """End the step: the block joins the cache, the oldest beyond the window leaves it."""
        self.slots.append(self._write)
        self.block_frames.append(frames)
        if self.cache_blocks is not None:
            while len(self.slots) > self.cache_blocks:
                self.slots.pop(0)
                self.block_frames.pop(0)
        self.frame_offset += frames


@dataclass
class _LayerCache:
    """One layer's view of a KVCache during a step: writes the block into its slot in the ring."""

    cache: KVCache
    i: int

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v (B, Lb, nh, hd) of the current block -> the ring's prefix in use, (B, Lk, nh, hd)."""
        c = self.cache
        bt = c.block_size * c.tokens_per_frame
        start = c._write * bt
        ring_k, ring_v = c.k[self.i], c.v[self.i]
        need = (c._write + 1) * bt
        if ring_k is None or ring_k.shape[1] < need:
            slots = c.cache_blocks + 1 if c.cache_blocks is not None else max(4, 2 * (c._write + 1))
            shape = (k.shape[0], slots * bt) + tuple(k.shape[2:])
            new_k, new_v = k.new_empty(shape), v.new_empty(shape)
            if ring_k is not None:                                     # unbounded: grow, keep the prefix
                new_k[:, :ring_k.shape[1]] = ring_k
                new_v[:, :ring_v.shape[1]] = ring_v
            ring_k, ring_v = c.k[self.i], c.v[self.i] = new_k, new_v
        ring_k[:, start:start + k.shape[1]] = k
        ring_v[:, start:start + v.shape[1]] = v
        used = max([(s + 1) * bt for s in c.slots] + [start + k.shape[1]])
        return ring_k[:, :used], ring_v[:, :used]                      # (B, Lk, nh, hd)


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
    def block_mask(self, frames: int, tokens_per_frame: int) -> BlockCausal:
        """The training mask of a clip, described (`block_attention.py`; `.dense()` builds it)."""
        sc = self.student_config
        return BlockCausal(frames, tokens_per_frame, sc.block_frames, sc.cache_blocks)

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
        mask = self.block_mask(T, (h // ph) * (w // pw))               # no (L, L) tensor
        return super().forward(z, t, context, frame_start, mask)

    def restore(self, z_in: Tensor, context: Tensor | None = None) -> Tensor:
        """One-step restore of a whole clip: z_in - s* v(z_in, t*); (B, C, T', h, w)."""
        return z_in - self.student_config.s_star * self(z_in, self.t_star, context)

    # ------------------------------------------------------------- streaming
    def new_cache(self) -> KVCache:
        sc = self.student_config
        return KVCache.empty(self.config.depth, sc.cache_blocks, sc.block_frames)

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
        cos, sin = self.rope((Fc + Fb, h, w), 0)                       # (Fc+Fb)hw x hd/2, window-relative, time order
        rope_q = (cos[Fc * hw:], sin[Fc * hw:])                        # (Lb, hd/2)
        index, valid = cache.begin(Fb, hw)
        rope_k = (cos, sin) if index is None else (cos[index.to(cos.device)], sin[index.to(cos.device)])  # (Lk, hd/2), ring order
        mask = None if valid is None else valid.to(x.device).expand(x.shape[1], -1)  # (Lb, Lk): a short block's stale slot tail
        for i, blk in enumerate(self.blocks):
            kv = cache.cross[i] if cache.cross is not None else None
            x = blk(x, e0, rope_q, rope_k, cross_kv=kv, mask=mask, cache=cache.layer(i))
        cache.commit(Fb)
        return self.unpatchify(self.final(x, e), (Fb, h, w))           # (B, C, Tb, h, w)

    def step(self, z_block: Tensor, cache: KVCache, context: Tensor | None = None) -> Tensor:
        """One-step restore of the next block: z - s* v(z, t*), updating `cache`; (B, C, Tb, h, w)."""
        return z_block - self.student_config.s_star * self.step_velocity(z_block, cache, context)


__all__ = ["CausalStudent", "KVCache", "StudentConfig", "block_causal_mask"]
