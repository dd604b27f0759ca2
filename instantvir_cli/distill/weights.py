"""Weight files a run reads: paths from config keys or environment variables, what they are, their identity.

    path = resolve_path("${WAN21}/vae", "teacher.vae")       # ConfigError if WAN21 is unset
    vae = load_any_vae(path)                                 # Wan's VAE or a LeanVAE, by what the file is
    ident = artifact_identity(path)                          # changes when the file's weights change
    check_weight_paths(cfg)                                  # before anything is written: every path exists

A vir checkpoint is identified by its header (which changes with every write); foreign weights
(Wan2.1 files in either layout, a LeanVAE `.ckpt`, a diffusers folder) by path, size and content
hash (`models.identity`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from instantvir_cli.errors import CheckpointError, ConfigError

# the config keys that name weights, in the order a run reads them
WEIGHT_KEYS = ("vae.init", "teacher.init", "teacher.vae", "student.weights", "student.critic_weights",
               "text.encoder", "text.tokenizer")


def resolve_path(value: str, key: str) -> Path:
    """`value` with `$VAR` / `${VAR}` and `~` expanded; ConfigError naming `key` for an unset variable."""
    for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value):
        if name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name} is not set (in {value!r})")
    return Path(os.path.expandvars(value)).expanduser()


def config_value(cfg, key: str) -> str:
    table, name = key.split(".")
    return getattr(getattr(cfg, table), name)


def check_weight_paths(cfg, stages: tuple[str, ...] | None = None) -> dict[str, Path]:
    """{key: path} of every weight path the config names; ConfigError/CheckpointError (one line naming
    the key and the file) when a variable is unset or a path does not exist."""
    out = {}
    for key in WEIGHT_KEYS:
        value = config_value(cfg, key)
        if not value:
            continue
        path = resolve_path(value, key)
        if not path.exists():
            raise CheckpointError(f"{key}: not found: {path}")
        out[key] = path
    return out


def artifact_identity(path: Path) -> str | None:
    """A short identity of a weights file or folder: a vir header's hash, else path/size/content hash."""
    from instantvir_cli.distill.export import artifact_id
    from instantvir_cli.models.identity import weights_identity

    if not path.exists():
        return None
    if path.is_file() and path.suffix == ".safetensors":
        try:
            return artifact_id(path)
        except CheckpointError as err:
            if "without a vir header" not in str(err):
                raise
    ident = weights_identity(path)
    return f"{ident['size']}:{ident['sha256'][:16]}"


def load_any_vae(path: Path):
    """(vae, preset): Wan's VAE (`Wan2.1_VAE.pth`, a diffusers vae/ folder) or a LeanVAE."""
    from instantvir_cli.distill import export as X
    from instantvir_cli.models.wan_vae import is_wan_vae, load_wan_vae

    if is_wan_vae(path):
        return load_wan_vae(path), "wan2.1"
    return X.load_vae(path)


__all__ = ["WEIGHT_KEYS", "artifact_identity", "check_weight_paths", "config_value", "load_any_vae", "resolve_path"]
