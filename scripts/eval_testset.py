"""The test set's quality table: the default model beside the classical restorer, per clip and task.

For every clip of split "test" in instantvir_cli.footage (or --clips NAMES), a fixed window is
cut: the first --frames frames, centre-cropped to at most --max-size and to sides divisible by 4
(even offsets), re-timed to consecutive frames at the nominal rate and re-encoded losslessly
(x264 -qp 0, yuv420p, MP4, no audio) with imageio-ffmpeg's ffmpeg. That window is the clean
reference. Then, per task, as a user would run it (see scripts/eval_restorers.py): `vir degrade` (lossless, sidecar) -> `vir restore --lossless` with
`--model classical` and with no --model flag (the shipped default) -> `vir bench --quality --json`.

Writes JSON (the command, commit, CPU, each clip's window, one row per clip/task/model) and a
Markdown table; prints both, with the exact command.

    python scripts/eval_testset.py --out ~/vir-runs/testset-eval/testset.json
    python scripts/eval_testset.py --clips earth tree --tasks sr4x --frames 24 --out /tmp/t.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from eval_restorers import score_clip

from instantvir_cli.footage import CLIPS, fetch_clips, split_names
from instantvir_cli.video import probe

MODELS = ("classical", "default")


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def window_geometry(width: int, height: int, max_w: int, max_h: int) -> tuple[int, int, int, int]:
    """(w, h, x, y): the centred crop of at most max_w x max_h with sides divisible by 4, even offsets."""
    w, h = min(width, max_w) // 4 * 4, min(height, max_h) // 4 * 4
    return w, h, (width - w) // 2 // 2 * 2, (height - h) // 2 // 2 * 2


def cut_window(src: Path, out: Path, frames: int, max_w: int, max_h: int) -> dict:
    """Write the clean window of `src` to `out` (an .mp4: lossless x264, yuv420p); return what it is."""
    info = probe(src)
    w, h, x, y = window_geometry(info.width, info.height, max_w, max_h)
    # frames re-timed 0, 1, 2... at the nominal rate (settb + setpts=N), in MP4: a source with
    # timestamp gaps or misdeclared reordering (box, cup) then gives a clean window, where
    # Matroska's millisecond times made two of its frames collide
    rate = info.fps
    cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src),
           "-map", "0:v:0", "-vf", f"crop={w}:{h}:{x}:{y},settb={rate.denominator}/{rate.numerator},setpts=N",
           "-frames:v", str(frames), "-fps_mode", "passthrough",
           "-c:v", "libx264", "-qp", "0", "-preset", "medium", "-pix_fmt", "yuv420p", "-an", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ffmpeg could not cut {src.name}: {proc.stderr.strip()[-400:]}")
    got = probe(out)
    return {"source_size": [info.width, info.height], "source_frames": info.frames, "frames": got.frames,
            "crop": [w, h, x, y], "ffmpeg": shlex.join(["ffmpeg"] + cmd[1:])}


def cpu_model() -> str:
    """The CPU's model name and its widest vector ISA (these machines differ 2x between AVX2 and AVX-512)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', 'unknown')}, {isa}"


