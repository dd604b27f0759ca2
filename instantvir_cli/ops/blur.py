"""Gaussian deblurring operator: per-frame, per-channel 2-D Gaussian with reflect padding.

The kernel is exp(-(u^2 + v^2) / 2 sigma^2) over the full k x k grid, normalized to sum 1.
It is the outer product of its normalized 1-D profile, so pad-then-convolve is exactly
y = B_H x B_W^T with one N x N matrix per axis, B = (1-D convolution) . (reflect padding).
Building B with index maps makes any frame size work (repeated mirroring when the frame is
smaller than the kernel), and AT = B_H^T y B_W is the exact adjoint (the transpose of the
padding scatter-adds the border back). B is banded, so it is applied in row tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from instantvir_cli.errors import UsageError
from instantvir_cli.ops.base import MatrixCache, Operator, check_sigma, check_video, reflect_index

TILE = 96  # rows per tile of the banded matmul


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """Normalized 1-D profile exp(-u^2 / 2 sigma^2), u = -(size-1)/2 .. (size-1)/2 (float64)."""
    u = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(u**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_kernel_2d(size: int, sigma: float) -> np.ndarray:
    """The 2-D kernel exp(-(u^2 + v^2) / 2 sigma^2) over the size x size grid, sum 1 (float64)."""
    g = gaussian_kernel_1d(size, sigma)
    return np.outer(g, g)


def blur_matrix(n: int, size: int, sigma: float) -> np.ndarray:
    """The n x n matrix of reflect-pad-then-convolve along one axis (float64)."""
    r = size // 2
    src = reflect_index(n, r)  # (n + 2r,) source index of every padded position
    g = gaussian_kernel_1d(size, sigma)
    rows = np.repeat(np.arange(n), size)
    cols = src[np.arange(n)[:, None] + np.arange(size)[None, :]].reshape(-1)
    m = np.zeros((n, n), dtype=np.float64)
    np.add.at(m, (rows, cols), np.tile(g, n))
    return m


def _tiles(m: torch.Tensor, tile: int = TILE) -> list[tuple[int, int, int, int]]:
    """Row tiles (r0, r1, c0, c1) of matrix m with its nonzero columns in [c0, c1)."""
    nz = (m != 0).cpu().numpy()
    out = []
    for r0 in range(0, m.shape[0], tile):
        r1 = min(r0 + tile, m.shape[0])
        cols = np.flatnonzero(nz[r0:r1].any(0))
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        out.append((r0, r1, c0, c1))
    return out


def banded_left(m: torch.Tensor, x: torch.Tensor, tiles) -> torch.Tensor:
    """m @ x along dim -2 for a banded m: (..., N, W) -> (..., n, W)."""
    if tiles is None:
        return torch.matmul(m, x)
    return torch.cat([torch.matmul(m[r0:r1, c0:c1], x[..., c0:c1, :]) for r0, r1, c0, c1 in tiles], dim=-2)


def banded_right(x: torch.Tensor, m: torch.Tensor, tiles) -> torch.Tensor:
    """x @ m^T along dim -1 for a banded m: (..., H, N) -> (..., H, n)."""
    if tiles is None:
        return torch.matmul(x, m.transpose(0, 1))
    return torch.cat([torch.matmul(x[..., c0:c1], m[r0:r1, c0:c1].transpose(0, 1)) for r0, r1, c0, c1 in tiles], dim=-1)


class GaussianBlur(Operator):
    """Task `deblur`: y = k * x per frame and channel, 61 x 61 Gaussian (sigma 3), reflect padding.

    Works on any frame size; `height`/`width` are metadata of the video it was built for.
    """

    task = "deblur"

    def __init__(
        self,
        height: int | None = None,
        width: int | None = None,
        kernel_size: int = 61,
        sigma: float = 3.0,
        sigma_y: float = 0.0,
    ) -> None:
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise UsageError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
        if not sigma > 0:
            raise UsageError(f"blur sigma must be > 0, got {sigma}")
        self.height, self.width = height, width
        self.kernel_size, self.sigma = int(kernel_size), float(sigma)
        self.sigma_y = check_sigma(sigma_y)
        self._mats = MatrixCache(lambda n, t: blur_matrix(n, self.kernel_size, self.sigma).T.copy() if t else
                                 blur_matrix(n, self.kernel_size, self.sigma))
        self._tile_cache: dict[tuple[int, bool], Any] = {}

    def kernel(self) -> torch.Tensor:
        """The 2-D kernel (k, k), float64."""
        return torch.from_numpy(gaussian_kernel_2d(self.kernel_size, self.sigma))

    def _mat(self, n: int, like: torch.Tensor, transpose: bool = False):
        """B (or B^T) for an axis of length n, with its row tiles (None: apply densely)."""
        m = self._mats.get((n, transpose), like)
        if (n, transpose) not in self._tile_cache:
            self._tile_cache[(n, transpose)] = _tiles(m) if n > 2 * TILE else None
        return m, self._tile_cache[(n, transpose)]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x)
        (bh, th), (bw, tw) = self._mat(x.shape[-2], x), self._mat(x.shape[-1], x)
        return banded_right(banded_left(bh, x, th), bw, tw)  # (B, C, T, H, W)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        check_video(y, "y")
        (bh, th), (bw, tw) = self._mat(y.shape[-2], y, True), self._mat(y.shape[-1], y, True)
        return banded_right(banded_left(bh, y, th), bw, tw)  # (B, C, T, H, W)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def measurement_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def signal_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "height": self.height,
            "width": self.width,
            "kernel_size": self.kernel_size,
            "sigma": self.sigma,
            "sigma_y": self.sigma_y,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaussianBlur":
        return cls(
            height=d.get("height"),
            width=d.get("width"),
            kernel_size=d.get("kernel_size", 61),
            sigma=d.get("sigma", 3.0),
            sigma_y=d.get("sigma_y", 0.0),
        )
