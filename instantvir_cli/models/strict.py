"""Strict state-dict loading: every missing key, unexpected key and shape mismatch is named.

    check_state_dict(model.state_dict(), sd, "student")   # raises CheckpointError listing them
    load_module_state(model, sd, "student")              # check, then load (assign on meta)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import CheckpointError


def _listing(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(expected: Mapping[str, Any], got: Mapping[str, Tensor], what: str = "model") -> None:
    """Raise CheckpointError naming every missing/unexpected key and every shape mismatch.

    `expected` maps keys to tensors or shapes (a module's `state_dict()` works, also on meta).
    """
    exp_shapes = {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in expected.items()}
    missing = set(exp_shapes) - set(got)
    unexpected = set(got) - set(exp_shapes)
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    bad = [
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {exp_shapes[k]}"
        for k in sorted(set(exp_shapes) & set(got))
        if tuple(got[k].shape) != exp_shapes[k]
    ]
    if bad:
        problems.append(f"shape mismatches ({len(bad)}): {_listing(bad)}")
    if problems:
        raise CheckpointError(f"{what} weights do not fit: " + "; ".join(problems))


def load_module_state(module: nn.Module, state: Mapping[str, Tensor], what: str = "model") -> nn.Module:
    """Strictly load `state` into `module` (a meta-device module gets the tensors assigned)."""
    check_state_dict(module.state_dict(), state, what)
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(dict(state), strict=True, assign=on_meta)
    return module


__all__ = ["check_state_dict", "load_module_state"]
