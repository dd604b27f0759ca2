"""Where the learned model's weights are found: --checkpoint, $VIR_CHECKPOINT, the user's data
folder, then the package's own `instantvir_cli/weights/` (see `find_checkpoint`)."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from ..errors import CheckpointError

ENV_CHECKPOINT = "VIR_CHECKPOINT"
DEFAULT_NAME = "default.safetensors"


def user_checkpoint_dir() -> Path:
    """`$XDG_DATA_HOME/vir/checkpoints`, or `~/.local/share/vir/checkpoints`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vir" / "checkpoints"


def _pick_in_folder(folder: Path) -> Path | None:
    """`default.safetensors` if present, else the newest `*.safetensors`, else None."""
    if not folder.is_dir():
        return None
    if (folder / DEFAULT_NAME).is_file():
        return folder / DEFAULT_NAME
    files = [p for p in folder.glob("*.safetensors") if p.is_file()]
    return max(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


def _package_weights() -> Path | None:
    try:
        root = importlib.resources.files("instantvir_cli") / "weights"
        with importlib.resources.as_file(root) as folder:
            return _pick_in_folder(Path(folder))
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return None


def find_checkpoint(explicit: str | Path | None = None) -> Path:
    """Where the learned model's weights are, searched in this order:

    1. `explicit` (the `--checkpoint` value): a file, or a folder searched like 3;
    2. `$VIR_CHECKPOINT` (a file);
    3. the user data folder `user_checkpoint_dir()`: `default.safetensors`, else the newest
       `*.safetensors`;
    4. the package's own `instantvir_cli/weights/` folder, the same way.

    An explicit path or `$VIR_CHECKPOINT` that does not exist is an error at once (never a
    silent fall-back to another model). A miss raises CheckpointError listing every place.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        if p.is_dir() and (found := _pick_in_folder(p)):
            return found
        raise CheckpointError(f"checkpoint not found: {p} (given with --checkpoint)")
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        p = Path(env).expanduser()
        if p.is_file():
            return p
        raise CheckpointError(f"checkpoint not found: {p} (from ${ENV_CHECKPOINT})")
    searched = ["--checkpoint (not given)", f"${ENV_CHECKPOINT} (not set)"]
    user = user_checkpoint_dir()
    if found := _pick_in_folder(user):
        return found
    searched.append(f"{user}/ ({DEFAULT_NAME} or any *.safetensors)")
    if found := _package_weights():
        return found
    searched.append("package data instantvir_cli/weights/ (*.safetensors)")
    raise CheckpointError("no checkpoint found; searched: " + "; ".join(searched))


__all__ = ["DEFAULT_NAME", "ENV_CHECKPOINT", "find_checkpoint", "user_checkpoint_dir"]
