"""Pack a recipe's training and validation data for a machine without PyAV (scripts/device_train.sh).

    python scripts/pack_data.py .device-pack                               # configs/default.toml's data, 38 MiB
    python scripts/pack_data.py /tmp/pack --config configs/device-tiny.toml --max-mib 12   # the tests' tiny pack

Reads [data] of the config (its `pack` key is ignored): the footage clips and the catalogue's
photographs, fetched into the cache by the project's downloader, and the scikit-image photographs.
Training clips must be of the catalogue's `train` split and validation clips of `train` or `val`;
a `test` clip or a file of data.paths is refused, and so is a photograph that is not `train`.
Catalogue photographs are stored at most 512 px on the long side (instantvir_cli.photos.PACK_SIDE). Writes the folder's manifest.json and arrays, deterministically
(instantvir_cli.distill.pack, .packing). The default budget leaves room for the tracked tree
(24 MiB, mostly the shipped weights) within the 64 MiB the device tool carries; at most 60 MiB.

Exit codes: 0 written, 3 a clip could not be fetched, 9 the config or the budget does not allow it.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instantvir_cli.errors import VirError  # noqa: E402

TRAVEL_MIB = 64                # what the device tool carries: the tree and the carried paths together


def tracked_mib() -> float | None:
    """MiB of the files git tracks in this checkout (what travels besides the pack), or None."""
    try:
        r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    files = [ROOT / f.decode() for f in r.stdout.split(b"\0") if f]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def main(argv: list[str]) -> int:
    from instantvir_cli.config import load_config
    from instantvir_cli.distill.data import find_sources
    from instantvir_cli.distill.pack import MAX_BYTES
    from instantvir_cli.distill.packing import build_pack, recipe_clips
    from instantvir_cli.footage import CLIPS

    ap = argparse.ArgumentParser(prog="scripts/pack_data.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path, help="the pack folder (e.g. .device-pack, ignored by git)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "default.toml", help="the recipe whose [data] is packed")
    ap.add_argument("--max-mib", type=float, default=38.0, help="size budget in MiB (default 38, at most 60)")
    args = ap.parse_args(argv)
    if not 0 < args.max_mib <= MAX_BYTES / 2**20:
        raise SystemExit(f"error: --max-mib must be in (0, {MAX_BYTES >> 20}], got {args.max_mib}")
    data = dataclasses.replace(load_config(args.config).data, pack="")
    recipe_clips(data)                                  # splits checked before anything is fetched

    def describe(name: str) -> dict:
        c = CLIPS[name]
        return {"source": str(c.source), "licence": c.licence, "split": c.split}

    manifest = build_pack(args.dest, data, find_sources(data), int(args.max_mib * 2**20), describe)
    total = sum(p.stat().st_size for p in args.dest.iterdir() if p.is_file()) / 2**20
    for e in manifest["entries"]:
        extra = f", scale {e['scale']} of {e['original_size'][0]}x{e['original_size'][1]}" if "scale" in e else ""
        print(f"{e['kind']:5} {e['name']:22} {'x'.join(map(str, e['shape'])):>18}{extra}")
    tree = tracked_mib()
    print(f"{args.dest}: {total:.1f} MiB" + (f"; with the tracked tree ({tree:.1f} MiB) {total + tree:.1f} MiB of the "
                                              f"{TRAVEL_MIB} MiB the device tool carries" if tree is not None else ""))
    if tree is not None and total + tree > TRAVEL_MIB:
        print(f"warning: over {TRAVEL_MIB} MiB: the device tool will refuse the tree; pack with a smaller --max-mib",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except VirError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
