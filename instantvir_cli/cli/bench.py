"""`vir bench`: time the restore path at a given size, or measure a restored video's quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from instantvir_cli.cli import _encode as enc
from instantvir_cli.cli import _model as opt
from instantvir_cli.cli import _help, app
from instantvir_cli.cli._common import STATE, FrameProgress, handle_errors, info, out_console

EPILOG = """Examples:

  vir bench --resolution 832x480                (every task, the default models)

  vir bench --arch small-p4 --vae small --init fast --residual --delta

  vir bench --resolution 1280x720 --frames 48 --task deblur --json

  vir bench --quality clean.mp4 restored.mp4 --json
"""


@app.command(epilog=EPILOG)
def bench(
    resolution: Annotated[
        str, typer.Option("--resolution", "-r", metavar="WxH", help="Output frame size WxH to time.")
    ] = "832x480",
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, max=10000, help="Frames in the generated clip.")] = 48,
    task: Annotated[str, typer.Option("--task", "-t", metavar=_help.TASKS + "|all", help="The task to time.")] = "all",
    model: opt.Model = "instantvir",
    arch: Annotated[
        Optional[str],
        typer.Option("--arch", metavar="PRESET", help="Time RANDOM weights of this DiT preset (no checkpoint needed)."),
    ] = None,
    vae: Annotated[
        Optional[str], typer.Option("--vae", metavar="PRESET", help="... and of this VAE preset (with --arch).")
    ] = None,
    init: Annotated[
        Optional[str], typer.Option("--init", metavar="operator|classical|fast", show_default=False,
                                    help="instantvir: the initial estimate the student starts from (default: the "
                                    "checkpoint's; with --arch, operator).")
    ] = None,
    residual: Annotated[
        bool, typer.Option("--residual", help="... decoding x0 + D(z_hat) - D(z_in) (with --arch).")
    ] = False,
    delta: Annotated[
        bool, typer.Option("--delta", help="... decoding only the change, x0 + D(z_hat - z_in) - D(0): one "
                           "decoder stream (with --residual).")
    ] = False,
    compare: Annotated[
        Optional[list[str]],
        typer.Option("--compare", metavar="dps|wan-vae",
                     help="Also time: dps (iterative posterior sampling over the same architecture; "
                     "both sides in fp32, with their PSNR) | wan-vae (Wan2.1's VAE, needs diffusers). Repeatable."),
    ] = None,
    dps_steps: Annotated[int, typer.Option("--dps-steps", min=1, max=1000, help="Steps of DPS for --compare dps.")] = 50,
    checkpoint: opt.Checkpoint = None,
    block_frames: opt.BlockFrames = 12,
    precision: opt.Precision = "auto",
    quality: Annotated[
        Optional[tuple[Path, Path]],
        typer.Option("--quality", help="Measure PSNR/SSIM/flicker and VMAF (vmaf_v0.6.1) of TEST against REF "
                     "instead of timing.",
                     metavar="REF TEST", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    codec: enc.Codec = "libx264",
    crf: enc.Crf = 18,
    preset: enc.Preset = "medium",
    pix_fmt: enc.PixFmt = "yuv420p",
    encoder_opt: enc.Extra = None,
) -> None:
    """Time `vir restore` end to end and per stage, or score a restored video (--quality)."""
    from instantvir_cli.bench import bench_quality, bench_speed, describe_model, parse_resolution
    from instantvir_cli.decoding import DecodeSpec
    from instantvir_cli.errors import UsageError
    from instantvir_cli.ops import TASKS
    from instantvir_cli.restore import RestoreOptions

    with handle_errors("nothing was measured"):
        if quality is not None:
            ref, test = quality
            with FrameProgress("quality", None) as bar:
                q = bench_quality(ref, test, on_progress=bar)
            if as_json:
                print(json.dumps(q.as_dict(), indent=2))
            else:
                vmaf = f"VMAF {q.vmaf:.2f}" if q.vmaf is not None else f"VMAF n/a ({q.vmaf_note})"
                out_console.print(
                    f"PSNR {q.psnr:.2f} dB  SSIM {q.ssim:.4f}  flicker {q.flicker:.3f}  {vmaf}  ({q.frames} frames)"
                )
            return
        width, height = parse_resolution(resolution)
        compare = compare or []
        for c in compare:
            if c not in ("dps", "wan-vae"):
                raise UsageError(f"unknown --compare {c!r} (choose dps or wan-vae)")
        if (arch or vae) and model != "instantvir":
            raise UsageError("--arch/--vae time the instantvir model: drop --model classical")
        if init is not None and model != "instantvir":
            raise UsageError("--init is the learned model's initial estimate: the classical restorer has none")
        if (residual or delta) and not (arch or vae):
            raise UsageError("--residual/--delta describe random weights: add --arch (a checkpoint names its own)")
        try:
            spec = DecodeSpec(init=init or "operator", residual=residual, delta=delta)
        except ValueError as err:
            raise UsageError(f"--init/--residual/--delta: {err}") from None
        tasks = list(TASKS) if task == "all" else [task]
        if any(t not in TASKS for t in tasks):
            raise UsageError(f"unknown task {task!r} (choose one of: {', '.join(TASKS)}, all)")
        encode = enc.encode_options(codec, crf, preset, pix_fmt, False, True, encoder_opt)
        reports = []
        for t in tasks:
            opts = RestoreOptions(task=t, model=model, block_frames=block_frames, device=STATE.device,
                                  checkpoint=checkpoint, arch=arch, vae=vae, precision=precision, decode=spec,
                                  init=None if arch or vae else init)
            info(f"timing {t} ({describe_model(opts)}) at {width}x{height}, {frames} frames on {STATE.device}")
            with FrameProgress(f"bench {t}", frames) as bar:
                reports.append(bench_speed(width, height, frames, t, opts, encode, on_progress=bar,
                                           compare_with=tuple(compare), dps_steps=dps_steps))
    if as_json:
        data = [r.as_dict() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    table = Table(title=f"vir bench {width}x{height}, {frames} frames, {STATE.device}")
    table.add_column("")
    for r in reports:
        table.add_column(r.task, justify="right")
    rows = [("e2e fps", lambda r: f"{r.e2e_fps:.1f}"), ("model fps", lambda r: f"{r.model_fps:.1f}"),
            ("first frame s", lambda r: f"{r.first_frame_s or float('nan'):.2f}"),
            ("peak memory MiB", lambda r: f"{r.peak_rss_mb:.0f}"),
            ("decode+encode fps", lambda r: f"{r.passthrough_fps:.1f}"),
            ("restore / decode+encode time", lambda r: f"{r.time_ratio:.2f}x")]
    rows += [(f"{k} s", lambda r, k=k: f"{r.stages.get(k, 0.0):.2f}") for k in reports[0].stages]
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in reports))
    out_console.print(table)
    out_console.print(f"model: {reports[0].model} ({reports[0].precision})")
    out_console.print(f"cpu: {reports[0].cpu}; kernels: {reports[0].kernels}; {reports[0].threads} threads")
    for r in reports:
        if r.compare:
            out_console.print(f"{r.task}: " + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.compare.items()))
