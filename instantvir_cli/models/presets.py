"""Model presets and builders, and the dict round trip of config dataclasses.

`dit_config("small-p4")` names a preset (`dit.DIT_PRESETS`), a dict rebuilds a config with its
unknown keys rejected, and `build_dit(cfg, "meta")` builds a model without memory (for counting
parameters or for `assign` loads).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ConfigError
from .dit import DIT_PRESETS, DiT, DiTConfig
from .layers import count_parameters


def dit_config(name_or_config: str | DiTConfig | Mapping[str, Any]) -> DiTConfig:
    """A DiTConfig from a preset name, a config, or a dict (unknown keys rejected)."""
    if isinstance(name_or_config, DiTConfig):
        return name_or_config
    if isinstance(name_or_config, Mapping):
        return config_from_dict(DiTConfig, name_or_config)
    if name_or_config not in DIT_PRESETS:
        raise ConfigError(f"unknown DiT preset {name_or_config!r} (known: {', '.join(DIT_PRESETS)})")
    return DIT_PRESETS[name_or_config]


def build_dit(name_or_config: str | DiTConfig | Mapping[str, Any], device: str | torch.device | None = None) -> DiT:
    """Build a DiT (on `device`; "meta" builds it without memory, for counting or `assign` loads)."""
    with torch.device(device or "cpu"):
        return DiT(dit_config(name_or_config))


def preset_param_counts() -> dict[str, int]:
    """Parameters of every DiT preset, counted on the meta device."""
    return {name: count_parameters(build_dit(cfg, "meta")) for name, cfg in DIT_PRESETS.items()}


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A (frozen) config dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type, d: Mapping[str, Any]):
    """Rebuild config dataclass `cls` from a dict; unknown keys raise ConfigError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    try:
        return cls(**d)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {cls.__name__}: {err}") from err


__all__ = ["build_dit", "config_from_dict", "config_to_dict", "dit_config", "preset_param_counts"]
