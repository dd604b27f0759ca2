"""Frames side by side as labelled panels, with a crop box and its zoomed inset; PNG out.

    lay = layout(panels=3, width=480, height=268, crop=Crop(200, 100, 60, 40))
    img = compose(lay, [f0, f1, f2], [["clean", "reference"], ["classical", "PSNR 33.0 dB"], ...])
    write_png(Path("sheet.png"), img)

A panel is a column: its label strip (one line per label line, the first bright, the rest dim),
the frame with the crop drawn as a box around it, and below, with a crop, the crop zoomed by a
whole factor (nearest neighbour, so pixels stay pixels) in a box of the same colour. Panels are
`GAP` pixels apart on a `BACKGROUND` that touches no frame, so a sheet's panels can be counted
by its background columns. Sheet sides are even (a video encoder's 4:2:0 needs it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instantvir_cli.errors import OutputRefused, UsageError
from instantvir_cli.font import CELL_H, draw_text, fit_text

GAP = 8
BACKGROUND = (24, 24, 24)
TITLE, DIM = (245, 245, 245), (170, 170, 170)
BOX = (255, 200, 0)


@dataclass(frozen=True)
class Crop:
    """A region X, Y, W, H of the reference frame, in its pixels."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> "Crop":
        """'X,Y,W,H' -> Crop; UsageError for anything else."""
        parts = text.replace(" ", "").split(",")
        try:
            x, y, w, h = (int(p) for p in parts)
        except ValueError:
            raise UsageError(f"--crop must be X,Y,W,H in pixels, got {text!r}") from None
        if x < 0 or y < 0 or w < 1 or h < 1:
            raise UsageError(f"--crop needs X, Y >= 0 and W, H >= 1, got {text!r}")
        return cls(x, y, w, h)

    def check(self, width: int, height: int) -> None:
        """UsageError unless the crop lies inside a width x height frame."""
        if self.x + self.w > width or self.y + self.h > height:
            raise UsageError(f"--crop {self.x},{self.y},{self.w},{self.h} reaches outside the {width}x{height} frame")

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


@dataclass(frozen=True)
class Layout:
    """Where everything of a sheet goes; sizes in sheet pixels."""

    panels: int
    width: int                 # a panel's frame
    height: int
    lines: int                 # label lines
    scale: int                 # font scale
    crop: Crop | None
    zoom: int                  # the inset's zoom factor (1 without a crop)

    @property
    def label_h(self) -> int:
        return self.lines * CELL_H * self.scale + 2 * self.scale + 2

    @property
    def inset_w(self) -> int:
        return self.crop.w * self.zoom if self.crop else 0

    @property
    def inset_h(self) -> int:
        return self.crop.h * self.zoom if self.crop else 0

    @property
    def frame_y(self) -> int:
        return GAP + self.label_h

    @property
    def inset_y(self) -> int:
        return self.frame_y + self.height + GAP

    @property
    def sheet_w(self) -> int:
        w = self.panels * self.width + (self.panels + 1) * GAP
        return w + w % 2

    @property
    def sheet_h(self) -> int:
        h = self.frame_y + self.height + GAP + ((self.inset_h + GAP) if self.crop else 0)
        return h + h % 2

    def panel_x(self, i: int) -> int:
        return GAP + i * (self.width + GAP)


def layout(panels: int, width: int, height: int, crop: Crop | None = None, lines: int = 2) -> Layout:
    """The layout of `panels` frames of width x height; the crop, if any, is checked against them."""
    if panels < 1:
        raise UsageError("nothing to show: give at least one video")
    if crop is not None:
        crop.check(width, height)
        # as large as the panel is wide, never wider, and at most twice the frame's height
        zoom = max(1, min(width // crop.w, (2 * height) // crop.h))
    else:
        zoom = 1
    scale = 1 if width < 360 else 2 if width < 1000 else 3
    return Layout(panels, width, height, lines, scale, crop, zoom)


def _box(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, t: int) -> None:
    """A rectangle `t` pixels thick just outside [x0, x1) x [y0, y1), clipped to `img`."""
    H, W = img.shape[:2]
    xa, ya, xb, yb = max(0, x0 - t), max(0, y0 - t), min(W, x1 + t), min(H, y1 + t)
    img[ya:max(ya, y0), xa:xb] = BOX
    img[min(yb, y1):yb, xa:xb] = BOX
    img[ya:yb, xa:max(xa, x0)] = BOX
    img[ya:yb, min(xb, x1):xb] = BOX


def compose(lay: Layout, frames: list[np.ndarray], labels: list[list[str]]) -> np.ndarray:
    """The sheet (sheet_h, sheet_w, 3) uint8 of `frames` ((height, width, 3) uint8 each) and their
    label lines (at most `lay.lines` each)."""
    if len(frames) != lay.panels or len(labels) != lay.panels:
        raise ValueError(f"{lay.panels} panels, {len(frames)} frames, {len(labels)} labels")
    img = np.empty((lay.sheet_h, lay.sheet_w, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    t = max(1, min(lay.width, lay.height) // 200)            # box line thickness
    for i, (frame, lines) in enumerate(zip(frames, labels)):
        if frame.shape != (lay.height, lay.width, 3):
            raise ValueError(f"panel {i}: frame {frame.shape}, layout {(lay.height, lay.width, 3)}")
        x = lay.panel_x(i)
        for k, line in enumerate(lines[: lay.lines]):
            y = GAP + lay.scale + 1 + k * CELL_H * lay.scale
            draw_text(img, x, y, fit_text(line, lay.width, lay.scale), lay.scale, TITLE if k == 0 else DIM)
        fy = lay.frame_y
        img[fy:fy + lay.height, x:x + lay.width] = frame
        if lay.crop is not None:
            c = lay.crop
            patch = frame[c.y:c.y + c.h, c.x:c.x + c.w]
            zoomed = patch.repeat(lay.zoom, 0).repeat(lay.zoom, 1)
            ix = x + (lay.width - lay.inset_w) // 2
            img[lay.inset_y:lay.inset_y + lay.inset_h, ix:ix + lay.inset_w] = zoomed
            _box(img[fy:fy + lay.height, x:x + lay.width], c.x, c.y, c.x + c.w, c.y + c.h, t)
            _box(img, ix, lay.inset_y, ix + lay.inset_w, lay.inset_y + lay.inset_h, t)
    return img


def encode_png(img: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 RGB image as PNG bytes (FFmpeg's png encoder, through PyAV)."""
    import av

    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = img.shape[1], img.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def write_png(path: Path, img: np.ndarray) -> None:
    """Write `img` as a PNG at `path` through a temporary file beside it, renamed on success."""
    data = encode_png(img)
    tmp = path.with_name(f".{path.name}.vir-{os.getpid()}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputRefused(f"can't write {path}: {e.strerror or e}") from None
