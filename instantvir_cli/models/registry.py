"""Presets, builders, checkpoint files, and key maps for foreign (Wan2.1) weights.

Checkpoint format (`save_checkpoint` / `load_checkpoint`): one `.safetensors` file whose
tensors are named `<module>/<key>` (for example `student/blocks.0.attn.q.weight`,
`vae/encoder...`) and whose safetensors metadata holds, under the key `vir`, a JSON header:

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

Foreign files (`load_state_dict_file`): `.safetensors` (single or sharded with an
`*.index.json`) or pickled `.pt` / `.pth` / `.ckpt`, the latter ONLY through
`torch.load(weights_only=True)`, which refuses any pickle that would run code.

Wan2.1 DiT weights load in either layout (`convert_wan_state_dict`): the original
`WanModel` keys (github.com/Wan-Video/Wan2.1, `wan/modules/model.py`; also with ComfyUI's
`model.diffusion_model.` prefix) or diffusers' `WanTransformer3DModel` keys. Every load is
strict: any missing key, unexpected key or shape mismatch raises `CheckpointError` naming it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.resources
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .dit import DIT_PRESETS, DiT, DiTConfig
from .layers import count_parameters

FORMAT = "instantvir-cli/1"
HEADER_KEY = "vir"
ENV_CHECKPOINT = "VIR_CHECKPOINT"
DEFAULT_NAME = "default.safetensors"
FOREIGN_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
STORAGES = ("fp32", "int8")
INT8_MIN_NUMEL = 1024
SCALE_SUFFIX = "@scale"
WRITTEN_KEYS = ("format", "vir_version", "created", "modules", "storage")  # header keys save_checkpoint sets

#################################################################################
#                              Presets and builders                              #
#################################################################################


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


#################################################################################
#                          Strict state-dict loading                             #
#################################################################################


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


#################################################################################
#                           Wan2.1 foreign key maps                              #
#################################################################################

# Our module path -> Wan's, per layout. Keys are matched on the module path (the key
# without its last `.weight`/`.bias`), or on the whole key for bare parameters.
_WAN_TOP = {
    "original": {
        "patch_embed": "patch_embedding",
        "time_mlp.fc1": "time_embedding.0",
        "time_mlp.fc2": "time_embedding.2",
        "time_proj": "time_projection.1",
        "text_mlp.fc1": "text_embedding.0",
        "text_mlp.fc2": "text_embedding.2",
        "final.linear": "head.head",
        "final.modulation": "head.modulation",
    },
    "diffusers": {
        "patch_embed": "patch_embedding",
        "time_mlp.fc1": "condition_embedder.time_embedder.linear_1",
        "time_mlp.fc2": "condition_embedder.time_embedder.linear_2",
        "time_proj": "condition_embedder.time_proj",
        "text_mlp.fc1": "condition_embedder.text_embedder.linear_1",
        "text_mlp.fc2": "condition_embedder.text_embedder.linear_2",
        "final.linear": "proj_out",
        "final.modulation": "scale_shift_table",
    },
}
_WAN_ATTN = {
    "original": {"q": "q", "k": "k", "v": "v", "o": "o", "norm_q": "norm_q", "norm_k": "norm_k"},
    "diffusers": {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"},
}
_WAN_BLOCK = {
    "original": {"attn": "self_attn", "cross": "cross_attn", "norm_cross": "norm3",
                 "mlp.fc1": "ffn.0", "mlp.fc2": "ffn.2", "modulation": "modulation"},
    "diffusers": {"attn": "attn1", "cross": "attn2", "norm_cross": "norm2",
                  "mlp.fc1": "ffn.net.0.proj", "mlp.fc2": "ffn.net.2", "modulation": "scale_shift_table"},
}
WAN_LAYOUTS = tuple(_WAN_TOP)
_WRAPPER_PREFIXES = ("model.diffusion_model.", "module.", "model.")


def wan_key(our_key: str, layout: str) -> str:
    """The Wan2.1 name (`layout` "original" or "diffusers") of one of our DiT keys."""
    if layout not in _WAN_TOP:
        raise ValueError(f"unknown Wan layout {layout!r} (known: {', '.join(WAN_LAYOUTS)})")
    if our_key in _WAN_TOP[layout]:
        return _WAN_TOP[layout][our_key]
    path, _, leaf = our_key.rpartition(".")
    if path in _WAN_TOP[layout]:
        return f"{_WAN_TOP[layout][path]}.{leaf}"
    parts = our_key.split(".")
    if parts[0] == "blocks":
        prefix, rest = ".".join(parts[:2]), ".".join(parts[2:])
        table = _WAN_BLOCK[layout]
        if rest in table:                                              # bare parameter
            return f"{prefix}.{table[rest]}"
        path, _, leaf = rest.rpartition(".")
        if path in table:
            return f"{prefix}.{table[path]}.{leaf}"
        sub, _, proj = path.partition(".")
        if sub in ("attn", "cross") and proj in _WAN_ATTN[layout]:
            return f"{prefix}.{table[sub]}.{_WAN_ATTN[layout][proj]}.{leaf}"
    raise KeyError(f"no Wan2.1 name for key {our_key!r}")


def _strip_wrappers(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a prefix every key shares (`model.diffusion_model.` of ComfyUI files, `module.`...)."""
    for prefix in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def detect_wan_layout(sd: Mapping[str, Tensor]) -> str:
    """"original" or "diffusers", from marker keys; CheckpointError if neither."""
    if "time_projection.1.weight" in sd:
        return "original"
    if "condition_embedder.time_proj.weight" in sd:
        return "diffusers"
    raise CheckpointError(
        "not a Wan2.1 transformer state dict: found neither 'time_projection.1.weight' (original "
        "layout) nor 'condition_embedder.time_proj.weight' (diffusers layout)"
    )


