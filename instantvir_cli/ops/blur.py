"""Gaussian deblurring operator: per-frame, per-channel 2-D Gaussian with reflect padding.

The kernel is exp(-(u^2 + v^2) / 2 sigma^2) over the full k x k grid, normalized to sum 1.
It is the outer product of its normalized 1-D profile, so pad-then-convolve is exactly
y = B_H x B_W^T with one N x N matrix per axis, B = (1-D convolution) . (reflect padding).
Building B with index maps makes any frame size work (repeated mirroring when the frame is
smaller than the kernel), and AT = B_H^T y B_W is the exact adjoint (the transpose of the
padding scatter-adds the border back). B is banded, so it is applied in row tiles (ops.base.Banded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from instantvir_cli.errors import UsageError
from instantvir_cli.limits import KERNEL_SIZE_MAX, SIGMA_RANGE
from instantvir_cli.ops.base import MatrixCache, Operator, check_video, reflect_index, separable_apply

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
        if (isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer))
                or not 1 <= kernel_size <= KERNEL_SIZE_MAX or kernel_size % 2 == 0):
            raise UsageError(f"blur kernel size must be an odd integer in [1, {KERNEL_SIZE_MAX}], got {kernel_size!r}")
        lo, hi = SIGMA_RANGE
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not lo <= sigma <= hi:
            raise UsageError(f"blur sigma must be a number in [{lo:g}, {hi:g}] pixels, got {sigma!r}")
        self.height, self.width = height, width
        self.kernel_size, self.sigma = int(kernel_size), float(sigma)
        self.sigma_y = sigma_y
        self._mats = MatrixCache(lambda n, t: blur_matrix(n, self.kernel_size, self.sigma).T.copy() if t else
                                 blur_matrix(n, self.kernel_size, self.sigma))

    def kernel(self) -> torch.Tensor:
        """The 2-D kernel (k, k), float64."""
        return torch.from_numpy(gaussian_kernel_2d(self.kernel_size, self.sigma))

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x)
        H, W = x.shape[-2:]
        return separable_apply(x, self._mats.get((H, False), x), self._mats.get((W, False), x))  # (B, C, T, H, W)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        check_video(y, "y")
        H, W = y.shape[-2:]
        return separable_apply(y, self._mats.get((H, True), y), self._mats.get((W, True), y))  # (B, C, T, H, W)

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
