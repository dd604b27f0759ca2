"""A data pack: a run's training and validation data as plain arrays, read without PyAV.

    python scripts/pack_data.py .device-pack --config configs/default.toml     # here: decode, resize, write
    data.pack = ".device-pack"                                                 # there: the trainer reads it

A pack is a folder: `manifest.json` and one `.npy` file (uint8) per source:

    video-<name>.npy   a training clip, every frame: (T, H, W, 3), downscaled to fit the size budget
    image-<name>.npy   a photograph of `skimage.data` as scikit-image gives it: (H, W) or (H, W, 3); or one
                       of the footage catalogue (instantvir_cli.photos): (H, W, 3), at most PACK_SIDE
                       (512) on its long side
    val-<name>.npy     a validation clip as `data.load_val_clip` cuts it: (val_frames, S, S, 3), S = val_size

The manifest (`FORMAT`) records the data settings the validation clips were cut for and, per
entry: name, kind, file, shape, dtype, SHA-256, the source package and its declared licence (the
footage catalogue's; scikit-image's version for its photographs), the split, and for videos and
catalogue photographs the original size and the scale they were stored at. Writing is deterministic: the same sources and
budget give the same bytes.

A packed video is sampled as a video of its stored size (`data.WindowDataset`: the same window,
scale, crop and flip draws), its frames resized with bilinear antialiasing instead of swscale.
`open_pack` checks every file against the manifest (shape, dtype, SHA-256); anything missing or
different is one ConfigError naming the file (exit 9). `data.find_sources` turns a pack into a
run's sources; `distill.packing` writes one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from instantvir_cli.errors import ConfigError
from instantvir_cli.hashing import file_sha256

FORMAT = "vir-data-pack/1"
MANIFEST = "manifest.json"
KINDS = ("video", "image", "val")
MAX_BYTES = 60 << 20                    # the largest pack the device tool carries beside the tree


@dataclass(frozen=True)
class Pack:
    """An opened, verified pack: its folder, data settings and entries {(kind, name): entry dict}."""

    root: Path
    data: dict
    entries: dict[tuple[str, str], dict]

    def path(self, kind: str, name: str) -> Path:
        return self.root / self.entries[(kind, name)]["file"]


_OPENED: dict[str, Pack] = {}
_ARRAYS: dict[str, np.ndarray] = {}


def open_pack(root: str | Path) -> Pack:
    """The pack in folder `root`, every file checked against the manifest (once per process)."""
    root = Path(root).expanduser()
    key = str(root.resolve())
    if key in _OPENED:
        return _OPENED[key]
    where = f"data.pack: {root}"
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no {MANIFEST} (make one with scripts/pack_data.py)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{where}: {MANIFEST} unreadable: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{where}: {MANIFEST} is not a {FORMAT} manifest")
    entries: dict[tuple[str, str], dict] = {}
    for e in manifest.get("entries", []):
        try:
            kind, name, file, shape, dtype, digest = (e["kind"], e["name"], e["file"], e["shape"], e["dtype"],
                                                      e["sha256"])
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: {MANIFEST} has an entry without kind, name, file, shape, dtype "
                              "and sha256") from None
        if kind not in KINDS or not isinstance(file, str) or Path(file).name != file or not file.endswith(".npy"):
            raise ConfigError(f"{where}: {MANIFEST}: bad entry {name!r} (kind {kind!r}, file {file!r})")
        path = root / file
        if not path.is_file():
            raise ConfigError(f"{where}: {file} is missing")
        if file_sha256(path) != digest:
            raise ConfigError(f"{where}: {file} does not match its SHA-256 in {MANIFEST} (corrupt or replaced)")
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{where}: {file} unreadable: {err}") from None
        if list(a.shape) != list(shape) or str(a.dtype) != dtype:
            raise ConfigError(f"{where}: {file} is {a.dtype} {list(a.shape)}, {MANIFEST} says {dtype} {list(shape)}")
        entries[(kind, name)] = e
    _OPENED[key] = Pack(root, dict(manifest.get("data", {})), entries)
    return _OPENED[key]


def forget(root: str | Path) -> None:
    """Drop the checked copy of the pack in `root` (after it was rewritten)."""
    _OPENED.pop(str(Path(root).resolve()), None)


def array(path: str | Path) -> np.ndarray:
    """A packed array, memory-mapped (one map per process and file)."""
    key = str(path)
    if key not in _ARRAYS:
        _ARRAYS[key] = np.load(key, mmap_mode="r", allow_pickle=False)
    return _ARRAYS[key]


#################################################################################
#                                 Reading arrays                                #
#################################################################################


def to_unit(a: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> (3, T, H, W) float32 in [-1, 1], as the video reader scales 8 bits."""
    return torch.from_numpy(np.array(a)).permute(3, 0, 1, 2).float().mul_(2 / 255).sub_(1)   # a copy: maps are read-only


def packed_window(path: str, start: int, frames: int, width: int, height: int) -> np.ndarray:
    """Frames [start, start + frames) of a packed video, resized to width x height: (3, T, H, W) float32."""
    x = to_unit(array(path)[start:start + frames])                            # (3, T, h, w)
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x.transpose(0, 1), size=(height, width), mode="bilinear", antialias=True,
                          align_corners=False).transpose(0, 1).clamp_(-1, 1)
    return x.contiguous().numpy()


def packed_val_clip(path: str, frames: int) -> torch.Tensor:
    """A packed validation clip's first `frames` frames: (1, 3, T, S, S) in [-1, 1]."""
    return to_unit(array(path)[:frames])[None].contiguous()


__all__ = ["FORMAT", "KINDS", "MANIFEST", "MAX_BYTES", "Pack", "array", "forget", "open_pack", "packed_val_clip",
           "packed_window", "to_unit"]