def git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=Path(__file__).parent).stdout.strip()
    return (proc.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def _scores(r: dict) -> str:
    text = f"{r['psnr']:.2f} / {r['ssim']:.4f} / {r['flicker']:.3f}"
    return text + (f" / {r['vmaf']:.1f}" if r.get("vmaf") is not None else "")


def markdown(rows: list[dict]) -> str:
    """| clip | task | classical PSNR / SSIM / flicker | default ... | dPSNR |, VMAF too where bench reports it."""
    by = {(r["clip"], r["task"], r["model"]): r for r in rows}
    vmaf = any(r.get("vmaf") is not None for r in rows)
    cols = "PSNR / SSIM / flicker" + (" / VMAF" if vmaf else "")
    lines = [f"| clip | task | classical {cols} | default {cols} | ΔPSNR |", "|---|---|---|---|---|"]
    for clip, task in dict.fromkeys((r["clip"], r["task"]) for r in rows):
        c, d = by.get((clip, task, "classical")), by.get((clip, task, "default"))
        if c and d:
            lines.append(f"| {clip} | {task} | {_scores(c)} | {_scores(d)} | {d['psnr'] - c['psnr']:+.2f} |")
    return "\n".join(lines)


def compact_table(rows: list[dict]) -> str:
    """The README's form: a row per clip, a column per task; each cell PSNR classical -> default
    (difference, losses in bold), the default's flicker as a multiple of the classical
    restorer's, and VMAF classical -> default where bench reports it."""
    by = {(r["clip"], r["task"], r["model"]): r for r in rows}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = ["| clip | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for clip in dict.fromkeys(r["clip"] for r in rows):
        cells = []
        for task in tasks:
            c, d = by.get((clip, task, "classical")), by.get((clip, task, "default"))
            if not (c and d):
                cells.append("")
                continue
            gain = d["psnr"] - c["psnr"]
            delta = f"{gain:+.2f}" if gain >= 0 else f"**{gain:+.2f}**"
            ratio = d["flicker"] / c["flicker"] if c["flicker"] > 0 else float("nan")
            cell = f"{c['psnr']:.2f} → {d['psnr']:.2f} ({delta}), ×{ratio:.2f}"
            if c.get("vmaf") is not None and d.get("vmaf") is not None:
                v = d["vmaf"] - c["vmaf"]
                cell += f", VMAF {c['vmaf']:.1f} → {d['vmaf']:.1f}" + (" (**lower**)" if v < 0 else "")
            cells.append(cell)
        lines.append(f"| {clip} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def losses(rows: list[dict]) -> list[str]:
    """Where the default is worse than classical: lower PSNR, higher flicker (or lower VMAF)."""
    by = {(r["clip"], r["task"], r["model"]): r for r in rows}
    out = []
    for (clip, task, model), d in by.items():
        c = by.get((clip, task, "classical"))
        if model != "default" or c is None:
            continue
        worse = []
        if d["psnr"] < c["psnr"]:
            worse.append(f"PSNR {d['psnr']:.2f} < {c['psnr']:.2f}")
        if d["flicker"] > c["flicker"]:
            worse.append(f"flicker {d['flicker']:.4f} > {c['flicker']:.4f}")
        if d.get("vmaf") is not None and c.get("vmaf") is not None and d["vmaf"] < c["vmaf"]:
            worse.append(f"VMAF {d['vmaf']:.1f} < {c['vmaf']:.1f}")
        if worse:
            out.append(f"{clip} {task}: " + ", ".join(worse))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=None, help="catalogue names (default: every clip of split test)")
    ap.add_argument("--tasks", nargs="+", default=["inpaint", "deblur", "sr4x"])
    ap.add_argument("--frames", type=int, default=48, help="window length (frames from the start)")
    ap.add_argument("--max-size", default="832x480", help="largest window, WxH (centre crop)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file; the Markdown table goes beside it (.md)")
    args = ap.parse_args()
    python = Path(sys.executable)
    python = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else Path(python.name)
    command = shlex.join([str(python), *sys.argv])
    max_w, max_h = (int(v) for v in args.max_size.lower().split("x"))
    names = args.clips or list(split_names("test"))
    held = [n for n in names if CLIPS.get(n) and CLIPS[n].split != "test"]
    if held:
        print(f"note: not test clips: {', '.join(held)}", file=sys.stderr)
    sources = fetch_clips(tuple(names))

    print(f"command: {command}", file=sys.stderr)
    report = {"command": command, "commit": git_commit(), "cpu": cpu_model(), "frames": args.frames,
              "max_size": [max_w, max_h], "windows": {}, "rows": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vir-testset-") as tmp:
        work = Path(tmp)
        for name in names:
            clean = work / f"{name}.mp4"
            window = cut_window(sources[name], clean, args.frames, max_w, max_h)
            report["windows"][name] = window
            w, h, x, y = window["crop"]
            print(f"{name}: frames 0-{window['frames'] - 1} of {window['source_frames']}, crop {w}x{h} at "
                  f"({x},{y}) of {window['source_size'][0]}x{window['source_size'][1]}", file=sys.stderr, flush=True)
            for task in args.tasks:
                report["rows"] += score_clip(clean, task, list(MODELS), work, label=name)
                args.out.write_text(json.dumps(report, indent=2))  # partial results survive an interrupt
            for f in work.glob(f"{name}*"):
                f.unlink()
    table = markdown(report["rows"])
    report["losses"] = losses(report["rows"])
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    print(f"command: {command}\ncommit: {report['commit']}\ncpu: {report['cpu']}\n")
    for name, window in report["windows"].items():
        w, h, x, y = window["crop"]
        print(f"window {name}: frames 0-{window['frames'] - 1}, crop {w}x{h}+{x}+{y} of "
              f"{window['source_size'][0]}x{window['source_size'][1]}")
    print()
    print(table)
    print("\nin the README's form:\n")
    print(compact_table(report["rows"]))
    print("\ndefault worse than classical:" if report["losses"] else "\ndefault never worse than classical")
    for line in report["losses"]:
        print(f"- {line}")


if __name__ == "__main__":
    main()
