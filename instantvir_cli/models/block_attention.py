"""Block-causal self-attention without an L x L mask (the student's whole-clip training forward).

Tokens are frame-major; a block is `block_frames` consecutive frames counted from frame 0 (the
last may be short). Query block q attends to key blocks q - window .. q (window None = every
earlier block). At 832x480 x 81 frames (21 latent frames of 1,560 tokens, L = 32,760) a dense
bool mask is 1.07 GB and rules out the fused kernels, so the mask is described (`BlockCausal`)
and one of two backends runs it:

    flex     torch.nn.attention.flex_attention with a block mask (compiled), on CUDA: only the
             (L/128)^2 tile map is built, fully masked tiles are skipped
    chunked  one SDPA call per query block over its key span [k0, q1): no mask at all, the
             fused kernels apply; memory per call Lb x (window + 1) Lb scores

`VIR_BLOCK_ATTENTION=flex|chunked|dense` forces a backend (dense: the (L, L) mask, for tests).
FlexAttention has no backward on the CPU and its eager form materializes the scores, so the CPU
always runs `chunked`. Both equal the dense form (tests: forward and gradients).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("flex", "chunked", "dense")


@dataclass(frozen=True)
class BlockCausal:
    """The block-causal (windowed) mask of a clip of `frames` frames, described, never built."""

    frames: int
    tokens_per_frame: int
    block_frames: int
    window_blocks: int | None = None

    @property
    def tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def block_tokens(self) -> int:
        return self.block_frames * self.tokens_per_frame

    def spans(self) -> list[tuple[int, int, int]]:
        """Per query block: (q0, q1, k0); its queries [q0, q1) attend keys [k0, q1)."""
        bt, L = self.block_tokens, self.tokens
        out = []
        for b in range(-(-L // bt)):
            k0 = 0 if self.window_blocks is None else max(0, b - self.window_blocks) * bt
            out.append((b * bt, min(L, (b + 1) * bt), k0))
        return out

    def dense(self, device: torch.device | str | None = None) -> Tensor:
        """(L, L) bool, True = may attend (the reference form)."""
        blk = torch.arange(self.frames, device=device) // self.block_frames
        blk = blk.repeat_interleave(self.tokens_per_frame)             # (L,)
        q, k = blk[:, None], blk[None, :]                              # (L, 1), (1, L)
        mask = k <= q
        if self.window_blocks is not None:
            mask &= k >= q - self.window_blocks
        return mask                                                    # (L, L)


def flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def backend_for(device: torch.device) -> str:
    """flex on CUDA where torch has it, chunked otherwise; `VIR_BLOCK_ATTENTION` overrides."""
    forced = os.environ.get("VIR_BLOCK_ATTENTION", "")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"VIR_BLOCK_ATTENTION: expected one of {', '.join(BACKENDS)}, got {forced!r}")
        return forced
    return "flex" if device.type == "cuda" and flex_available() else "chunked"


def chunked(q: Tensor, k: Tensor, v: Tensor, spec: BlockCausal) -> Tensor:
    """q, k, v (B, nh, L, hd) -> (B, nh, L, hd): one unmasked SDPA per query block."""
    outs = [F.scaled_dot_product_attention(q[:, :, q0:q1], k[:, :, k0:q1], v[:, :, k0:q1])
            for q0, q1, k0 in spec.spans()]                            # (B, nh, Lb, hd) each
    return torch.cat(outs, dim=2)                                      # (B, nh, L, hd)


@functools.lru_cache(maxsize=8)
def _block_mask(spec: BlockCausal, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    bt, win = spec.block_tokens, spec.window_blocks

    def mask_mod(b, h, q_idx, kv_idx):
        qb, kb = q_idx // bt, kv_idx // bt
        ok = kb <= qb
        return ok if win is None else ok & (kb >= qb - win)

    return create_block_mask(mask_mod, None, None, spec.tokens, spec.tokens, device=device)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex(q: Tensor, k: Tensor, v: Tensor, spec: BlockCausal, compiled: bool | None = None) -> Tensor:
    """q, k, v (B, nh, L, hd) -> (B, nh, L, hd) through FlexAttention and a cached block mask.

    `compiled` (default: on CUDA) runs the fused kernel; eager is the reference form (forward only
    on the CPU).
    """
    from torch.nn.attention.flex_attention import flex_attention

    compiled = q.is_cuda if compiled is None else compiled
    fn = _compiled_flex() if compiled else flex_attention
    return fn(q, k, v, block_mask=_block_mask(spec, str(q.device)))


def block_causal_attention(q: Tensor, k: Tensor, v: Tensor, spec: BlockCausal, backend: str | None = None) -> Tensor:
    """Block-causal attention, q, k, v (B, nh, L, hd) -> (B, nh, L, hd), by `backend_for` or `backend`."""
    backend = backend or backend_for(q.device)
    if backend == "flex":
        return flex(q, k, v, spec)
    if backend == "chunked":
        return chunked(q, k, v, spec)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=spec.dense(q.device))


__all__ = ["BACKENDS", "BlockCausal", "backend_for", "block_causal_attention", "chunked", "flex", "flex_available"]
