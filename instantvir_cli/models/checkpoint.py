"""vir checkpoint files: one `.safetensors` file, tensors named `<module>/<key>`, a JSON header.

Tensors are named `<module>/<key>` (for example `student/blocks.0.attn.q.weight`,
`vae/encoder...`); the safetensors metadata holds, under the key `vir`, a JSON header:

    format        "instantvir-cli/1"                          (added by save_checkpoint)
    vir_version   package version that wrote it               (added)
    created       UTC time, ISO 8601                          (added)
    modules       {name: {"tensors": n, "params": n}}         (added)
    dit           DiTConfig as a dict        } architecture, so that the file alone
    dit_preset    preset name, if any        } rebuilds the models (`make_header`
    student       StudentConfig as a dict    } turns dataclasses into dicts)
    vae, vae_preset                          }
    task, operator, t_star, provenance, ...  free JSON the caller adds
    storage       "fp32" or "int8" (added): with int8, every float tensor of 2+ dimensions and
                  at least INT8_MIN_NUMEL values is stored as int8 with one fp32 scale per
                  output row (`<module>/<key>@scale`); `load_checkpoint` returns fp32 either way

`read_header` checks the header before anything is built from it (`check_header`): the types of
`modules`, `tasks` and their entries, the model configs against the ranges of `limits.py` (dims,
heads, depths, patches, block sizes, s_star, correction_ema), and that every module a task
names is in the file. A bad value is CheckpointError (exit 8) naming the key and its range.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import limits as L
from ..atomic import atomic_write
from ..errors import CheckpointError
from .foreign import check_file
from .presets import config_to_dict

FORMAT = "instantvir-cli/1"
HEADER_KEY = "vir"
STORAGES = ("fp32", "int8")
INT8_MIN_NUMEL = 1024
SCALE_SUFFIX = "@scale"
WRITTEN_KEYS = ("format", "vir_version", "created", "modules", "storage")  # header keys save_checkpoint sets


@dataclass
class Checkpoint:
    """A loaded vir checkpoint: its JSON header and one state dict per module."""

    path: Path
    header: dict[str, Any]
    modules: dict[str, dict[str, Tensor]]

    def state_dict(self, module: str) -> dict[str, Tensor]:
        if module not in self.modules:
            raise CheckpointError(f"{self.path}: no module {module!r} (has: {', '.join(self.modules) or 'none'})")
        return self.modules[module]


def make_header(**fields: Any) -> dict[str, Any]:
    """A header dict from keyword fields; dataclass values (configs) become dicts."""
    out = {}
    for k, v in fields.items():
        out[k] = config_to_dict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
    return out


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("instantvir-cli")
    except Exception:  # noqa: BLE001 - not installed: still write a checkpoint
        return "unknown"


def save_checkpoint(
    path: str | Path,
    tensors_by_module: Mapping[str, Mapping[str, Tensor]],
    header: Mapping[str, Any],
    storage: str = "fp32",
) -> Path:
    """Write a `.safetensors` checkpoint atomically (`atomic.atomic_write`: temporary, fsync, rename).

    Args:
        path: target file.
        tensors_by_module: {"student": state_dict, "vae": state_dict, ...}.
        header: JSON-serializable dict (see the module docstring for the usual fields).
        storage: "fp32", or "int8" for the weight matrices (about 4x smaller; see the docstring).
    Returns:
        the path written.
    """
    from safetensors.torch import save_file

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    path = Path(path)
    flat: dict[str, Tensor] = {}
    modules = {}
    for name, sd in tensors_by_module.items():
        if not name or "/" in name:
            raise ValueError(f"module name must be non-empty without '/', got {name!r}")
        for k, v in sd.items():
            v = v.detach().to("cpu").clone().contiguous()  # own storage: modules may share tensors
            if storage == "int8" and v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_NUMEL:
                flat[f"{name}/{k}"], flat[f"{name}/{k}{SCALE_SUFFIX}"] = quantize_rows(v)
            else:
                flat[f"{name}/{k}"] = v
        modules[name] = {"tensors": len(sd), "params": int(sum(v.numel() for v in sd.values()))}
    full = {
        **dict(header),
        "storage": storage,
        "format": FORMAT,
        "vir_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "modules": modules,
    }
    try:
        meta = {HEADER_KEY: json.dumps(full, sort_keys=True), "format": "pt"}
    except TypeError as err:
        raise ValueError(f"checkpoint header is not JSON-serializable: {err}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary beside it, fsynced, then renamed: a full disk is OutputRefused with nothing left
    return atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=meta))


def quantize_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output row: w (R, ...) -> (q int8 (R, ...), scale fp32 (R, 1, ...))."""
    w = w.float()
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    return q.float() * scale


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a vir checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = check_file(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err
    if HEADER_KEY not in meta:
        raise CheckpointError(f"{path}: a .safetensors file without a vir header (foreign weights?)")
    try:
        header = json.loads(meta[HEADER_KEY])
    except (json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: corrupt vir header ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt vir header (a JSON {type(header).__name__}, not an object)")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {header.get('format')!r} (this vir reads {FORMAT})"[:300])
    check_header(header, str(path))
    return header


def check_header(h: dict[str, Any], where: str) -> None:
    """Check a header's values (module docstring); CheckpointError naming the first bad key."""
    from ..decoding import DecodeSpec
    from ..estimate import INITS
    from ..ops import TASKS

    err = CheckpointError
    modules = L.table("modules", h.get("modules", {}), err, where)
    for name, info in modules.items():
        if not name or "/" in name:
            raise err(f"{where}: modules: module name {name!r} must be non-empty without '/'"[:300])
        L.table(f"modules.{L.key_name(name)}", info, err, where)
        for k in ("tensors", "params"):
            if k in info:
                L.integer(f"modules.{L.key_name(name)}.{k}", info[k], 0, 1 << 40, err, where)
    if "storage" in h:
        L.string("storage", h["storage"], err, where, choices=STORAGES)
    for key in ("vae_preset", "dit_preset"):
        if key in h:
            L.string(key, h[key], err, where, max_len=128)
    if "vae" in h:
        L.model_fields(h["vae"], L.VAE_INTS, L.VAE_FLOATS, err, where, "vae")
    if "dit" in h:
        L.model_fields(h["dit"], L.DIT_INTS, L.DIT_FLOATS, err, where, "dit", bools=L.DIT_BOOLS)
    if "student" in h:
        L.student_fields(h["student"], err, where, "student")
    if "latent_scale" in h:
        L.number("latent_scale", h["latent_scale"], 1e-6, 1e6, err, where)
    if "provenance" in h:
        L.table("provenance", h["provenance"], err, where)
    tasks = L.table("tasks", h.get("tasks", {}), err, where)
    for task, entry in tasks.items():
        p = f"tasks.{task}"
        if task not in TASKS:
            raise err(f"{where}: tasks: unknown task {task!r} (known: {', '.join(TASKS)})"[:300])
        L.table(p, entry, err, where)
        for key in ("module", "vae_module"):
            if key in entry or key == "module":
                name = L.string(f"{p}.{key}", entry.get(key), err, where, max_len=256)
                if name not in modules:
                    raise err(f"{where}: {p}.{key}: module {name!r} is not in the file "
                              f"(it has: {', '.join(modules) or 'none'})"[:300])
        L.student_fields(entry.get("student", {}), err, where, f"{p}.student")
        L.table(f"{p}.operator", entry.get("operator", {}), err, where)
        L.string(f"{p}.init", entry.get("init", "operator"), err, where, choices=INITS)
        for key in ("residual", "delta", "consistency"):
            if key in entry:
                L.boolean(f"{p}.{key}", entry[key], err, where)
        for key in ("correction_ema", "still_ema"):
            if key in entry:
                b = L.number(f"{p}.{key}", entry[key], 0.0, 1.0, err, where)
                if b >= 1.0:
                    raise err(f"{where}: {p}.{key}: expected a number in [0, 1), got {b}")
        try:
            DecodeSpec.from_entry(entry)
        except ValueError as e:
            raise err(f"{where}: {p}: {e}") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a vir checkpoint: header + {module: state_dict}."""
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)
    try:
        flat = load_file(str(path), device=str(device))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read tensors ({err})") from err
    modules: dict[str, dict[str, Tensor]] = {name: {} for name in header.get("modules", {})}
    for key, v in flat.items():
        name, sep, rest = key.partition("/")
        if not sep:
            raise CheckpointError(f"{path}: tensor {key!r} is not named <module>/<key>")
        if rest.endswith(SCALE_SUFFIX):
            continue
        scale = flat.get(key + SCALE_SUFFIX)
        if scale is not None:
            if v.dtype != torch.int8:
                raise CheckpointError(f"{path}: tensor {key!r} has a scale but is {v.dtype}, not int8")
            v = dequantize_rows(v, scale)
        modules.setdefault(name, {})[rest] = v
    for name, info in header.get("modules", {}).items():
        if len(modules[name]) != info.get("tensors"):
            raise CheckpointError(f"{path}: module {name!r} has {len(modules[name])} tensors, header says {info.get('tensors')}")
    return Checkpoint(path, header, modules)


__all__ = ["FORMAT", "INT8_MIN_NUMEL", "STORAGES", "WRITTEN_KEYS", "Checkpoint", "check_header", "dequantize_rows",
           "load_checkpoint", "make_header", "quantize_rows", "read_header", "save_checkpoint"]
