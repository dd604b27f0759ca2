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


class Operator(ABC):
    """A known linear degradation with additive Gaussian noise of std `sigma_y` on [-1, 1]."""

    task: ClassVar[str]
    sigma_y: float = 0.0

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
        return f"{type(self).__name__}({self.to_dict()})"


def check_video(x: torch.Tensor, what: str = "x") -> None:
    """Raise UsageError unless `x` is a 5-D (B, C, T, H, W) floating tensor."""
    if x.dim() != 5:
        raise UsageError(f"{what} must be (B, C, T, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise UsageError(f"{what} must be a floating tensor, got {x.dtype}")


def check_sigma(sigma_y: float) -> float:
    sigma_y = float(sigma_y)
    if not (sigma_y >= 0 and np.isfinite(sigma_y)):
        raise UsageError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
    return sigma_y


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


def separable_apply(x: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """Apply mh (h x H) along H and mw (w x W) along W: (..., H, W) -> (..., h, w)."""
    return torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))


class MatrixCache:
    """Per (key, device, dtype) cache of small float64-built matrices moved to the input's device."""

    def __init__(self, build) -> None:
        self._build = build
        self._store: dict[tuple, torch.Tensor] = {}

    def get(self, key: tuple, like: torch.Tensor) -> torch.Tensor:
        k = (key, like.device, like.dtype)
        m = self._store.get(k)
        if m is None:
            if len(self._store) > 16:
                self._store.clear()
            m = torch.from_numpy(self._build(*key)).to(device=like.device, dtype=like.dtype)
            self._store[k] = m
        return m
