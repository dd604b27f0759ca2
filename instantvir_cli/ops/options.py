"""The operator's parameters as a user names them: blur sigma and size, keep fraction, sr kernel.

    opts = OperatorOptions(blur_sigma=2.0)
    build_operator("deblur", H, W, **opts.for_task("deblur"))     # GaussianBlur(sigma=2.0)
    spec = opts.override(sidecar_spec)                            # the sidecar's operator, sigma 2.0

`vir degrade` and `vir restore` share these, so a user who knows their degradation names it on
the command line instead of writing the operator's JSON. An option that belongs to another
task is a usage error, never ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from instantvir_cli.errors import UsageError
from instantvir_cli.ops.sr import KERNELS

# field -> (command-line flag, task it belongs to, the operator's own parameter name)
FLAGS: dict[str, tuple[str, str, str]] = {
    "blur_sigma": ("--blur-sigma", "deblur", "sigma"),
    "blur_size": ("--blur-size", "deblur", "kernel_size"),
    "keep_fraction": ("--keep-fraction", "inpaint", "ratio"),
    "sr_kernel": ("--sr-kernel", "sr4x", "kernel"),
}


@dataclass(frozen=True)
class OperatorOptions:
    """Operator parameters the user gave (None: the sidecar's value, else the operator's default)."""

    blur_sigma: float | None = None      # deblur: the Gaussian's sigma in pixels (default 3.0)
    blur_size: int | None = None         # deblur: kernel side, odd (default 61)
    keep_fraction: float | None = None   # inpaint: share of pixels the random mask keeps (default 0.5)
    sr_kernel: str | None = None         # sr4x: area | bicubic (default area)

    def __post_init__(self) -> None:
        s = self.blur_sigma
        if s is not None and not (math.isfinite(s) and s > 0):
            raise UsageError(f"--blur-sigma must be a finite number > 0, got {s}")
        k = self.blur_size
        if k is not None and (k < 1 or k % 2 == 0):
            raise UsageError(f"--blur-size must be a positive odd number of pixels, got {k}")
        f = self.keep_fraction
        if f is not None and not (0 < f <= 1):
            raise UsageError(f"--keep-fraction must be in (0, 1], got {f}")
        if self.sr_kernel is not None and self.sr_kernel not in KERNELS:
            raise UsageError(f"unknown --sr-kernel {self.sr_kernel!r} (choose one of: {', '.join(KERNELS)})")

    def given(self) -> dict[str, Any]:
        """The fields the user set: {field: value}."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def check_task(self, task: str) -> None:
        """Raise UsageError when an option given belongs to another task than `task`."""
        for name in self.given():
            flag, owner, _ = FLAGS[name]
            if owner != task:
                raise UsageError(f"{flag} applies to --task {owner}, not {task}")

    def for_task(self, task: str) -> dict[str, Any]:
        """`build_operator` keyword arguments for `task` (only what was given)."""
        self.check_task(task)
        return {FLAGS[name][2]: value for name, value in self.given().items()}

    def override(self, spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`spec` (an operator's `to_dict`, e.g. from a sidecar) with the given options replacing its
        values, and one line per value that changed ("--blur-sigma 2.0 replaces the sidecar's 3.0")."""
        task = spec.get("task")
        self.check_task(task)
        out, changes = dict(spec), []
        for name, value in self.given().items():
            flag, _, key = FLAGS[name]
            if task == "inpaint" and spec.get("ratio") is None:
                where = f"the mask file {spec['mask_file']}" if spec.get("mask_file") else "an explicit mask"
                raise UsageError(f"{flag} sets vir's random mask, but the sidecar names {where}")
            old = spec.get(key)
            if old is not None and old != value:
                changes.append(f"{flag} {value} replaces the sidecar's {old}")
            out[key] = value
        return out, changes
