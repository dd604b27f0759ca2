"""`vir compare`: the clean video and its restorations side by side, scored, as a picture or a video.

    report = compare([clean, classical, learned], Path("sheet.png"), CompareOptions(crop=Crop(...)))
    report = compare([clean, classical, learned], Path("side.mp4"), CompareOptions(), encode)

The first input is the reference (the clean video) unless `reference` is False. Every panel is
shown at the first input's size; a panel of another size (the sr4x measurement, say) is scaled
to it by nearest neighbour and not scored. A `.png` output is a sheet of one frame (`frame`,
by default the middle one) with PSNR / SSIM per panel, and for a crop those of the crop too. Any
other output is a video of every frame side by side, each panel labelled with the frame's PSNR;
PSNR / SSIM / flicker over all frames (and VMAF, where ffmpeg has libvmaf) go to the report.
Frames are paired by their order in each file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from instantvir_cli.errors import UsageError
from instantvir_cli.metrics import QualityMeter, psnr_frames, ssim_frames, SSIM_WIN
from instantvir_cli.paths import check_input_path, check_output_path
from instantvir_cli.sheet import Crop, compose, layout, write_png
from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter, probe

IMAGE_SUFFIXES = (".png",)

ProgressFn = Callable[[int, "int | None"], None]
WarnFn = Callable[[str], None]


@dataclass(frozen=True)
class CompareOptions:
    frame: int | None = None            # the sheet's frame (None: the middle of the shortest input)
    crop: Crop | None = None            # a region of the first input's frame, zoomed below each panel
    reference: bool = True              # the first input is the clean reference (scores against it)
    labels: tuple[str, ...] | None = None  # one per input (None: the file names)
    vmaf: bool = True                   # video form: VMAF with ffmpeg's libvmaf, where it has it


@dataclass
class PanelScore:
    """One panel: what it shows and how it scores against the reference (None: not scored)."""

    label: str
    path: Path
    size: tuple[int, int]
    role: str                           # reference | scored | unscored
    psnr: float | None = None
    ssim: float | None = None
    crop_psnr: float | None = None      # sheet with a crop
    crop_ssim: float | None = None
    flicker: float | None = None        # video form
    vmaf: float | None = None           # video form, with libvmaf
    note: str = ""


@dataclass
class CompareReport:
    output: Path
    kind: str                           # sheet | video
    size: tuple[int, int]               # the output's width, height
    panels: list[PanelScore]
    frame: int | None = None            # the sheet's frame
    frames: int = 0                     # frames shown
    notes: list[str] = field(default_factory=list)


def _uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, 1, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded."""
    v = ((x[0, :, 0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 0).contiguous().numpy()


def _shown(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """A frame at the sheet's panel size (nearest neighbour when it is another size)."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x[:, :, 0], size=(height, width), mode="nearest-exact").unsqueeze(2)


def _frames(reader: VideoReader) -> Iterator[tuple[torch.Tensor, int]]:
    """Single frames (1, 3, 1, H, W) and their pts, in order."""
    for block in reader:
        for t in range(block.x.shape[2]):
            yield block.x[:, :, t:t + 1], block.pts[t]


class _Panels:
    """The inputs, probed and checked: labels, sizes, which are scored."""

    def __init__(self, inputs: list[Path], opts: CompareOptions):
        if not inputs:
            raise UsageError("nothing to compare: give the clean video and at least one restoration")
        if opts.reference and len(inputs) < 2:
            raise UsageError("give the clean video and at least one restoration (or --no-reference)")
        if opts.labels is not None and len(opts.labels) != len(inputs):
            raise UsageError(f"{len(opts.labels)} labels for {len(inputs)} videos: give one --label per video")
        for p in inputs:
            check_input_path(p)
        self.paths = inputs
        self.infos = [probe(p) for p in inputs]
        self.width, self.height = self.infos[0].width, self.infos[0].height
        labels = opts.labels or tuple(p.name for p in inputs)
        self.scores: list[PanelScore] = []
        for i, (p, info, label) in enumerate(zip(inputs, self.infos, labels)):
            size = (info.width, info.height)
            if i == 0 and opts.reference:
                role, note = "reference", "reference"
            elif size != (self.width, self.height):
                role = "unscored"
                shown = "not scored" if opts.reference else f"shown at {self.width}x{self.height}"
                note = f"{size[0]}x{size[1]}, {shown}"
            else:
                role, note = ("scored", "") if opts.reference else ("unscored", "")
            self.scores.append(PanelScore(label, p, size, role, note=note))
        if opts.crop is not None:
            opts.crop.check(self.width, self.height)

    def shortest(self) -> int | None:
        counts = [i.frames for i in self.infos]
        return None if any(c is None for c in counts) else min(counts)


def _fmt(psnr: float | None, ssim: float | None) -> str:
    if psnr is None:
        return ""
    text = f"PSNR {psnr:.2f} dB"
    return text + (f"  SSIM {ssim:.4f}" if ssim is not None and not math.isnan(ssim) else "")


def _read_frame(path: Path, index: int) -> torch.Tensor:
    """Frame `index` (0-based, in decoding order) of `path`."""
    count = 0
    with VideoReader(path, block_size=8) as reader:
        for x, _ in _frames(reader):
            if count == index:
                return x.clone()
            count += 1
    raise UsageError(f"--frame {index} is past the end of {path} ({count} frames)")


def _crop(x: torch.Tensor, c: Crop) -> torch.Tensor:
    return x[..., c.y:c.y + c.h, c.x:c.x + c.w]


@torch.inference_mode()
def compare_sheet(inputs: list[Path], output: Path, opts: CompareOptions = CompareOptions(),
                  overwrite: bool = False) -> CompareReport:
    """One frame of every input side by side as a PNG sheet, scored against the first."""
    check_output_path(output, list(inputs), overwrite)
    panels = _Panels(inputs, opts)
    shortest = panels.shortest()
    frame = opts.frame if opts.frame is not None else (shortest // 2 if shortest else 0)
    if frame < 0:
        raise UsageError(f"--frame must be >= 0, got {frame}")
    xs = [_read_frame(p, frame) for p in inputs]
    ref = xs[0]
    for score, x in zip(panels.scores, xs):
        if score.role != "scored":
            continue
        score.psnr = float(psnr_frames(ref, x)[0])
        score.ssim = float(ssim_frames(ref, x)[0])
        if opts.crop is not None:
            a, b = _crop(ref, opts.crop), _crop(x, opts.crop)
            score.crop_psnr = float(psnr_frames(a, b)[0])
            if min(opts.crop.w, opts.crop.h) >= SSIM_WIN:
                score.crop_ssim = float(ssim_frames(a, b)[0])
    lines = 3 if opts.crop is not None else 2
    lay = layout(len(xs), panels.width, panels.height, opts.crop, lines=lines)
    labels = []
    for s in panels.scores:
        text = [s.label, _fmt(s.psnr, s.ssim) or s.note or f"frame {frame}"]
        if opts.crop is not None:
            text.append(f"crop {_fmt(s.crop_psnr, s.crop_ssim)}" if s.crop_psnr is not None else f"crop {opts.crop}")
        labels.append(text)
    img = compose(lay, [_uint8(_shown(x, panels.width, panels.height)) for x in xs], labels)
    write_png(output, img)
    return CompareReport(output=output, kind="sheet", size=(lay.sheet_w, lay.sheet_h), panels=panels.scores,
                         frame=frame, frames=1)


@torch.inference_mode()
def compare_video(inputs: list[Path], output: Path, opts: CompareOptions = CompareOptions(),
                  encode: EncodeOptions | None = None, overwrite: bool = False,
                  on_progress: ProgressFn | None = None, warn: WarnFn | None = None) -> CompareReport:
    """Every frame of the inputs side by side as a video, scored over all frames against the first."""
    from instantvir_cli.vmaf import vmaf_score, vmaf_unavailable

    check_output_path(output, list(inputs), overwrite)
    panels = _Panels(inputs, opts)
    lay = layout(len(inputs), panels.width, panels.height, opts.crop, lines=2)
    meters = {i: QualityMeter() for i, s in enumerate(panels.scores) if s.role == "scored"}
    readers = [VideoReader(p, block_size=8) for p in inputs]
    frames = 0
    try:
        streams = [_frames(r) for r in readers]
        total = panels.shortest()
        encode = encode or EncodeOptions()
        with VideoWriter(output, lay.sheet_w, lay.sheet_h, source=readers[0], options=encode,
                         overwrite=overwrite, warn=warn) as writer:
            while True:
                items = [next(s, None) for s in streams]
                if any(item is None for item in items):
                    ended = [p.name for p, item in zip(inputs, items) if item is None]
                    if len(ended) != len(items) and warn:
                        warn(f"{', '.join(ended)} ended after {frames} frames: the video stops there")
                    break
                xs = [x for x, _ in items]
                ref, pts = xs[0], items[0][1]
                labels = []
                for i, (s, x) in enumerate(zip(panels.scores, xs)):
                    line = s.note or ""
                    if i in meters:
                        meters[i].update(ref, x)
                        line = f"PSNR {float(psnr_frames(ref, x)[0]):.2f} dB"
                    labels.append([s.label, line])
                img = compose(lay, [_uint8(_shown(x, panels.width, panels.height)) for x in xs], labels)
                sheet = torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1)[None, :, None]
                writer.write(sheet, [pts])
                frames += 1
                if on_progress and frames % 4 == 0:
                    on_progress(frames, total)
    finally:
        for r in readers:
            r.close()
    notes = []
    for i, meter in meters.items():
        q = meter.result()
        s = panels.scores[i]
        s.psnr, s.ssim, s.flicker = q.psnr, q.ssim, q.flicker
    if meters and opts.vmaf:
        if vmaf_unavailable() is None:
            for i in meters:
                try:
                    panels.scores[i].vmaf = vmaf_score(inputs[0], inputs[i], frames=frames)
                except RuntimeError as e:
                    notes.append(f"VMAF of {inputs[i].name}: {e}")
        else:
            notes.append("VMAF: this ffmpeg has no libvmaf")
    return CompareReport(output=output, kind="video", size=(lay.sheet_w, lay.sheet_h), panels=panels.scores,
                         frames=frames, notes=notes)


def compare(inputs: list[Path], output: Path, opts: CompareOptions = CompareOptions(),
            encode: EncodeOptions | None = None, overwrite: bool = False,
            on_progress: ProgressFn | None = None, warn: WarnFn | None = None) -> CompareReport:
    """A sheet for a `.png` output, else a side-by-side video."""
    if output.suffix.lower() in IMAGE_SUFFIXES:
        return compare_sheet(inputs, output, opts, overwrite)
    if opts.frame is not None:
        raise UsageError("--frame picks the frame of a sheet: give a .png output, or leave --frame out")
    return compare_video(inputs, output, opts, encode, overwrite, on_progress, warn)
