"""The `OUT.vir.json` sidecar: the exact operator `vir degrade` applied, so `vir restore` can undo it."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from instantvir_cli import __version__
from instantvir_cli.errors import ConfigError
from instantvir_cli.paths import sidecar_path

SIDECAR_FORMAT = 1


@dataclass
class Sidecar:
    """What a degraded video came from and which operator made it.

    operator: the operator's `to_dict()` (task, sizes, seed or mask file, sigma_y, ...).
    source: facts about the clean input (path, width, height, crop applied before A).
    noise_seed: seed of the measurement noise (only meaningful when sigma_y > 0).
    """

    operator: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    noise_seed: int = 0
    vir_version: str = __version__
    format: int = SIDECAR_FORMAT

    def write(self, video: Path) -> Path:
        """Write atomically beside `video`; returns the sidecar path."""
        path = sidecar_path(video)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".json.partial", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, video: Path) -> "Sidecar | None":
        """The sidecar of `video`, or None when there is none. A broken one is a ConfigError."""
        path = sidecar_path(video)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or "operator" not in data:
                raise ValueError("no 'operator' entry")
            if int(data.get("format", 1)) > SIDECAR_FORMAT:
                raise ValueError(f"format {data['format']} is newer than this vir understands")
            return cls(
                operator=dict(data["operator"]),
                source=dict(data.get("source", {})),
                noise_seed=int(data.get("noise_seed", 0)),
                vir_version=str(data.get("vir_version", "?")),
                format=int(data.get("format", 1)),
            )
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"sidecar {path} is invalid: {exc}") from None
