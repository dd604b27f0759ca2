"""4x super-resolution operator: area (4 x 4 block average, the default) or antialiased bicubic.

area:    A = mean over each s x s block; AT = nearest upsampling / s^2 (exact adjoint).
bicubic: MATLAB imresize-style downscaling (Keys cubic a = -0.5, kernel stretched by the
         scale for antialiasing, symmetric boundary), built as 1-D resize matrices D_H, D_W
         so that A x = D_H x D_W^T and AT y = D_H^T y D_W exactly.
init:    bicubic upsampling (Keys a = -0.5, symmetric boundary) for both kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instantvir_cli.errors import UsageError
from instantvir_cli.ops.base import MatrixCache, Operator, check_video, separable_apply

KERNELS = ("area", "bicubic")


def cubic(u: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter a (support [-2, 2])."""
    u = np.abs(u)
    near = ((a + 2) * u - (a + 3)) * u**2 + 1
    far = ((a * u - 5 * a) * u + 8 * a) * u - 4 * a
    return np.where(u <= 1, near, np.where(u < 2, far, 0.0))


def resize_matrix(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """The (n_out, n_in) matrix of a 1-D cubic resize, imresize-style (float64).

    Output sample i (1-based) sits at input coordinate u = i / s + (1 - 1 / s) / 2 with
    s = n_out / n_in. When shrinking with `antialias`, the kernel is s * cubic(s t) with its
    support widened by 1 / s. Rows are normalized to sum 1; taps falling outside the
    axis are mirrored back with the edge repeated (symmetric boundary).
    """
    s = n_out / n_in
    shrink = s < 1 and antialias
    width = 4.0 / s if shrink else 4.0
    i = np.arange(1, n_out + 1, dtype=np.float64)
    u = i / s + 0.5 * (1 - 1 / s)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (n_out, taps), 1-based
    dist = u[:, None] - idx
    w = s * cubic(s * dist) if shrink else cubic(dist)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # symmetric, period 2 n_in
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(n_out), taps), src.reshape(-1)), w.reshape(-1))
    return m


class SR(Operator):
    """Task `sr4x`: y = downscale(x) by `scale` (4) with the `area` or `bicubic` kernel.

    Frame sides must be multiples of the scale (callers crop). Works on any such size;
    `height`/`width` are metadata of the video it was built for.
    """

    task = "sr4x"

    def __init__(
        self,
        height: int | None = None,
        width: int | None = None,
        kernel: str = "area",
        scale: int = 4,
        sigma_y: float = 0.0,
    ) -> None:
        if kernel not in KERNELS:
            raise UsageError(f"unknown sr kernel {kernel!r} (choose one of: {', '.join(KERNELS)})")
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 8:
            raise UsageError(f"sr scale must be an integer in [1, 8], got {scale!r}")
        self.kernel, self.scale = kernel, int(scale)
        self.height, self.width = height, width
        if height is not None and width is not None:
            self._check(height, width)
        self.sigma_y = sigma_y
        self._down = MatrixCache(self.down_matrix)
        self._down_t = MatrixCache(lambda n: self.down_matrix(n).T.copy())
        self._up = MatrixCache(self.up_matrix)

    def _check(self, height: int, width: int) -> None:
        if height % self.scale or width % self.scale or height == 0 or width == 0:
            raise UsageError(
                f"sr{self.scale}x needs frame sides divisible by {self.scale}, got {width}x{height}: crop first"
            )

    def down_matrix(self, n: int) -> np.ndarray:
        """The (n / s, n) matrix of A along one axis (block mean or antialiased cubic), float64."""
        if self.kernel == "area":
            return np.kron(np.eye(n // self.scale), np.full((1, self.scale), 1.0 / self.scale))
        return resize_matrix(n, n // self.scale, antialias=True)

    def up_matrix(self, n: int) -> np.ndarray:
        """The (s n, n) bicubic upsampling matrix of `upsample` along one axis, float64."""
        return resize_matrix(n, n * self.scale, antialias=False)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x)
        H, W = x.shape[-2:]
        self._check(H, W)
        if self.kernel == "area":
            y = F.avg_pool2d(x.reshape(-1, H, W), self.scale)  # (B C T, h, w)
            return y.view(*x.shape[:-2], *y.shape[-2:])  # (B, C, T, h, w)
        return separable_apply(x, self._down.get((H,), x), self._down.get((W,), x))

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        check_video(y, "y")
        s = self.scale
        if self.kernel == "area":
            h, w = y.shape[-2:]
            up = (y / (s * s))[..., :, None, :, None].expand(*y.shape[:-2], h, s, w, s)
            return up.reshape(*y.shape[:-2], h * s, w * s)  # (B, C, T, H, W)
        dh, dw = self._down_t.get((s * y.shape[-2],), y), self._down_t.get((s * y.shape[-1],), y)
        return separable_apply(y, dh, dw)

    def upsample(self, y: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling by the scale (Keys a = -0.5): (..., h, w) -> (..., s h, s w)."""
        return separable_apply(y, self._up.get((y.shape[-2],), y), self._up.get((y.shape[-1],), y))

    def init(self, y: torch.Tensor) -> torch.Tensor:
        check_video(y, "y")
        return self.upsample(y)

    def measurement_size(self, height: int, width: int) -> tuple[int, int]:
        self._check(height, width)
        return height // self.scale, width // self.scale

    def signal_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "height": self.height,
            "width": self.width,
            "kernel": self.kernel,
            "scale": self.scale,
            "sigma_y": self.sigma_y,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SR":
        return cls(
            height=d.get("height"),
            width=d.get("width"),
            kernel=d.get("kernel", "area"),
            scale=d.get("scale", 4),
            sigma_y=d.get("sigma_y", 0.0),
        )
