"""Reading foreign weight files safely: safetensors (single, sharded, a diffusers folder) and
pickled `.pt` / `.pth` / `.ckpt` / `.bin` ONLY through `torch.load(weights_only=True)`, which
refuses any pickle that would run code."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError

FOREIGN_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def check_file(path: Path) -> Path:
    """`path` if it is a file, else CheckpointError("checkpoint not found")."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def refused_pickle(path: str | Path, err: BaseException) -> CheckpointError:
    """One line for a pickle `torch.load(weights_only=True)` refused: what it holds, not PyTorch's
    several lines of advice (which include passing weights_only=False, what vir never does)."""
    lines = [" ".join(ln.split()) for ln in str(err).splitlines() if ln.strip()]
    why = next((ln for ln in lines if "unsupported global" in ln.lower()), None)
    if why is not None:
        why = why.replace("Trying to load ", "").rstrip(".")
    else:
        why = next((ln for ln in lines if "weights_only" not in ln and "torch.load" not in ln), type(err).__name__)
    return CheckpointError(f"{path}: refused to load: a pickled checkpoint may hold only tensors and plain "
                           f"containers, and this one holds more ({why[:160]})")


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The tensor dict inside a pickled checkpoint ({'state_dict': ...}, {'model': ...}, ...)."""
    for _ in range(4):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = [obj[k] for k in ("state_dict", "model", "module", "generator", "ema") if isinstance(obj.get(k), Mapping)]
            if inner:
                obj = inner[0]
                continue
        break
    raise CheckpointError(f"{path}: no state dict of tensors found in the file")


def weight_file(path: str | Path) -> Path:
    """The weight file at `path`: itself, or a folder's one *.safetensors(.index.json); checked to
    be a readable file (CheckpointError otherwise)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.safetensors.index.json")) or sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise CheckpointError(f"{path}: expected one *.safetensors or *.safetensors.index.json, found {len(found)}")
        path = found[0]
    check_file(path)
    return path


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a foreign weights file, on the CPU.

    `.safetensors`; a sharded `*.safetensors.index.json` (or a folder holding one, such as
    diffusers' `transformer/`); or `.pt` / `.pth` / `.ckpt` / `.bin` through
    `torch.load(weights_only=True)` only: a pickle that would run code is refused.
    """
    from safetensors.torch import load_file

    path = weight_file(path)
    try:
        if path.name.endswith(".index.json"):
            index = json.loads(path.read_text())
            out: dict[str, Tensor] = {}
            for shard in sorted(set(index["weight_map"].values())):
                out.update(load_file(str(path.parent / shard)))
            return out
        if path.suffix == ".safetensors":
            return load_file(str(path))
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from err
    if path.suffix in FOREIGN_SUFFIXES:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*pickle protocol.*")
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise refused_pickle(path, err) from None
        return _unwrap(obj, path)
    raise CheckpointError(f"{path}: unknown weights format {path.suffix!r} (use .safetensors, .pt, .pth, .ckpt)")


def _meta_safetensors(files: list[Path]) -> dict[str, Tensor]:
    from safetensors import safe_open

    out: dict[str, Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                sl = st.get_slice(k)
                dtype = getattr(torch, {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                                        "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                                        "F64": "float64"}.get(sl.get_dtype(), "float32"))
                out[k] = torch.empty(sl.get_shape(), dtype=dtype, device="meta")
    return out


def meta_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Like `load_state_dict_file`, but meta tensors: keys, shapes and dtypes, no data read.

    safetensors headers only; pickles through `torch.load(mmap=True, weights_only=True)` (pages are
    never touched), or a full read for the legacy pickle format that cannot be mapped.
    """
    path = weight_file(path)
    try:
        if path.name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            return _meta_safetensors([path.parent / s for s in shards])
        if path.suffix == ".safetensors":
            return _meta_safetensors([path])
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read weights ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if path.suffix not in FOREIGN_SUFFIXES:
        raise CheckpointError(f"{path}: unknown weights format {path.suffix!r} (use .safetensors, .pt, .pth, .ckpt)")
    obj = load_pickle(path)
    return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in _unwrap(obj, path).items()}


def load_pickle(path: Path) -> Any:
    """`torch.load(weights_only=True)` of a file, memory-mapped where its format allows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol.*")
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - legacy format (not mappable) or refused: read it whole
            pass
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise refused_pickle(path, err) from None


def read_config_json(folder: Path, expected: str) -> tuple[Path, dict[str, Any]]:
    """(path, contents) of `folder/config.json`, the config of a transformers or diffusers folder;
    CheckpointError when it is missing (`expected` says what folder was wanted) or unreadable."""
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected {expected})")
    try:
        return cfg_file, json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{cfg_file}: unreadable ({err})") from None


__all__ = ["FOREIGN_SUFFIXES", "check_file", "load_pickle", "load_state_dict_file", "meta_state_dict_file", "read_config_json",
           "refused_pickle", "weight_file"]
