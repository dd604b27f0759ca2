"""The streaming restorer interface that classical and learned restorers share.

A restorer turns degraded measurement frames into restored full-resolution frames,
block by block, in order. It may hold frames back (a learned model needs whole
latent blocks) and returns them later; `flush` returns whatever is still held.
Over a whole video, the frames returned equal the frames pushed, in order.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Restorer(Protocol):
    """Streams y-blocks in, x-blocks out. Memory is bounded by the block size."""

    name: str

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
