"""`vir restore`: undo a degradation, streaming the video through a restorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import _encode as enc
from instantvir_cli.cli import _model as opt
from instantvir_cli.cli import app
from instantvir_cli.cli._common import (STATE, FrameProgress, Overwrite, ShowProgress, TolerateDamage, handle_errors,
                                        out_console, warn)

EPILOG = """Examples:

  vir degrade clip.mp4 low.mkv --task sr4x && vir restore low.mkv -o up.mp4   (operator from the sidecar)

  vir restore masked.mp4 -o filled.mp4 --task inpaint --mask keep.png

  vir restore blurry.mp4 -o sharp.mkv --task deblur --model classical --lossless
"""


@app.command(epilog=EPILOG)
def restore(
    input: Annotated[Path, typer.Argument(help="Degraded video to restore.", show_default=False)],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Where to write (default: IN.restored.<ext>).")
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option("--task", "-t", help="inpaint | deblur | sr4x (default: from IN.vir.json).", show_default=False),
    ] = None,
    model: opt.Model = "instantvir",
    mask: Annotated[
        Optional[Path],
        typer.Option("--mask", help="Inpainting keep-mask: image or video of the frame size, non-zero = observed."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the default random inpainting mask (no sidecar).")] = 0,
    noise: Annotated[
        Optional[float], typer.Option("--noise", min=0.0, help="Measurement noise std on [-1, 1] (default: sidecar or 0).")
    ] = None,
    checkpoint: opt.Checkpoint = None,
    block_frames: opt.BlockFrames = 12,
    precision: opt.Precision = "auto",
    consistency_steps: Annotated[
        Optional[int],
        typer.Option("--consistency-steps", min=0, max=50,
                     help="instantvir: data-consistency steps after decoding (0 = off; default: 1 when the checkpoint enables it)."),
    ] = None,
    tolerate_damage: TolerateDamage = False,
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
    codec: enc.Codec = "libx264",
    crf: enc.Crf = 18,
    preset: enc.Preset = "medium",
    pix_fmt: enc.PixFmt = "yuv420p",
    lossless: Annotated[
        bool, typer.Option("--lossless", help="Exactly lossless RGB (FFV1 in MKV, x264rgb in MP4).", rich_help_panel=enc.PANEL)
    ] = False,
    copy_streams: enc.CopyStreams = True,
    encoder_opt: enc.Extra = None,
) -> None:
    """Restore a degraded video (inpaint, deblur or sr4x), block by block."""
    from instantvir_cli.paths import default_output_path
    from instantvir_cli.restore import RestoreOptions, restore_video

    with handle_errors():
        out = output or default_output_path(input, "restored")
        encode = enc.encode_options(codec, crf, preset, pix_fmt, lossless, copy_streams, encoder_opt)
        opts = RestoreOptions(
            task=task, model=model, mask=mask, seed=seed, sigma_y=noise, block_frames=block_frames,
            device=STATE.device, checkpoint=checkpoint, consistency_steps=consistency_steps, precision=precision,
            tolerate_damage=tolerate_damage,
        )
        with FrameProgress("restore", None, enabled=progress) as bar:
            report = restore_video(input, out, opts, encode, overwrite=overwrite, on_progress=bar, warn=warn)
    if not STATE.quiet:
        w_in, h_in = report.size_in
        w_out, h_out = report.size_out
        out_console.print(
            f"restored {report.frames} frames ({report.operator['task']}, {report.model}) "
            f"{w_in}x{h_in} -> {w_out}x{h_out}: {report.output} in {report.seconds:.1f} s ({report.fps:.1f} fps)"
        )
