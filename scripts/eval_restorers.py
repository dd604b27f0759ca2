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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["classical"], help="classical, instantvir (default checkpoint) "
                    "or instantvir:PATH")
    ap.add_argument("--tasks", nargs="+", default=["inpaint", "deblur", "sr4x"])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="vir-eval-") as tmp:
        work = Path(tmp)
        for clip in args.clips:
            for task in args.tasks:
                degraded = work / f"{clip.stem}-{task}.mkv"
                run("degrade", str(clip), str(degraded), "--task", task, "--overwrite", "--no-progress")
                source = json.loads(Path(str(degraded) + ".vir.json").read_text())["source"]
                if source["crop"][2:] != [source["width"], source["height"]]:
                    raise SystemExit(f"{clip}: sr4x cropped it to {source['crop'][2:]}; give clips divisible by 4")
                reference = clip
                for model in args.models:
                    name, _, ckpt = model.partition(":")
                    restored = work / f"{clip.stem}-{task}-{name}.mkv"
                    extra = ["--checkpoint", ckpt] if ckpt else []
                    run("restore", str(degraded), "-o", str(restored), "--model", name, "--lossless", "--overwrite",
                        "--no-progress", *extra)
                    q = json.loads(run("bench", "--quality", str(reference), str(restored), "--json"))
                    rows.append({"clip": clip.name, "task": task, "model": model, **{k: q[k] for k in
                                 ("psnr", "ssim", "flicker", "frames")}})
                    print(f"{clip.name:20s} {task:8s} {model:24s} PSNR {q['psnr']:6.2f}  SSIM {q['ssim']:.4f}  "
                          f"flicker {q['flicker']:.3f}  ({q['frames']} frames)", file=sys.stderr, flush=True)
    print("| clip | task | model | PSNR dB | SSIM | flicker |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['task']} | {r['model']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['flicker']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
