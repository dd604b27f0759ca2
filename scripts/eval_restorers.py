"""Score restorers on real clips through the CLI, as a user would run them.

For each clip and task: `vir degrade` (lossless, sidecar) -> `vir restore --model M` (lossless
output, so the score is the restorer's, not the encoder's) -> `vir bench --quality` against the
clean clip. Prints a Markdown table and writes JSON.

    python scripts/eval_restorers.py --clips footage/bikes.mp4 footage/bigbuckbunny.mp4 \
        --models classical --tasks inpaint deblur sr4x --out runs/eval.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VIR = [sys.executable, "-m", "instantvir_cli", "--quiet"]


def run(*args: str) -> str:
    proc = subprocess.run([*VIR, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vir {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def score_clip(clip: Path, task: str, models: list[str], work: Path, label: str | None = None) -> list[dict]:
    """Degrade `clip` for `task`, restore it with each of `models` and score each against the clip.

    A model is `classical`, `instantvir`, `instantvir:CHECKPOINT`, or `default` (no --model flag:
    whatever `vir restore` runs by default). One row per model: clip (`label`, default the file
    name), task, model, and bench's psnr, ssim, flicker, frames (and any other score it reports).
    """
    label = label or clip.name
    degraded = work / f"{clip.stem}-{task}.mkv"
    run("degrade", str(clip), str(degraded), "--task", task, "--overwrite", "--no-progress")
    source = json.loads(Path(str(degraded) + ".vir.json").read_text())["source"]
    if source["crop"][2:] != [source["width"], source["height"]]:
        raise SystemExit(f"{clip}: sr4x cropped it to {source['crop'][2:]}; give clips divisible by 4")
    rows = []
    for model in models:
        name, _, ckpt = model.partition(":")
        restored = work / f"{clip.stem}-{task}-{name}.mkv"
        extra = (["--checkpoint", ckpt] if ckpt else []) + ([] if name == "default" else ["--model", name])
        run("restore", str(degraded), "-o", str(restored), "--lossless", "--overwrite", "--no-progress", *extra)
        q = json.loads(run("bench", "--quality", str(clip), str(restored), "--json"))
        scores = {k: v for k, v in q.items() if k not in ("reference", "test")}
        rows.append({"clip": label, "task": task, "model": model, **scores})
        print(f"{label:20s} {task:8s} {model:24s} PSNR {q['psnr']:6.2f}  SSIM {q['ssim']:.4f}  "
              f"flicker {q['flicker']:.3f}  ({q['frames']} frames)", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["classical"], help="classical, instantvir (default checkpoint), "
                    "instantvir:PATH, or default (no --model flag)")
    ap.add_argument("--tasks", nargs="+", default=["inpaint", "deblur", "sr4x"])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="vir-eval-") as tmp:
        for clip in args.clips:
            for task in args.tasks:
                rows += score_clip(clip, task, args.models, Path(tmp))
    print("| clip | task | model | PSNR dB | SSIM | flicker |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['task']} | {r['model']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['flicker']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
