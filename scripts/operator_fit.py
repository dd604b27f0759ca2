"""Does a student hold on operators it was not trained for? The learned model against the classical
restorer when the blur's sigma or size, the inpainting keep fraction or the sr kernel differ.

For each clip and operator: degrade losslessly with that operator, restore with both models
(lossless), score against the clean clip. A variant "holds" on a clip when the learned model's
PSNR beats the classical restorer's there. Prints a Markdown table and writes JSON; the ranges
in `instantvir_cli/fit.py` come from this table for the shipped default.

    python scripts/operator_fit.py --clips earth61.mp4 footage/carphone_pristine.mp4 --out runs/fit.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from instantvir_cli.bench import bench_quality
from instantvir_cli.degrade import DegradeOptions, degrade_video
from instantvir_cli.ops.options import OperatorOptions
from instantvir_cli.restore import RestoreOptions, restore_video
from instantvir_cli.video import EncodeOptions

NONE = OperatorOptions()
# (task, operator options, noise sigma_y)
VARIANTS: list[tuple[str, OperatorOptions, float]] = (
    [("deblur", OperatorOptions(blur_sigma=s), 0.0) for s in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)]
    + [("deblur", OperatorOptions(blur_size=k), 0.0) for k in (31, 15)]
    + [("inpaint", OperatorOptions(keep_fraction=f), 0.0) for f in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    + [("sr4x", OperatorOptions(sr_kernel=k), 0.0) for k in ("area", "bicubic")]
    + [(task, NONE, noise) for noise in (0.01, 0.05) for task in ("inpaint", "deblur", "sr4x")]
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    ap.add_argument("--checkpoint", type=Path, default=None, help="learned weights (default: the shipped model)")
    ap.add_argument("--only", nargs="+", type=int, default=None, help="run these VARIANTS (indices) only")
    args = ap.parse_args()
    lossless = EncodeOptions(lossless=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vir-fit-") as tmp:
        work = Path(tmp)
        for clip in args.clips:
            for i, (task, options, noise) in enumerate(VARIANTS):
                if args.only is not None and i not in args.only:
                    continue
                degraded = work / f"{clip.stem}-{i}.mkv"
                degrade_video(clip, degraded, DegradeOptions(task=task, operator=options, noise=noise), lossless,
                              overwrite=True)
                params = {**options.given(), **({"noise": noise} if noise else {})}
                row = {"clip": clip.name, "task": task, **params}
                for model in ("classical", "instantvir"):
                    restored = work / f"{clip.stem}-{i}-{model}.mkv"
                    opts = RestoreOptions(model=model, checkpoint=args.checkpoint, any_operator=True)
                    restore_video(degraded, restored, opts, lossless, overwrite=True)
                    q = bench_quality(clip, restored)
                    row[model] = {"psnr": q.psnr, "ssim": q.ssim, "flicker": q.flicker}
                row["gain_db"] = row["instantvir"]["psnr"] - row["classical"]["psnr"]
                rows.append(row)
                what = ", ".join(f"{k}={v}" for k, v in params.items())
                c, v = row["classical"], row["instantvir"]
                print(f"| {clip.name} | {task} | {what} | {c['psnr']:.2f} / {c['ssim']:.4f} | {v['psnr']:.2f} / "
                      f"{v['ssim']:.4f} | {row['gain_db']:+.2f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
