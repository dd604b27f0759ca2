"""How a student's latent becomes restored pixels: one spec, read by a checkpoint's task entry,
the streaming restorer, the trainer's validation and the trainer's loss alike.

    plain     x = D(z_hat)
    residual  x = x0 + D(z_hat) - D(z_in)            both latents decoded as one batch of two
    delta     x = x0 + D(z_hat - z_in) - D(0)        the residual path in one decoder stream

x0 is the initial estimate (`estimate.INITS`) and z_in = E(x0). With `correction_ema` b > 0 the
decoded change c = x - x0 is smoothed causally over frames, c'_t = (1 - b) c_t + b c'_(t-1): a
latent frame covers 4 pixel frames, and the change jumps where one latent frame hands over to the
next. With `still_ema` b_s the weight is b_s wherever the estimate itself stands still, per pixel:
b_t = b + (b_s - b) s_t, s_t = exp(-(m_t / STILL_LEVELS)^2), m_t the mean of |x0_t - x0_(t-1)| in
8-bit levels over the channels and a STILL_WINDOW box. On a still shot the clean frames barely
change, and a change that wanders there is flicker the classical restorer does not have; where the
estimate moves, the weight stays b. Data consistency (`consistency` steps, 0 = off) follows the decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from instantvir_cli.estimate import INITS

Decode = Callable[[Tensor], Tensor]     # z (B, d, T', h, w) -> x (B, C, T, H, W)

STILL_LEVELS = 2.0      # m at which the still weight has fallen to 1/e of its full share: a local change of x0 of 2 levels
STILL_WINDOW = 9        # the box (pixels) the estimate's frame-to-frame change is averaged over


@dataclass(frozen=True)
class DecodeSpec:
    """The decoding of one task's student. Invalid combinations raise ValueError."""

    init: str = "operator"          # the initial estimate x0 (estimate.INITS)
    residual: bool = False          # x = x0 + D(z_hat) - D(z_in)
    delta: bool = False             # with residual: x = x0 + D(z_hat - z_in) - D(0)
    correction_ema: float = 0.0     # with residual: the causal EMA weight b of the change (0 = off)
    still_ema: float = 0.0          # with residual: the EMA weight where the estimate stands still (0 = off)
    consistency: int = 1            # data-consistency steps after decoding (0 = off)

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"unknown initial estimate {self.init!r} (choose one of: {', '.join(INITS)})")
        if self.delta and not self.residual:
            raise ValueError("delta decoding is a form of the residual path: it needs residual")
        if self.correction_ema and not (self.residual and 0.0 < self.correction_ema < 1.0):
            raise ValueError(f"correction_ema needs the residual path and 0 <= b < 1, got {self.correction_ema}")
        if self.still_ema and not (self.residual and self.correction_ema <= self.still_ema < 1.0):
            raise ValueError(f"still_ema needs the residual path and correction_ema <= b_s < 1, got {self.still_ema}")
        if self.consistency < 0:
            raise ValueError(f"consistency steps must be >= 0, got {self.consistency}")

    def replace(self, **changes: Any) -> DecodeSpec:
        return dataclasses.replace(self, **changes)

    # A checkpoint's task entry stores `consistency` as a bool (one step or none); a key an
    # older file lacks takes the value it implied.
    ENTRY_DEFAULTS = {"consistency": True, "init": "operator", "residual": False, "delta": False,
                      "correction_ema": 0.0, "still_ema": 0.0}

    def to_entry(self) -> dict[str, Any]:
        """The task-entry fields of a checkpoint header."""
        return {"consistency": self.consistency > 0, "init": self.init, "residual": self.residual,
                "delta": self.delta, "correction_ema": self.correction_ema, "still_ema": self.still_ema}

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
                   correction_ema=float(values["correction_ema"]), still_ema=float(values["still_ema"]),
                   consistency=int(values["consistency"]))


@dataclass(frozen=True)
class ChangeState:
    """What the change's EMA carries from one block of a stream to the next: the last real frame's
    smoothed change c' (B, C, H, W) and, with still_ema, its initial estimate x0 (B, C, H, W)."""

    change: Tensor
    estimate: Tensor | None = None


def _box_sum(m: Tensor, k: int, dim: int) -> Tensor:
    """Sums over a centred window of k along `dim` (2 or 3) of (B, 1, H, W), zeros outside: by a
    running sum (a few times faster on the CPU than avg_pool2d's window loop)."""
    r, n = k // 2, m.shape[dim]
    pad = (r + 1, r, 0, 0) if dim == 3 else (0, 0, r + 1, r)
    c = F.pad(m, pad).cumsum(dim)
    return c.narrow(dim, k, n) - c.narrow(dim, 0, n)


