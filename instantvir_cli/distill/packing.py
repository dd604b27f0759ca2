"""Making a data pack (`distill.pack`) from a run's sources: decode, downscale to a budget, write.

    train, val = recipe_clips(cfg.data)                     # the catalogue's splits, checked
    manifest = build_pack(".device-pack", cfg.data, find_sources(cfg.data), 38 << 20, describe)

Runs where PyAV and scikit-image are (scripts/pack_data.py); the machine that trains from the pack
needs neither.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from instantvir_cli.config import DataConfig
from instantvir_cli.distill.data import Sources, load_image_array, load_val_clip, read_window
from instantvir_cli.distill.pack import FORMAT, MANIFEST, MAX_BYTES, forget
from instantvir_cli.errors import ConfigError
from instantvir_cli.hashing import file_sha256


def recipe_clips(cfg: DataConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training clips, validation clips) of [data], checked against the footage catalogue's
    splits: training clips must be `train`, validation clips `train` or `val`; a `test` clip, a
    clip outside the catalogue or a file of data.paths is a ConfigError."""
    from instantvir_cli.footage import CLIPS, RESERVED_PACKAGES

    if cfg.paths:
        raise ConfigError("data.paths: a pack holds catalogue clips only (their splits are known); "
                          "leave data.paths empty")
    for n in cfg.footage + cfg.val_clips:
        if n not in CLIPS or any(r in str(CLIPS[n].source).lower() for r in RESERVED_PACKAGES):
            raise ConfigError(f"data.footage: {n!r} is not a clip of the footage catalogue")
    missing = [n for n in cfg.val_clips if n not in cfg.footage]
    if missing:
        raise ConfigError(f"data.val_clips: {missing[0]!r} is not among data.footage")
    train = tuple(n for n in cfg.footage if n not in cfg.val_clips)
    for n in train:
        if CLIPS[n].split != "train":
            raise ConfigError(f"data.footage: {n!r} is a {CLIPS[n].split} clip: only train clips are packed for training")
    for n in cfg.val_clips:
        if CLIPS[n].split == "test":
            raise ConfigError(f"data.val_clips: {n!r} is a test clip: test clips are never packed")
    return train, tuple(cfg.val_clips)


def video_scale(budget: int, sizes: list[tuple[int, int, int]]) -> float:
    """The one scale (<= 1) at which uint8 videos of (T, H, W) fit in `budget` bytes together."""
    full = sum(T * H * W * 3 for T, H, W in sizes)
    return 1.0 if full <= budget else math.sqrt(budget / full) * 0.995   # the margin absorbs rounding


def _save(root: Path, file: str, a: np.ndarray, entry: dict) -> dict:
    np.save(root / file, np.ascontiguousarray(a), allow_pickle=False)
    return {**entry, "file": file, "shape": list(a.shape), "dtype": str(a.dtype), "sha256": file_sha256(root / file)}


def _uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 (exact for frames read from 8-bit video)."""
    x = torch.as_tensor(x)
    return torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


def build_pack(dest: str | Path, cfg: DataConfig, sources: Sources, max_bytes: int = MAX_BYTES,
               describe=None) -> dict:
    """Write the pack of `sources` (`data.Sources` found from [data] with the cache) into `dest`.

    Validation clips as `load_val_clip` cuts them, photographs (scikit-image's whole, the catalogue's at
    most `photos.PACK_SIDE` on the long side), then the training videos, all
    downscaled by one factor (`video_scale`) so the pack fits `max_bytes`; ConfigError when even
    that leaves a video's short side under the crop. `describe(name)` gives the source and licence
    of a clip ({"source", "licence", "split"}). Returns the manifest.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.npy"):
        old.unlink()
    describe = describe or (lambda name: {})
    entries = []
    for src in sources.val:
        x = load_val_clip(src, cfg.val_frames, cfg.val_size)[0]
        entries.append(_save(root, f"val-{src.name}.npy", _uint8(x), {"kind": "val", "name": src.name,
                                                                        **describe(src.name)}))
    from instantvir_cli import photos

    for img in sources.train_images:
        if img.name in photos.PHOTOS:     # a catalogue photograph, at most PACK_SIDE on its long side
            a, about = photos.pack_entry(img.name)
        else:
            import skimage

            a = load_image_array(img.name)
            about = {"source": f"scikit-image {skimage.__version__} (skimage.data)", "licence": None, "split": "train"}
        entries.append(_save(root, f"image-{img.name}.npy", a, {"kind": "image", "name": img.name, **about}))
    used = sum((root / e["file"]).stat().st_size for e in entries) + (64 << 10)   # headers, manifest
    scale = video_scale(max_bytes - used, [(s.frames, s.height, s.width) for s in sources.train_videos])
    if sources.train_videos and max_bytes - used <= 0:
        raise ConfigError(f"pack: the photographs and validation clips alone take {used / 2**20:.1f} MiB of "
                          f"{max_bytes / 2**20:.0f}")
    for src in sources.train_videos:
        w, h = max(2, 2 * round(src.width * scale / 2)), max(2, 2 * round(src.height * scale / 2))
        if min(w, h) < min(cfg.crop_size):
            raise ConfigError(f"pack: {src.name} would be stored at {w}x{h}, under the crop {cfg.crop_size}: "
                              f"allow more MiB or pack fewer sources")
        frames = _uint8(read_window(src, 0, src.frames, w, h))
        entries.append(_save(root, f"video-{src.name}.npy", frames, {
            "kind": "video", "name": src.name, "original_size": [src.width, src.height],
            "scale": round(w / src.width, 4), "fps": str(src.fps), **describe(src.name)}))
    manifest = {"format": FORMAT, "data": {"frames": cfg.frames, "crop": list(cfg.crop_size),
                                           "val_frames": cfg.val_frames, "val_size": cfg.val_size},
                "entries": entries}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    if total > max_bytes:
        raise ConfigError(f"pack: {total / 2**20:.1f} MiB written, over the {max_bytes / 2**20:.0f} MiB asked for")
    forget(root)
    return manifest


__all__ = ["build_pack", "recipe_clips", "video_scale"]
