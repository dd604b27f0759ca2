"""VMAF of a test video against its reference, through the ffmpeg binary imageio-ffmpeg bundles.

That binary carries libvmaf with its built-in model `vmaf_v0.6.1`, so no model file and no
network are needed. Both videos are converted to 8-bit 4:2:0 (the model's training format) and
their timestamps reset, so frame i is compared with frame i. Where the binary has no libvmaf,
`vmaf_score` returns None and `vmaf_unavailable` says why, in one line.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

MODEL = "vmaf_v0.6.1"


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def vmaf_unavailable() -> str | None:
    """None when this ffmpeg can compute VMAF, else the reason."""
    try:
        out = subprocess.run([_ffmpeg(), "-hide_banner", "-filters"], capture_output=True, text=True, timeout=60)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
        return f"no usable ffmpeg for VMAF ({err})"
    if " libvmaf " not in out.stdout:
        return "this ffmpeg has no libvmaf filter (imageio-ffmpeg >= 0.8.1 bundles one)"
    return None


def vmaf_score(reference: Path, test: Path, threads: int = 2, frames: int | None = None) -> float | None:
    """Mean VMAF (model vmaf_v0.6.1, 0-100) of `test` against `reference` over all frames (or the
    first `frames`), or None when unavailable. Raises RuntimeError with ffmpeg's last line if
    ffmpeg fails on the files."""
    if vmaf_unavailable():
        return None
    with tempfile.TemporaryDirectory(prefix="vir-vmaf-") as tmp:
        log = Path(tmp) / "vmaf.json"
        # frames paired by index (pts = N on one time base), as PSNR and SSIM pair them: by
        # timestamp, a Matroska copy's millisecond times against an MP4's exact ones paired some
        # frames with their neighbours
        graph = ("[0:v]format=yuv420p,settb=AVTB,setpts=N[dist];[1:v]format=yuv420p,settb=AVTB,setpts=N[ref];"
                 f"[dist][ref]libvmaf=model=version={MODEL}:log_fmt=json:log_path={log}:n_threads={max(1, threads)}")
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(test), "-i", str(reference),
               "-lavfi", graph, "-an", *(["-frames:v", str(frames)] if frames else []), "-f", "null", "-"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0 or not log.is_file():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"ffmpeg could not compute VMAF: {last}")
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])


__all__ = ["MODEL", "vmaf_score", "vmaf_unavailable"]
