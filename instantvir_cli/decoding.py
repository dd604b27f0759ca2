"""How a student's latent becomes restored pixels: one spec, read by a checkpoint's task entry,
the streaming restorer, the trainer's validation and the trainer's loss alike.

    plain     x = D(z_hat)
    residual  x = x0 + D(z_hat) - D(z_in)            both latents decoded as one batch of two
    delta     x = x0 + D(z_hat - z_in) - D(0)        the residual path in one decoder stream

x0 is the initial estimate (`estimate.INITS`) and z_in = E(x0). With `correction_ema` b > 0 the
decoded change c = x - x0 is smoothed causally over frames, c'_t = (1 - b) c_t + b c'_(t-1): a
latent frame covers 4 pixel frames, and the change jumps where one latent frame hands over to the
next. Data consistency (`consistency` steps, 0 = off) follows the decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from instantvir_cli.estimate import INITS

Decode = Callable[[Tensor], Tensor]     # z (B, d, T', h, w) -> x (B, C, T, H, W)


@dataclass(frozen=True)
class DecodeSpec:
    """The decoding of one task's student. Invalid combinations raise ValueError."""

    init: str = "operator"          # the initial estimate x0 (estimate.INITS)
    residual: bool = False          # x = x0 + D(z_hat) - D(z_in)
    delta: bool = False             # with residual: x = x0 + D(z_hat - z_in) - D(0)
    correction_ema: float = 0.0     # with residual: the causal EMA weight b of the change (0 = off)
    consistency: int = 1            # data-consistency steps after decoding (0 = off)

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"unknown initial estimate {self.init!r} (choose one of: {', '.join(INITS)})")
        if self.delta and not self.residual:
            raise ValueError("delta decoding is a form of the residual path: it needs residual")
        if self.correction_ema and not (self.residual and 0.0 < self.correction_ema < 1.0):
            raise ValueError(f"correction_ema needs the residual path and 0 <= b < 1, got {self.correction_ema}")
        if self.consistency < 0:
            raise ValueError(f"consistency steps must be >= 0, got {self.consistency}")

    def replace(self, **changes: Any) -> DecodeSpec:
        return dataclasses.replace(self, **changes)

    # A checkpoint's task entry stores `consistency` as a bool (one step or none); a key an
    # older file lacks takes the value it implied.
    ENTRY_DEFAULTS = {"consistency": True, "init": "operator", "residual": False, "delta": False,
                      "correction_ema": 0.0}

    def to_entry(self) -> dict[str, Any]:
        """The task-entry fields of a checkpoint header."""
        return {"consistency": self.consistency > 0, "init": self.init, "residual": self.residual,
                "delta": self.delta, "correction_ema": self.correction_ema}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> DecodeSpec:
        """The spec of a checkpoint's task entry; ValueError names a field of the wrong type."""
        values = {}
        for key, default in cls.ENTRY_DEFAULTS.items():
            v = entry.get(key, default)
            ok = isinstance(v, type(default)) or (isinstance(default, float) and type(v) is int)
            if not ok or (type(default) is not bool and isinstance(v, bool)):
                raise ValueError(f"{key} must be {type(default).__name__}, got {v!r}")
            values[key] = v
        return cls(init=values["init"], residual=values["residual"], delta=values["delta"],
                   correction_ema=float(values["correction_ema"]), consistency=int(values["consistency"]))


def smooth_change(change: Tensor, b: float, last: Tensor | None = None,
                  frames: int | None = None) -> tuple[Tensor, Tensor]:
    """Causal EMA of the change c = x - x0 over time: c'_t = (1 - b) c_t + b c'_(t-1).

    change: (B, C, T, H, W); last: c' of the frame before (B, C, H, W) or None at a video's start.
    Returns c' and c' of frame `frames` - 1 (the last real one; later frames are padding).
    Without gradients it works in place (one pass over memory); with them the trainer decodes
    through it.
    """
    T = change.shape[2]
    frames = T if frames is None else frames
    if not (torch.is_grad_enabled() and change.requires_grad):
        for t in range(T):
            if last is not None:
                change[:, :, t].lerp_(last, b)
            last = change[:, :, t]
        return change, change[:, :, frames - 1].clone()
    out = []
    for t in range(T):
        last = change[:, :, t] if last is None else torch.lerp(change[:, :, t], last, b)
        out.append(last)
    return torch.stack(out, 2), out[frames - 1].detach()


def decode_student(spec: DecodeSpec, decode: Decode, z_hat: Tensor, z_in: Tensor, x0: Tensor,
                   zero: Callable[[], Tensor] | None = None, last: Tensor | None = None,
                   frames: int | None = None,
                   difference: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
    """Restored pixels x (B, C, T, H, W) of the student's latent z_hat (B, d, T', h, w), by `spec`.

    `decode` is the VAE's decoder (whole-clip, or one block of a stream); `zero()` gives D(0) as
    `decode` would (delta only); `last`/`frames` carry the change's EMA across a stream's blocks
    (`smooth_change`); `difference(z_a, z_b)`, where given, is D(z_a) - D(z_b) of the two streams
    in one pass (`LeanVAE.decode_difference_stream`), for the residual path. Returns x and the EMA
    state for the next block (`last` unchanged without one).
    """
    if not spec.residual:
        return decode(z_hat), last
    if spec.delta:
        change = decode(z_hat - z_in) - zero()
    elif difference is not None:
        change = difference(z_hat, z_in)                                 # (B, C, T, H, W)
    else:
        x_hat, x_in = decode(torch.cat([z_hat, z_in])).chunk(2)
        change = x_hat - x_in                                            # (B, C, T, H, W)
    if spec.correction_ema:
        change, last = smooth_change(change, spec.correction_ema, last, frames)
    if torch.is_grad_enabled() and change.requires_grad:
        return x0 + change, last
    return change.add_(x0), last


__all__ = ["DecodeSpec", "decode_student", "smooth_change"]