def _box_count(n: int, k: int, like: Tensor) -> Tensor:
    """How many of a centred window of k fall inside 0..n-1, at each position: (n,)."""
    i = torch.arange(n, device=like.device)
    return ((i + k // 2).clamp(max=n - 1) - (i - k // 2).clamp(min=0) + 1).to(like.dtype)


def box_scale(H: int, W: int, like: Tensor) -> Tensor:
    """(H, W): 1 / (8-bit levels x the pixels of each STILL_WINDOW box inside the frame), which turns
    the box sums of |x0_t - x0_(t-1)| on [-1, 1] into their mean in levels; one per frame size."""
    k = STILL_WINDOW
    return (127.5 / (_box_count(H, k, like).view(H, 1) * _box_count(W, k, like))).div_(STILL_LEVELS)


def stillness(x0: Tensor, prev: Tensor, scale: Tensor | None = None) -> Tensor:
    """s in (0, 1] per pixel, 1 where the estimate did not change: (B, C, H, W) x 2 -> (B, 1, H, W).
    `scale`: `box_scale` of the frame size, where the caller computes it once for many frames."""
    m = (x0 - prev).abs_().mean(1, keepdim=True)
    k = STILL_WINDOW
    m = _box_sum(_box_sum(m, k, 3), k, 2)                           # the box's sum, inside the frame
    m.mul_(box_scale(*m.shape[-2:], m) if scale is None else scale)   # its mean in levels / STILL_LEVELS
    return m.square_().neg_().exp_()


def smooth_change(change: Tensor, b: float, last: ChangeState | None = None, frames: int | None = None,
                  x0: Tensor | None = None, still: float = 0.0) -> tuple[Tensor, ChangeState]:
    """Causal EMA of the change c = x - x0 over time: c'_t = (1 - b_t) c_t + b_t c'_(t-1).

    change, x0: (B, C, T, H, W); b_t = b, or with `still` b_s > 0 and x0 given, b + (b_s - b) s_t
    per pixel (`stillness` of x0_t against x0_(t-1)). `last`: the state after the block before, or
    None at a video's start. Returns c' and the state at frame `frames` - 1 (the last real one;
    later frames are padding). Without gradients it works in place (one pass over memory); with
    them the trainer decodes through it.
    """
    T = change.shape[2]
    frames = T if frames is None else frames
    adaptive = bool(still) and x0 is not None
    prev_c = None if last is None else last.change
    prev_x = None if last is None else last.estimate
    grad = torch.is_grad_enabled() and change.requires_grad
    scale = box_scale(*change.shape[-2:], change) if adaptive else None
    out, tail = [], None
    for t in range(T):
        c = change[:, :, t]
        if prev_c is not None:
            w: float | Tensor = b
            if adaptive and prev_x is not None:
                with torch.no_grad():
                    w = stillness(x0[:, :, t], prev_x, scale).mul_(still - b).add_(b)   # (B, 1, H, W)
            c = torch.lerp(c, prev_c, w) if grad else c.lerp_(prev_c, w)
        out.append(c)
        prev_c = c
        prev_x = x0[:, :, t] if adaptive else None
        if t == frames - 1:
            tail = ChangeState(c.detach().clone(), None if prev_x is None else prev_x.clone())
    return (torch.stack(out, 2) if grad else change), tail


def decode_student(spec: DecodeSpec, decode: Decode, z_hat: Tensor, z_in: Tensor, x0: Tensor,
                   zero: Callable[[], Tensor] | None = None, last: Tensor | None = None,
                   frames: int | None = None,
                   difference: Callable[[Tensor, Tensor], Tensor] | None = None
                   ) -> tuple[Tensor, ChangeState | None]:
    """Restored pixels x (B, C, T, H, W) of the student's latent z_hat (B, d, T', h, w), by `spec`.

    `decode` is the VAE's decoder (whole-clip, or one block of a stream); `zero()` gives D(0) as
    `decode` would (delta only); `last`/`frames` carry the change's EMA across a stream's blocks
    (`smooth_change`'s ChangeState); `difference(z_a, z_b)`, where given, is D(z_a) - D(z_b) of the two streams
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
    if spec.correction_ema or spec.still_ema:
        change, last = smooth_change(change, spec.correction_ema, last, frames, x0, spec.still_ema)
    if torch.is_grad_enabled() and change.requires_grad:
        return x0 + change, last
    return change.add_(x0), last


__all__ = ["ChangeState", "DecodeSpec", "decode_student", "smooth_change", "stillness"]
