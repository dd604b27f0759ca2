"""Operators y = A(x) + sigma_y n for the three tasks: inpaint, deblur, sr4x.

    op = build_operator("sr4x", 480, 832, kernel="area", sigma_y=0.0)
    y = op.measure(x, generator=torch.Generator().manual_seed(0))   # (B, C, T, 120, 208)
    x0 = op.init(y)                                                  # (B, C, T, 480, 832)
    op2 = operator_from_dict(json.loads(json.dumps(op.to_dict())))   # the same operator
"""

from __future__ import annotations

import inspect
from typing import Any

from instantvir_cli.errors import ConfigError, UsageError
from instantvir_cli.ops.base import Operator
from instantvir_cli.ops.blur import GaussianBlur
from instantvir_cli.ops.inpaint import Inpaint, random_mask
from instantvir_cli.ops.sr import SR

OPERATORS: dict[str, type[Operator]] = {"inpaint": Inpaint, "deblur": GaussianBlur, "sr4x": SR}
TASKS = tuple(OPERATORS)

__all__ = ["Operator", "Inpaint", "GaussianBlur", "SR", "OPERATORS", "TASKS", "build_operator",
           "operator_from_dict", "random_mask"]


def _options(cls: type[Operator]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "height", "width"}


def build_operator(task: str, height: int, width: int, **options: Any) -> Operator:
    """The operator of `task` for H x W frames.

    Options: inpaint: ratio (0.5), seed (0), mask ((H, W) or (T, H, W) keep-mask), sigma_y;
    deblur: kernel_size (61), sigma (3.0), sigma_y; sr4x: kernel ("area" | "bicubic"), sigma_y.
    """
    if task not in OPERATORS:
        raise UsageError(f"unknown task {task!r} (choose one of: {', '.join(TASKS)})")
    cls = OPERATORS[task]
    allowed = _options(cls) - {"mask_file", "mask_sha256", "scale"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UsageError(f"unknown option(s) for {task}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return cls(height, width, **options)


def operator_from_dict(d: dict[str, Any], **kwargs: Any) -> Operator:
    """Rebuild an operator from `op.to_dict()` (e.g. a sidecar). Inpaint takes `mask=` for a mask file."""
    if not isinstance(d, dict) or d.get("task") not in OPERATORS:
        task = d.get("task") if isinstance(d, dict) else None
        raise ConfigError(f"operator spec has unknown task {task!r} (expected one of: {', '.join(TASKS)})")
    cls = OPERATORS[d["task"]]
    known = {"task", "height", "width", "mask_frames", "mask_shape", "mask_bits"} | _options(cls)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"operator spec for {d['task']} has unknown key(s): {', '.join(unknown)}")
    try:
        return cls.from_dict(d, **kwargs)
    except (TypeError, ValueError, UsageError) as e:
        raise ConfigError(f"operator spec for {d['task']} is invalid: {e}") from None
