"""The streaming restorer interface that classical and learned restorers share.

A restorer turns degraded measurement frames into restored full-resolution frames,
block by block, in order. It may hold frames back (a learned model needs whole
latent blocks) and returns them later; `flush` returns whatever is still held.
Over a whole video, the frames returned equal the frames pushed, in order.
"""

from __future__ import annotations

from typing import Protocol

import torch

from instantvir_cli.ops import Operator


class Restorer(Protocol):
    """Streams y-blocks in, x-blocks out. Memory is bounded by the block size.

    Attributes the restore path reads and sets:
        name: what restores ("classical", "instantvir").
        op: the operator being undone; the path swaps it between pushes for a per-frame mask
            video (`op.with_mask(...)`).
        threads: torch's intra-op thread count to run with (None: torch's own).
        timings: seconds spent per stage so far ({} when the restorer has no stages).
        precision: how it computes, in words ("fp32", "fp32, student linears int8", "bf16 autocast").
    """

    name: str
    op: Operator
    threads: int | None
    timings: dict[str, float]
    precision: str

    def push(self, y: torch.Tensor) -> torch.Tensor:
        """Take the next measurement frames, return restored frames that are ready.

        Args:
            y: (B, C, T, h, w) float32 measurement in [-1, 1] (h, w: measurement size;
               for sr4x these are 4x smaller than the output).
        Returns:
            (B, C, T_out, H, W) float32 in [-1, 1]; T_out may be 0 while frames are held.
        """
        ...

    def flush(self) -> torch.Tensor:
        """Return every frame still held, as (B, C, T_rest, H, W); T_rest may be 0."""
        ...


def restore_tensor(restorer: Restorer, y: torch.Tensor, frames_per_push: int = 4) -> torch.Tensor:
    """Stream a whole clip (B, C, T, h, w) through `restorer` as a video would arrive, `frames_per_push`
    frames at a time, then flush: the restored (B, C, T, H, W)."""
    outs = [restorer.push(y[:, :, i:i + frames_per_push]) for i in range(0, y.shape[2], frames_per_push)]
    outs.append(restorer.flush())
    return torch.cat([o for o in outs if o.shape[2] > 0], dim=2)
