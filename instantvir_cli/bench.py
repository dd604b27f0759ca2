"""`vir bench`: timings of the restore path and quality of a restored video, as dataclasses.

Speed: a synthetic clip of the requested size is generated, degraded with the task's operator,
and restored through the same `restore_video` path users run, with per-stage times; a plain
decode + encode of the clean clip with the same encoder settings is the I/O baseline.
Quality: PSNR / SSIM / flicker of a test video against a reference, streamed block by block.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from instantvir_cli.degrade import DegradeOptions, degrade_video
from instantvir_cli.errors import UsageError
from instantvir_cli.metrics import QualityMeter
from instantvir_cli.paths import check_input_path
from instantvir_cli.restore import RestoreOptions, restore_video
from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter, probe, write_synthetic_clip


@dataclass
class SpeedReport:
    """End-to-end timing of one restore run at a given size (JSON-ready via `as_dict`)."""

    task: str
    model: str
    device: str
    width: int
    height: int
    frames: int
    e2e_fps: float
    seconds: float
    first_frame_s: float | None
    stages: dict[str, float]
    passthrough_fps: float
    threads: int = field(default_factory=torch.get_num_threads)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class QualityReport:
    psnr: float
    ssim: float
    flicker: float
    frames: int
    reference: str
    test: str

    def as_dict(self) -> dict:
        return asdict(self)


def parse_resolution(text: str) -> tuple[int, int]:
    """'832x480' -> (832, 480)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"resolution must look like 832x480, got {text!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise UsageError(f"resolution {w}x{h} is out of range (16..8192 per side)")
    return w, h


def passthrough_fps(path: Path, encode: EncodeOptions, workdir: Path) -> float:
    """Frames per second of a plain decode + encode of `path` with the same encoder settings."""
    info = probe(path)
    t0 = time.perf_counter()
    frames = 0
    with VideoReader(path) as reader, VideoWriter(
        workdir / f"passthrough{path.suffix}", info.width, info.height, source=reader, options=encode, overwrite=True
    ) as writer:
        for block in reader:
            writer.write(block.x, block.pts)
            frames += block.x.shape[2]
    return frames / (time.perf_counter() - t0)


def bench_speed(
    width: int,
    height: int,
    frames: int,
    task: str,
    opts: RestoreOptions,
    encode: EncodeOptions,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> SpeedReport:
    """Time `vir restore` end to end on a generated `width` x `height` clip of `frames` frames.

    width/height are the OUTPUT size (for sr4x the input is 4x smaller).
    """
    if task == "sr4x" and (width % 4 or height % 4):
        raise UsageError(f"sr4x needs a resolution divisible by 4, got {width}x{height}")
    with tempfile.TemporaryDirectory(prefix="vir-bench-") as tmp:
        work = Path(tmp)
        clean = work / "clean.mp4"
        write_synthetic_clip(clean, width, height, frames)
        degraded = work / "degraded.mp4"
        degrade_video(clean, degraded, DegradeOptions(task=task), EncodeOptions(crf=12))
        report = restore_video(
            degraded, work / "restored.mp4", RestoreOptions(**{**asdict(opts), "task": task}), encode,
            on_progress=on_progress,
        )
        base = passthrough_fps(clean, encode, work)
    return SpeedReport(
        task=task,
        model=opts.model,
        device=opts.device,
        width=width,
        height=height,
        frames=report.frames,
        e2e_fps=report.fps,
        seconds=report.seconds,
        first_frame_s=report.first_frame_s,
        stages=report.stages.as_dict(),
        passthrough_fps=base,
    )


@torch.inference_mode()
def bench_quality(
    reference: Path, test: Path, on_progress: Callable[[int, int | None], None] | None = None
) -> QualityReport:
    """PSNR / SSIM / flicker of `test` against `reference`, frame by frame, streamed."""
    for p in (reference, test):
        check_input_path(p)
    ref_info, test_info = probe(reference), probe(test)
    if (ref_info.width, ref_info.height) != (test_info.width, test_info.height):
        raise UsageError(
            f"sizes differ: reference {ref_info.width}x{ref_info.height}, test {test_info.width}x{test_info.height}"
        )
    meter = QualityMeter()
    done = 0
    with VideoReader(reference) as ref_reader, VideoReader(test) as test_reader:
        ref_iter, test_iter = _frames(ref_reader), _frames(test_reader)
        while True:
            a, b = next(ref_iter, None), next(test_iter, None)
            if a is None or b is None:
                if (a is None) != (b is None):
                    raise UsageError(f"frame counts differ: the {'test' if b is None else 'reference'} ends at frame {done}")
                break
            meter.update(a, b)
            done += 1
            if on_progress and done % 8 == 0:
                on_progress(done, ref_info.frames)
    r = meter.result()
    return QualityReport(psnr=r.psnr, ssim=r.ssim, flicker=r.flicker, frames=r.frames,
                         reference=str(reference), test=str(test))


def _frames(reader: VideoReader):
    """Yield single frames (1, C, 1, H, W) from a reader's blocks (block sizes may differ)."""
    for block in reader:
        for t in range(block.x.shape[2]):
            yield block.x[:, :, t : t + 1]
