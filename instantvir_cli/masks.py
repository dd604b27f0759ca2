"""Inpainting keep-masks from an image (one mask for every frame) or a video (one mask per frame).

A pixel is observed (True) where the mask is non-zero in any colour channel (alpha is ignored).
Lossy files (JPEG, H.264, ...) blur black into near-black, so for them "non-zero" means "above
mid-grey". Video masks are decoded block by block in step with the main video, so memory stays
bounded by the block size. Files are read with PyAV (PNG, BMP, TIFF, JPEG, GIF, WebP, any video).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import av
import numpy as np
import torch

from instantvir_cli.errors import MaskInvalid, VirError
from instantvir_cli.video.info import _reason, bit_depth, open_input, video_stream
from instantvir_cli.video.reader import RGBConverter

# decoders whose output is exactly what was stored: a mask is "non-zero", not "above half"
LOSSLESS_CODECS = {"png", "apng", "bmp", "tiff", "gif", "pam", "pbm", "pgm", "ppm", "pgmyuv", "qoi", "ffv1",
                   "rawvideo", "huffyuv", "ffvhuff", "utvideo", "targa", "sgi", "pcx", "xbm", "xwd", "sunrast"}


class MaskSource:
    """A keep-mask for a video of `height` x `width`; build it with `load_mask`.

    `static_mask()` -> (H, W) bool: the mask of an image, or the first frame of a mask video.
    `block(t0, T)` -> (T, H, W) bool: the masks of frames t0 .. t0+T-1 (requested in order).
    """

    def __init__(self, path: Path, height: int, width: int, threshold: float | None = None):
        self.path, self.height, self.width = Path(path), height, width
        self._container = None
        if not self.path.exists():
            raise MaskInvalid(f"mask not found: {self.path}")
        if self.path.is_dir():
            raise MaskInvalid(f"mask is a folder, not an image or video: {self.path}")
        try:
            self._container = open_input(self.path)
        except VirError as e:
            raise MaskInvalid(f"mask unreadable: {e}") from None
        try:
            stream = video_stream(self._container, self.path)
            stream.thread_type = "AUTO"
            codec = stream.codec_context.name
            self._frames = self._container.decode(stream)
            first = self._next_frame()
            if first is None:
                raise MaskInvalid(f"mask unreadable: no image could be decoded from {self.path}")
            if (first.width, first.height) != (width, height):
                raise MaskInvalid(f"mask {self.path.name} is {first.width}x{first.height} but the video is "
                                  f"{width}x{height}")
            deep = bit_depth(first.format.name) > 8
            self._convert = RGBConverter(width, height, deep=deep)
            peak = 65535 if deep else 255
            if threshold is None:
                threshold = 0.0 if codec in LOSSLESS_CODECS else 0.5
            self._level = int(threshold * peak)  # observed where max(R, G, B) > level
            self._first = self._to_mask(first)
            second = self._next_frame()
        except MaskInvalid:
            self.close()
            raise
        except VirError as e:
            self.close()
            raise MaskInvalid(f"mask unreadable: {e}") from None
        self.is_video = second is not None
        self._buffer: deque[torch.Tensor] = deque([self._first] + ([self._to_mask(second)] if second else []))
        self._next_index = 0      # frame index of self._buffer[0]
        if not self.is_video:
            self.close()

    def _next_frame(self) -> av.VideoFrame | None:
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise MaskInvalid(f"mask unreadable: {self.path}: {_reason(e)}") from None

    def _to_mask(self, frame: av.VideoFrame) -> torch.Tensor:
        if frame.is_corrupt:       # the decoder concealed errors: the mask would be a guess
            raise MaskInvalid(f"mask {self.path.name} is damaged: a frame decodes with errors")
        if (frame.width, frame.height) != (self.width, self.height):
            raise MaskInvalid(f"mask {self.path.name} changes size to {frame.width}x{frame.height}; the video is "
                              f"{self.width}x{self.height}")
        r, g, b = self._convert(frame)
        return torch.from_numpy(np.maximum(np.maximum(r, g), b) > self._level)  # (H, W) bool

    def static_mask(self) -> torch.Tensor:
        """(H, W) bool: the image's mask, or frame 0 of a mask video."""
        return self._first

    def block(self, t0: int, T: int) -> torch.Tensor:
        """(T, H, W) bool masks of frames t0 .. t0+T-1; for a video, call with increasing t0."""
        if not self.is_video:
            return self._first.unsqueeze(0).expand(T, -1, -1)
        if t0 < self._next_index:
            raise ValueError(f"mask blocks must be requested in order: frame {t0} was already passed")
        while self._buffer and self._next_index < t0:  # skip frames nobody asked for
            self._buffer.popleft()
            self._next_index += 1
        while len(self._buffer) < (t0 - self._next_index) + T:
            frame = self._next_frame() if self._frames is not None else None
            if frame is None:
                have = self._next_index + len(self._buffer)
                raise MaskInvalid(f"mask video {self.path.name} has only {have} frames; the video needs "
                                  f"frame {t0 + T - 1}")
            if self._next_index < t0:
                self._next_index += 1
                continue
            self._buffer.append(self._to_mask(frame))
        out = torch.stack([self._buffer.popleft() for _ in range(T)])  # (T, H, W)
        self._next_index += T
        return out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._frames = None, None

    def __enter__(self) -> MaskSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_mask(path: str | Path, height: int, width: int, threshold: float | None = None) -> MaskSource:
    """Open the keep-mask in `path` (image or video) for a `height` x `width` video.

    threshold: fraction of full scale a channel must exceed to count as observed (default: 0 for
    lossless files, 0.5 for lossy ones).
    Raises: MaskInvalid (missing, unreadable, wrong size).
    """
    return MaskSource(Path(path), height, width, threshold)


def inpaint_operator_from_mask(path: str | Path, height: int, width: int):
    """The inpainting operator of a user keep-mask file, and its source when it is a video.

    Returns (op, source): op holds the first (or only) mask and records the file; source is
    the `MaskSource` to stream per-frame masks from (None for an image mask).
    """
    from instantvir_cli.ops import build_operator

    source = load_mask(path, height, width)
    op = build_operator("inpaint", height, width, mask=source.static_mask()).with_mask_file(path)
    return op, (source if source.is_video else None)
