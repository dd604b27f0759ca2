"""VMAF of a video against its reference, with the ffmpeg that imageio-ffmpeg ships (libvmaf).

    if vmaf_available():
        score = vmaf(Path("clean.mp4"), Path("restored.mp4"))    # mean over frames, 0..100

The model is libvmaf's built-in vmaf_v0.6.1; frames are paired in order from the first (both
timestamps reset to 0), and only the first `frames` are scored when given. The ffmpeg binary is
a dependency's, so VMAF is optional: without libvmaf `vmaf_available()` is False.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

MODEL = "vmaf_v0.6.1"


def ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


@functools.lru_cache(maxsize=1)
def vmaf_available() -> bool:
    """Whether the bundled ffmpeg has the libvmaf filter."""
    exe = ffmpeg_exe()
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[1:2] == ["libvmaf"] for line in out.splitlines() if line.strip())


def vmaf(reference: Path, test: Path, frames: int | None = None, threads: int | None = None) -> float:
    """Mean VMAF of `test` against `reference` (same frame size); RuntimeError when ffmpeg fails."""
    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("no ffmpeg binary (imageio-ffmpeg)")
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="vir-vmaf-") as tmp:
        log = Path(tmp) / "vmaf.json"
        graph = (f"[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];"
                 f"[d][r]libvmaf=model=version={MODEL}:log_fmt=json:log_path={log}:n_threads={threads}")
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(test), "-i", str(reference),
               "-lavfi", graph]
        if frames is not None:
            cmd += ["-frames:v", str(frames)]
        run = subprocess.run(cmd + ["-f", "null", "-"], capture_output=True, text=True)
        if run.returncode != 0 or not log.is_file():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"ffmpeg's libvmaf failed: {last}")
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])
