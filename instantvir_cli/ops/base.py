"""The operator interface y = A(x) + sigma_y n, and shared helpers.

Pixels `x` are float (B, C, T, H, W) in [-1, 1]; measurements `y` are (B, C, T, h, w).
Every operator has a noiseless forward `A`, its exact adjoint `AT` (so that
<A x, y> = <x, AT y>), a full-resolution initial estimate `init(y)` and a JSON form.
Operators act frame by frame (none mixes time), so any number of frames may be passed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from instantvir_cli.errors import UsageError
from instantvir_cli.limits import SIGMA_Y_MAX


class Operator(ABC):
    """A known linear degradation with additive Gaussian noise of std `sigma_y` on [-1, 1]."""

    task: ClassVar[str]
    _sigma_y: float = 0.0

    @property
    def sigma_y(self) -> float:
        """Std of the measurement noise on [-1, 1] (0: noiseless); settable, checked >= 0."""
        return self._sigma_y

    @sigma_y.setter
    def sigma_y(self, value: float) -> None:
        self._sigma_y = check_sigma(value)

    @abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless forward: (B, C, T, H, W) -> (B, C, T, h, w)."""

    @abstractmethod
    def AT(self, y: torch.Tensor) -> torch.Tensor:
        """Exact adjoint of `A`: (B, C, T, h, w) -> (B, C, T, H, W)."""

    @abstractmethod
    def init(self, y: torch.Tensor) -> torch.Tensor:
        """A cheap initial estimate of x at full resolution: (B, C, T, h, w) -> (B, C, T, H, W)."""

    @abstractmethod
    def measurement_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the measurement of an H x W frame."""

    @abstractmethod
    def signal_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the frame behind an h x w measurement."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description; `operator_from_dict` rebuilds the same operator."""

    @classmethod
    @abstractmethod
    def from_dict(cls, d: dict[str, Any]) -> "Operator":
        """Inverse of `to_dict`."""

    def noise(self, shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """sigma_y * n with n ~ N(0, 1) drawn on the CPU (the same numbers on every device)."""
        n = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
        return (self.sigma_y * n).to(device=like.device, dtype=like.dtype)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A(x) + sigma_y n; `generator` is a CPU torch.Generator (None: torch's global one)."""
        y = self.A(x)
        if self.sigma_y > 0:
            y = y + self.noise(y.shape, y, generator)
        return y

    def __repr__(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k != "mask_bits"}
        return f"{type(self).__name__}({d})"


def check_video(x: torch.Tensor, what: str = "x") -> None:
    """Raise UsageError unless `x` is a 5-D (B, C, T, H, W) floating tensor."""
    if x.dim() != 5:
        raise UsageError(f"{what} must be (B, C, T, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise UsageError(f"{what} must be a floating tensor, got {x.dtype}")


def check_sigma(sigma_y: float) -> float:
    """sigma_y as a float in [0, limits.SIGMA_Y_MAX] (noise std on [-1, 1]); UsageError otherwise."""
    try:
        value = float(sigma_y)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(sigma_y, bool) or not (0 <= value <= SIGMA_Y_MAX):
        raise UsageError(f"sigma_y (the noise std on [-1, 1]) must be a number in [0, {SIGMA_Y_MAX:g}], got {sigma_y!r}")
    return value


def reflect_index(n: int, pad: int) -> np.ndarray:
    """Source indices of a length-n axis padded by `pad` on both sides with mirror padding.

    Mirror without repeating the edge (torch's 'reflect': ... 2 1 | 0 1 2 ... n-1 | n-2 ...),
    applied repeatedly, so any pad works for any n >= 1: the padded axis is the periodic
    symmetric extension of period 2 (n - 1).
    """
    i = np.arange(-pad, n + pad)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    m = np.mod(i, period)
    return np.where(m >= n, period - m, m)


TILE = 96  # output rows per tile of a banded matmul


class Banded:
    """A matrix m (n_out, n_in) applied along one axis, in row tiles when it is banded.

    Each tile multiplies only the columns its rows touch (a Gaussian or cubic resize
    matrix touches a few dozen), which is several times faster than a dense matmul.
    """

    def __init__(self, m: torch.Tensor, tol: float = 0.0) -> None:
        self.m = m
        self.tiles: list[tuple[int, int, int, int]] | None = None
        if m.shape[0] > 2 * TILE:
            nz = (m.abs() > tol).cpu().numpy()
            tiles = []
            for r0 in range(0, m.shape[0], TILE):
                r1 = min(r0 + TILE, m.shape[0])
                cols = np.flatnonzero(nz[r0:r1].any(0))
                c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
                tiles.append((r0, r1, c0, c1))
            if sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in tiles) < 0.6 * m.numel():
                self.tiles = tiles

    def left(self, x: torch.Tensor) -> torch.Tensor:
        """m @ x along dim -2: (..., n_in, W) -> (..., n_out, W)."""
        if self.tiles is None:
            return torch.matmul(self.m, x)
        m = self.m
        return torch.cat([torch.matmul(m[r0:r1, c0:c1], x[..., c0:c1, :]) for r0, r1, c0, c1 in self.tiles], -2)

    def right(self, x: torch.Tensor) -> torch.Tensor:
        """x @ m^T along dim -1: (..., H, n_in) -> (..., H, n_out)."""
        if self.tiles is None:
            return torch.matmul(x, self.m.transpose(0, 1))
        m = self.m
        return torch.cat([torch.matmul(x[..., c0:c1], m[r0:r1, c0:c1].transpose(0, 1)) for r0, r1, c0, c1 in self.tiles], -1)


def separable_apply(x: torch.Tensor, mh: Banded, mw: Banded) -> torch.Tensor:
    """Apply mh (h x H) along H and mw (w x W) along W: (..., H, W) -> (..., h, w)."""
    return mw.right(mh.left(x))


class MatrixCache:
    """Per (key, device, dtype) cache of float64-built matrices, as `Banded` on the input's device.

    Entries with |m| <= tol outside a tile's band are dropped (tol = 0: exact).
    """

    def __init__(self, build, tol: float = 0.0) -> None:
        self._build = build
        self._tol = tol
        self._store: dict[tuple, Banded] = {}

    def get(self, key: tuple, like: torch.Tensor) -> Banded:
        k = (key, like.device, like.dtype)
        m = self._store.get(k)
        if m is None:
            if len(self._store) > 16:
                self._store.clear()
            m = Banded(torch.from_numpy(self._build(*key)).to(device=like.device, dtype=like.dtype), self._tol)
            self._store[k] = m
        return m
