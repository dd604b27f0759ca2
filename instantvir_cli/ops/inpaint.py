"""Inpainting operator: y = M * x with a keep-mask M (1 = observed), missing pixels set to 0.

The default mask keeps exactly round(ratio * H * W) pixels chosen by a seeded permutation
(a CPU torch.Generator, so the same seed gives the same mask on every machine), one H x W
mask shared by all channels and frames. A user mask is (H, W) or per-frame (T, H, W); for a
long mask video the streaming pipeline calls `with_mask(block)` once per frame block.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instantvir_cli.errors import ConfigError, MaskInvalid, UsageError
from instantvir_cli.hashing import file_sha256
from instantvir_cli.ops.base import Operator, check_video


def random_mask(height: int, width: int, ratio: float = 0.5, seed: int = 0) -> torch.Tensor:
    """(H, W) bool keep-mask with exactly round(ratio * H * W) True entries, from `seed`."""
    gen = torch.Generator().manual_seed(int(seed))
    keep = int(round(ratio * height * width))
    flat = torch.zeros(height * width, dtype=torch.bool)
    flat[torch.randperm(height * width, generator=gen)[:keep]] = True
    return flat.view(height, width)


def as_mask(mask: Any, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """Validate a user keep-mask: (H, W) or (T, H, W), bool or 0/1 numbers -> bool tensor."""
    m = torch.as_tensor(mask)
    if m.dim() not in (2, 3) or m.numel() == 0:
        raise MaskInvalid(f"mask must be (H, W) or (T, H, W), got shape {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise MaskInvalid("mask values must be 0 or 1 (1 = observed)")
        m = m != 0
    if height is not None and width is not None and tuple(m.shape[-2:]) != (height, width):
        raise MaskInvalid(f"mask is {m.shape[-1]}x{m.shape[-2]}, the video is {width}x{height}")
    return m


def _pack(mask: torch.Tensor) -> str:
    return base64.b64encode(np.packbits(mask.cpu().numpy().reshape(-1)).tobytes()).decode("ascii")


def _unpack(data: str, shape: list[int]) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))[: int(np.prod(shape))]
    return torch.from_numpy(bits.astype(bool).reshape(shape))


class Inpaint(Operator):
    """Task `inpaint`: y = M * x, M a bool keep-mask (H, W) or (T, H, W), shared over channels.

    With no `mask`, M is the seeded random mask keeping `ratio` of the pixels. `mask_file`
    and `mask_sha256` record where a user mask came from (the loader is instantvir_cli.masks).
    """

    task = "inpaint"

    def __init__(
        self,
        height: int | None = None,
        width: int | None = None,
        ratio: float = 0.5,
        seed: int = 0,
        mask: Any = None,
        sigma_y: float = 0.0,
        mask_file: str | None = None,
        mask_sha256: str | None = None,
    ) -> None:
        self.sigma_y = sigma_y
        self.mask_file, self.mask_sha256 = mask_file, mask_sha256
        if mask is None:
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in (height, width)):
                raise UsageError(f"inpaint needs a positive frame size, got {width}x{height}")
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
                raise UsageError(f"inpaint keep ratio must be a number in [0, 1], got {ratio!r}")
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not -2**63 <= seed < 2**64:
                raise UsageError(f"inpaint mask seed must be an integer, got {seed!r}")
            self.ratio, self.seed = float(ratio), int(seed)
            self.mask = random_mask(int(height), int(width), self.ratio, self.seed)
        else:
            self.ratio, self.seed = None, None
            self.mask = as_mask(mask, height, width)
        self.height, self.width = int(self.mask.shape[-2]), int(self.mask.shape[-1])
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def is_random(self) -> bool:
        return self.seed is not None

    @property
    def frames(self) -> int | None:
        """Frames of a per-frame mask, None for one mask shared by all frames."""
        return int(self.mask.shape[0]) if self.mask.dim() == 3 else None

    def mask_like(self, x: torch.Tensor) -> torch.Tensor:
        """The mask as (1, 1, T|1, H, W) in x's dtype and device, checked against x's size."""
        H, W, T = x.shape[-2], x.shape[-1], x.shape[2]
        if (H, W) != (self.height, self.width):
            raise UsageError(f"inpaint mask is {self.width}x{self.height}, the frames are {W}x{H}")
        if self.frames is not None and self.frames != T:
            raise UsageError(
                f"per-frame mask has {self.frames} frames, the block has {T}: use op.with_mask(block_mask)"
            )
        key = (x.device, x.dtype)
        m = self._cache.get(key)
        if m is None:
            m = self.mask.to(device=x.device).to(x.dtype)
            m = m[None, None, None] if m.dim() == 2 else m[None, None]  # (1, 1, T|1, H, W)
            self._cache = {key: m}
        return m

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x)
        return x * self.mask_like(x)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        check_video(y, "y")
        return y * self.mask_like(y)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = M * (x + sigma_y n): noise only on observed pixels, holes stay exactly 0."""
        y = self.A(x)
        if self.sigma_y > 0:
            y = y + self.noise(y.shape, y, generator) * self.mask_like(y)
        return y

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def with_mask(self, mask: Any) -> "Inpaint":
        """The same operator with another mask (e.g. the (T, H, W) block of a mask video)."""
        return Inpaint(
            self.height, self.width, mask=mask, sigma_y=self.sigma_y,
            mask_file=self.mask_file, mask_sha256=self.mask_sha256,
        )

    def with_mask_file(self, path: str | Path) -> "Inpaint":
        """This operator recording that its mask came from `path` (absolute path and sha256)."""
        path = Path(path)
        try:
            digest = file_sha256(path)
        except OSError as e:
            raise MaskInvalid(f"cannot read mask file {path}: {e.strerror or e}") from None
        op = Inpaint(self.height, self.width, mask=self.mask, sigma_y=self.sigma_y)
        op.mask_file, op.mask_sha256 = str(path.resolve()), digest
        return op

    def measurement_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def signal_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"task": self.task, "height": self.height, "width": self.width, "sigma_y": self.sigma_y}
        if self.is_random:
            d.update(ratio=self.ratio, seed=self.seed)
        elif self.mask_file is not None:
            d.update(mask_file=self.mask_file, mask_sha256=self.mask_sha256, mask_frames=self.frames)
        else:  # an in-memory mask: store it inline, bit-packed
            d.update(mask_shape=list(self.mask.shape), mask_bits=_pack(self.mask))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], mask: Any = None) -> "Inpaint":
        """Rebuild from `to_dict`; a `mask_file` spec needs the loaded `mask` tensor."""
        h, w, sigma_y = d.get("height"), d.get("width"), d.get("sigma_y", 0.0)
        if d.get("mask_file") is not None:
            if mask is None:
                raise ConfigError(f"operator uses the mask file {d['mask_file']}: load it and pass mask=")
            return cls(h, w, mask=mask, sigma_y=sigma_y, mask_file=d["mask_file"], mask_sha256=d.get("mask_sha256"))
        if mask is not None:
            return cls(h, w, mask=mask, sigma_y=sigma_y)
        if "mask_bits" in d:
            try:
                m = _unpack(d["mask_bits"], d["mask_shape"])
            except (ValueError, TypeError, KeyError) as e:
                raise ConfigError(f"inline inpaint mask is corrupt: {e}") from None
            return cls(h, w, mask=m, sigma_y=sigma_y)
        return cls(h, w, ratio=d.get("ratio", 0.5), seed=d.get("seed", 0), sigma_y=sigma_y)
