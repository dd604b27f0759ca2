"""Whether a learned student fits the operator it is asked to undo.

A student learns one operator: the one its checkpoint records (`tasks.<task>.operator`, the
training operator). On another it can do worse than the classical restorer (the shipped deblur
student, trained on sigma 3, loses 6 dB to it on sigma 1.5). So `vir restore` compares the two:

- the same operator (a deblur kernel equal to within 1e-4, the same sr kernel, a keep fraction
  within 0.02, the same noise): runs;
- another in one parameter, where this checkpoint was measured to beat the classical restorer
  (`HOLDS`, from `scripts/operator_fit.py`): runs with a warning;
- another: a usage error that names the difference and points to `--model classical`.

The measured ranges belong to one file, the shipped default, found by its sha256; any other
checkpoint runs on its own training operator only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instantvir_cli.errors import UsageError
from instantvir_cli.hashing import file_sha256
from instantvir_cli.ops import Operator

KERNEL_TOL = 1e-4     # max |difference| of the normalized 1-D blur profiles counted as the same blur
KEEP_TOL = 0.02       # keep fractions this close count as the same mask density


@dataclass(frozen=True)
class Held:
    """A parameter range where a checkpoint's student was measured to beat the classical restorer."""

    task: str
    param: str              # blur_sigma | blur_size | keep_fraction | sr_kernel | noise
    low: float | str        # a closed range [low, high], or one value for a choice (sr_kernel)
    high: float | str
    measured: str           # where, in words


# sha256 of instantvir_cli/weights/instantvir.safetensors -> its measured ranges: where the learned
# model's PSNR and SSIM beat the classical restorer's on both clips measured (earth, first 61
# frames; carphone_pristine; scripts/operator_fit.py, docs/results.md). Only one parameter at a
# time was measured off the training operator, so only one may differ. They were measured before
# the file's deblur entry changed its initial estimate (fast -> classical) and before every entry
# gained still_ema (0.999: a still shot's change held steady); every tensor is the same.
SHIPPED_SHA256 = "a186035758fe45b8af74356d93b6b1ddeac62117d971eae30163aaa1b7236077"
HOLDS: dict[str, tuple[Held, ...]] = {SHIPPED_SHA256: (
    Held("inpaint", "keep_fraction", 0.2, 0.8, "keep 0.2 to 0.8: +0.13 to +0.71 dB on earth and carphone"),
    Held("inpaint", "noise", 0.0, 0.05, "noise up to 0.05: +0.22 to +0.42 dB on earth and carphone"),
    Held("sr4x", "sr_kernel", "bicubic", "bicubic", "bicubic: +2.05 dB on earth, +0.76 dB on carphone"),
    Held("sr4x", "noise", 0.0, 0.01, "noise up to 0.01: +1.96 dB on earth, +0.85 dB on carphone"),
)}


def _profile(size: int, sigma: float, length: int) -> np.ndarray:
    u = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(u**2) / (2 * sigma**2))
    out = np.zeros(length)
    pad = (length - size) // 2
    out[pad:pad + size] = g / g.sum()
    return out


def differences(trained: dict[str, Any], op: Operator) -> dict[str, tuple[Any, Any]]:
    """{param: (trained value, this operator's value)} for each way `op` departs from `trained`
    (an operator's `to_dict`); empty when they are the same operator."""
    run = op.to_dict()
    out: dict[str, tuple[Any, Any]] = {}
    task = trained.get("task")
    if task != op.task:
        return {"task": (task, op.task)}
    if task == "deblur":
        k0, s0 = int(trained.get("kernel_size", 61)), float(trained.get("sigma", 3.0))
        k1, s1 = int(run["kernel_size"]), float(run["sigma"])
        n = max(k0, k1)
        if np.abs(_profile(k0, s0, n) - _profile(k1, s1, n)).max() > KERNEL_TOL:
            if s0 != s1:
                out["blur_sigma"] = (s0, s1)
            if k0 != k1:
                out["blur_size"] = (k0, k1)
    elif task == "sr4x":
        if trained.get("kernel", "area") != run["kernel"]:
            out["sr_kernel"] = (trained.get("kernel", "area"), run["kernel"])
        if int(trained.get("scale", 4)) != int(run.get("scale", 4)):
            out["scale"] = (trained.get("scale", 4), run.get("scale", 4))
    elif task == "inpaint":
        f0 = float(trained.get("ratio", 0.5))
        f1 = float(op.ratio) if getattr(op, "ratio", None) is not None else float(op.mask.float().mean())
        if abs(f0 - f1) > KEEP_TOL:
            out["keep_fraction"] = (f0, round(f1, 3))
    s0, s1 = float(trained.get("sigma_y", 0.0)), float(op.sigma_y)
    if abs(s0 - s1) > 1e-9:
        out["noise"] = (s0, s1)
    return out


NAMES = {"blur_sigma": "blur sigma", "blur_size": "blur size", "keep_fraction": "keep fraction",
         "sr_kernel": "sr kernel", "scale": "scale", "noise": "noise", "task": "task"}


def _held(holds: tuple[Held, ...], task: str, param: str, value: Any) -> Held | None:
    for h in holds:
        if h.task == task and h.param == param:
            if isinstance(h.low, str) and value == h.low:
                return h
            if not isinstance(h.low, str) and h.low <= value <= h.high:
                return h
    return None


def check_fit(trained: dict[str, Any] | None, op: Operator, checkpoint: Path) -> str | None:
    """None when the student of `checkpoint` was trained on `op`; a warning line when `op` differs
    only where the student was measured to hold; else raise UsageError (exit 2).

    `trained` is the checkpoint's record of its training operator (None: not recorded).
    """
    if trained is None:
        return f"{checkpoint.name} does not record the operator its {op.task} student was trained on"
    diff = differences(trained, op)
    if not diff:
        return None
    holds = HOLDS.get(file_sha256(checkpoint), ())
    held = {p: _held(holds, op.task, p, new) for p, (_, new) in diff.items()}
    said = ", ".join(f"{NAMES[p]} {old} (this input: {new})" for p, (old, new) in diff.items())
    if len(held) == 1 and all(held.values()):
        where = "; ".join(dict.fromkeys(h.measured for h in held.values() if h))
        return f"the learned {op.task} student was trained on {said}; it was measured to beat the classical " \
               f"restorer there ({where})"
    raise UsageError(f"the learned {op.task} student was trained on {said}: use --model classical")
