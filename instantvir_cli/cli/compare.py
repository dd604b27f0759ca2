"""`vir compare`: the clean video and restorations side by side, scored: a PNG sheet or a video."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from instantvir_cli.cli import _encode as enc
from instantvir_cli.cli import app
from instantvir_cli.cli._common import STATE, FrameProgress, Overwrite, ShowProgress, handle_errors, out_console, warn

EPILOG = """Examples:

  vir compare clean.mp4 up-classical.mp4 up.mp4 -o sheet.png --crop 200,100,80,60

  vir compare clean.mp4 low.mkv up.mp4 -o sheet.png --frame 40 --label clean --label input --label restored

  vir compare clean.mp4 up-classical.mp4 up.mp4 -o side.mp4   (PSNR, SSIM, flicker and VMAF per panel)

  vir compare a.mp4 b.mp4 -o sheet.png --no-reference
"""


@app.command(epilog=EPILOG)
def compare(
    videos: Annotated[list[Path], typer.Argument(
        help="The clean video, then restorations (with --no-reference: restorations only).", metavar="VIDEO",
        show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A .png sheet of one frame, or a video (.mp4, .mkv, ...).",
                           show_default=False),
    ] = ...,  # type: ignore[assignment]
    frame: Annotated[
        Optional[int],
        typer.Option("--frame", "-f", min=0, show_default=False,
                     help="Sheet: the frame to show, from 0 (default: the middle)."),
    ] = None,
    crop: Annotated[
        Optional[str], typer.Option("--crop", metavar="X,Y,W,H", help="A region of the first video's frame, boxed "
                                    "in each panel and zoomed below it, with its own scores.", show_default=False),
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="The first video is the clean reference the others "
                           "are scored against; --no-reference shows them alone, unscored."),
    ] = True,
    label: Annotated[
        Optional[list[str]],
        typer.Option("--label", "-l", metavar="TEXT", show_default=False,
                     help="A panel's label, one per video in order (default: the file names). Repeatable."),
    ] = None,
    vmaf: Annotated[
        bool, typer.Option("--vmaf/--no-vmaf", help="Video: also score VMAF (ffmpeg's libvmaf, vmaf_v0.6.1), "
                           "where this ffmpeg has it."),
    ] = True,
    codec: enc.Codec = "libx264",
    crf: enc.Crf = 18,
    preset: enc.Preset = "medium",
    pix_fmt: enc.PixFmt = "yuv420p",
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
    encoder_opt: enc.Extra = None,
) -> None:
    """Show restorations beside the clean video with PSNR / SSIM per panel, as a PNG sheet or a video."""
    from instantvir_cli.compare import CompareOptions, compare as run_compare
    from instantvir_cli.sheet import Crop

    with handle_errors():
        opts = CompareOptions(frame=frame, crop=Crop.parse(crop) if crop is not None else None, reference=reference,
                              labels=tuple(label) if label else None, vmaf=vmaf)
        encode = enc.encode_options(codec, crf, preset, pix_fmt, False, True, encoder_opt)
        with FrameProgress("compare", None, enabled=progress) as bar:
            report = run_compare(videos, output, opts, encode, overwrite=overwrite, on_progress=bar, warn=warn)
    for note in report.notes:
        warn(note)
    if STATE.quiet:
        return
    out_console.print(scores_table(report))
    what = f"frame {report.frame}" if report.kind == "sheet" else f"{report.frames} frames"
    out_console.print(f"wrote {report.output} ({report.size[0]}x{report.size[1]}, {len(report.panels)} panels, {what})")


def _num(value: float | None, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def scores_table(report) -> Table:  # noqa: ANN001 - compare.CompareReport
    """One row per panel: its label, file, PSNR / SSIM (crop, flicker, VMAF where measured)."""
    crop = any(p.crop_psnr is not None for p in report.panels)
    video = report.kind == "video"
    files = any(p.label != p.path.name for p in report.panels)
    scored = any(p.psnr is not None for p in report.panels)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    columns = ["panel"] + (["file"] if files else []) + (["PSNR dB", "SSIM"] if scored else [])
    columns += ["crop PSNR", "crop SSIM"] if crop else []
    columns += ["flicker", "VMAF"] if video and scored else []
    for c in columns + ["note"]:
        table.add_column(c, justify="left" if c in ("panel", "file", "note") else "right", overflow="fold")
    for p in report.panels:
        row = [escape(p.label)] + ([escape(str(p.path))] if files else [])
        row += [_num(p.psnr, 2), _num(p.ssim, 4)] if scored else []
        row += [_num(p.crop_psnr, 2), _num(p.crop_ssim, 4)] if crop else []
        row += [_num(p.flicker, 3), _num(p.vmaf, 2)] if video and scored else []
        table.add_row(*row, escape(p.note))
    return table
