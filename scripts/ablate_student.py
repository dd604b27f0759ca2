"""The student ablation of the README: one task, the default recipe with one objective changed.

Every variant starts from the same VAE and teacher (a finished run folder, e.g. runs/default),
trains the same number of STUDENT steps, and is scored by the trainer's validation on the
validation clip (carphone_pristine), through `vir restore`'s path, with and without the
data-consistency step (`psnr` vs `raw_psnr`).

    python scripts/ablate_student.py --base runs/default --task sr4x --student-steps 300 \
        --out runs/ablation                        (prints a Markdown table, writes ablation.json)
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from instantvir_cli.config import from_dict, load_config, to_dict, to_toml, DistillConfig
from instantvir_cli.distill.trainer import run_distill

# name -> (student overrides, teacher overrides), each a change to configs/default.toml's student
# ("GT" is the paired pixel loss with its temporal term); DMD variants step the student every
# 2nd iteration (the critic every one)
DMD = {"dmd_weight": 1.0, "student_every": 2}
NO_GT = {"gt_weight": 0.0, "temporal_weight": 0.0}
VARIANTS = {
    "measurement only": ({**NO_GT}, {}),
    "measurement + DMD (prior in the student's VAE space)": ({**DMD, **NO_GT}, {}),
    "measurement + DMD, prior in the teacher's space E_T(D_S(z))": ({**DMD, **NO_GT},
                                                                    {"vae": "<base>/vae.safetensors"}),
    "measurement + DMD + GT": ({**DMD}, {}),
    "measurement + GT (the default)": ({}, {}),
    "measurement + GT, VAE frozen": ({"train_vae": "none"}, {}),
    "measurement + GT, plain decoding from the operator's init": ({"init": "operator", "inits": {}, "residual": False,
                                                                  "zero_head": False}, {}),
    "measurement + GT, delta decoding x0 + D(z_hat - z_in) - D(0) (one stream)": ({"delta": True}, {}),
    # training data and optimizer, beside the objective (a third entry overrides [data])
    "measurement + GT, crops of 160 instead of 96": ({}, {}, {"crop": 160}),
    "measurement + GT, learning rate 2e-3 instead of 1e-3": ({"lr": 2e-3}, {}),
    "measurement + GT, 14 photographs instead of 8, half the windows": ({}, {}, {"image_share": 0.5, "images": [
        "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "immunohistochemistry", "camera", "grass",
        "hubble_deep_field", "retina", "gravel", "brick", "moon", "coins"]}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/default.toml"))
    ap.add_argument("--base", type=Path, required=True, help="run folder holding vae.safetensors and teacher.safetensors")
    ap.add_argument("--task", default="sr4x")
    ap.add_argument("--student-steps", type=int, default=300)
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = ap.parse_args()

    base = to_dict(load_config(args.config))
    results = {}
    summary = args.out / "ablation.json"
    if summary.is_file():
        results = json.loads(summary.read_text())
    for i, (name, (student, teacher, *data)) in enumerate(VARIANTS.items()):
        if args.only and name not in args.only:
            continue
        run = args.out / f"v{i}"
        run.mkdir(parents=True, exist_ok=True)
        for f in ("vae.safetensors", "teacher.safetensors"):
            if not (run / f).is_file():
                shutil.copy(args.base / f, run / f)
        d = json.loads(json.dumps(base))
        every = student.get("student_every", 1) if student.get("dmd_weight", 0) > 0 else 1
        d["run"].update({"stages": ["student"], "name": f"ablation-{i}", "val_every": 0, "checkpoint_every": 0})
        d["student"].update({**student, "tasks": [args.task], "steps": args.student_steps * every})
        d["teacher"].update({k: v.replace("<base>", str(args.base)) for k, v in teacher.items()})
        d["data"].update(data[0] if data else {})
        cfg = from_dict(DistillConfig, d)
        (run / "ablation.toml").write_text(to_toml(cfg))
        res = run_distill(cfg, out=run, resume=True)
        results[name] = res.validation.get(f"student_{args.task}", {})
        summary.write_text(json.dumps(results, indent=1))
        print(name, {k: round(v, 3) for k, v in results[name].items() if isinstance(v, float)}, flush=True)

    print(f"\n| {args.task}, {args.student_steps} student steps | PSNR | SSIM | flicker | PSNR without DC |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if r:
            print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['flicker']:.3f} | {r.get('raw_psnr', float('nan')):.2f} |")
    if results:
        r = next(iter(v for v in results.values() if v))
        print(f"| classical | {r['classical_psnr']:.2f} | {r['classical_ssim']:.4f} | | |")
        print(f"| initial estimate | {r['init_psnr']:.2f} | | | |")


if __name__ == "__main__":
    main()