def wan_config_from_state_dict(sd: Mapping[str, Tensor], heads: int | None = None) -> DiTConfig:
    """Infer the DiTConfig of Wan2.1 weights from their shapes.

    The head count is not visible in the shapes (q/k norms span the whole width): it
    defaults to dim / 128, Wan2.1's head dim for every released size (1.3B: 12, 14B: 40).
    """
    sd = _strip_wrappers(sd)
    layout = detect_wan_layout(sd)
    k = lambda ours: sd[wan_key(ours, layout)]
    try:
        w = k("patch_embed.weight")
        dim, cin, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
        depth = len({key.split(".")[1] for key in sd if key.startswith("blocks.")})
        has_text = wan_key("text_mlp.fc1.weight", layout) in sd
        return DiTConfig(
            dim=dim,
            depth=depth,
            heads=heads or dim // 128,
            ffn_dim=k("blocks.0.mlp.fc1.weight").shape[0],
            in_channels=cin,
            out_channels=k("final.linear.weight").shape[0] // math.prod(patch),
            patch=patch,
            freq_dim=k("time_mlp.fc1.weight").shape[1],
            text_dim=k("text_mlp.fc1.weight").shape[1] if has_text else 0,
            cross_attn_norm=wan_key("blocks.0.norm_cross.weight", layout) in sd,
            qk_norm=wan_key("blocks.0.attn.norm_q.weight", layout) in sd,
        )
    except KeyError as err:
        raise CheckpointError(f"Wan2.1 state dict lacks {err}") from err


def convert_wan_state_dict(sd: Mapping[str, Tensor], cfg: DiTConfig, layout: str | None = None) -> dict[str, Tensor]:
    """Map a Wan2.1 DiT state dict (original or diffusers layout) onto our `DiT(cfg)` keys.

    Strict: every key our model needs must be present with the right shape, and every key
    of `sd` must be used; otherwise CheckpointError names the offenders (in Wan's names).
    """
    sd = _strip_wrappers(sd)
    layout = layout or detect_wan_layout(sd)
    ours = build_dit(cfg, "meta").state_dict()
    names = {k: wan_key(k, layout) for k in ours}
    check_state_dict({names[k]: v for k, v in ours.items()}, sd, f"Wan2.1 ({layout} layout)")
    return {k: sd[names[k]] for k in ours}


def to_wan_state_dict(our_sd: Mapping[str, Tensor], layout: str) -> dict[str, Tensor]:
    """Our DiT state dict under Wan2.1's names (the inverse of `convert_wan_state_dict`)."""
    return {wan_key(k, layout): v for k, v in our_sd.items()}


def load_wan_dit(path: str | Path, heads: int | None = None, device: str | torch.device = "cpu") -> DiT:
    """Build a DiT from Wan2.1 weights on disk (file, sharded index, or diffusers folder)."""
    sd = load_state_dict_file(path)
    cfg = wan_config_from_state_dict(sd, heads)
    model = build_dit(cfg, "meta")
    load_module_state(model, convert_wan_state_dict(sd, cfg), "Wan2.1 DiT")
    return model.to(device)


#################################################################################
#                                Checkpoint files                                #
#################################################################################


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
    """Write a `.safetensors` checkpoint atomically (temporary file + rename).

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(flat, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def quantize_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output row: w (R, ...) -> (q int8 (R, ...), scale fp32 (R, 1, ...))."""
    w = w.float()
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    return q.float() * scale


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a vir checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = _check_file(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({err})") from err
    if HEADER_KEY not in meta:
        raise CheckpointError(f"{path}: a .safetensors file without a vir header (foreign weights?)")
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt vir header ({err})") from err
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {header.get('format')!r} (this vir reads {FORMAT})")
    return header


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


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a foreign weights file, on the CPU.

    `.safetensors`; a sharded `*.safetensors.index.json` (or a folder holding one, such as
    diffusers' `transformer/`); or `.pt` / `.pth` / `.ckpt` / `.bin` through
    `torch.load(weights_only=True)` only: a pickle that would run code is refused.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.safetensors.index.json")) or sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise CheckpointError(f"{path}: expected one *.safetensors or *.safetensors.index.json, found {len(found)}")
        path = found[0]
    _check_file(path)
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
            lines = [ln.strip() for ln in str(err).splitlines()]
            why = next((ln for ln in lines if "Unsupported" in ln or "error:" in ln), type(err).__name__)
            raise CheckpointError(
                f"{path}: refused to load: a pickled checkpoint may hold only tensors and plain "
                f"containers, and this one holds more ({why.split(' Please')[0][:200]})"
            ) from err
        return _unwrap(obj, path)
    raise CheckpointError(f"{path}: unknown weights format {path.suffix!r} (use .safetensors, .pt, .pth, .ckpt)")


#################################################################################
#                               Checkpoint lookup                                #
#################################################################################


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


__all__ = [
    "FORMAT",
    "WAN_LAYOUTS",
    "Checkpoint",
    "build_dit",
    "check_state_dict",
    "config_from_dict",
    "config_to_dict",
    "convert_wan_state_dict",
    "detect_wan_layout",
    "dit_config",
    "find_checkpoint",
    "load_checkpoint",
    "load_module_state",
    "load_state_dict_file",
    "load_wan_dit",
    "make_header",
    "preset_param_counts",
    "read_header",
    "save_checkpoint",
    "to_wan_state_dict",
    "user_checkpoint_dir",
    "wan_config_from_state_dict",
    "wan_key",
]
