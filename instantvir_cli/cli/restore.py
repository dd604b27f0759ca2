"""`vir restore`: undo a degradation, streaming the video through a restorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import _encode as enc
from instantvir_cli.cli import _help
from instantvir_cli.cli import _model as opt
from instantvir_cli.cli import _operator as opr
from instantvir_cli.cli import _stream as stm
from instantvir_cli.cli import app
from instantvir_cli.cli._common import (STATE, FrameProgress, Overwrite, ShowProgress, TolerateDamage, err_console,
                                        handle_errors, out_console, warn)

EPILOG = """Examples:

  vir degrade clip.mp4 low.mkv --task sr4x && vir restore low.mkv -o up.mp4   (operator from the sidecar)

  vir restore masked.mp4 -o filled.mp4 --task inpaint --mask keep.png

  vir restore blurry.mp4 -o sharp.mkv --task deblur --model classical --lossless

  vir restore blurry.mp4 -o sharp.mp4 --task deblur --blur-sigma 2 --model classical

  vir restore a.mp4 b.mkv clips/ -O restored/   (each output is restored/<input name>)

  vir restore masked.mkv -o lips.mp4 --checkpoint wan.safetensors --prompt "a woman with pink lips"

  ffmpeg -i in.mp4 -f matroska - | vir restore - -o - --task sr4x | ffmpeg -i - out.mp4   (a pipe)

  vir restore http://host/low.mkv -o udp://127.0.0.1:1234 --task sr4x --realtime   (streams)

  vir restore /dev/video0 --input-format v4l2 --input-opt video_size=320x240 -o cam.mkv --task deblur
"""


@app.command(epilog=EPILOG)
def restore(
    input: Annotated[
        list[str],
        typer.Argument(help="Degraded videos, or folders of them (their video files, not recursing); one "
                       "stream: - (stdin), a URL or a device.", metavar="IN", show_default=False),
    ],
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", metavar="OUT", show_default=False,
                                    help="Where to write one input: a file (default: IN.restored.<ext>), - "
                                    "(stdout) or a URL.")
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out-dir", "-O", help="Folder for the outputs of several inputs, each OUT_DIR/<input name> "
                     "(created if missing); existing outputs are skipped unless --overwrite.", show_default=False),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option("--task", "-t", metavar=_help.TASKS, help="The degradation to undo (default: from IN.vir.json).",
                     show_default=False),
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
    prompt: Annotated[
        Optional[str],
        typer.Option("--prompt", metavar="TEXT", show_default=False,
                     help="instantvir, a text student: what the video shows (changes unobserved content; "
                     "default: the prompt recorded in the checkpoint)."),
    ] = None,
    block_frames: opt.BlockFrames = 12,
    precision: opt.Precision = "auto",
    init: opt.Init = None,
    still_ema: opt.StillEma = None,
    consistency_steps: Annotated[
        Optional[int],
        typer.Option("--consistency-steps", min=0, max=50,
                     help="instantvir: data-consistency steps after decoding (0 = off; default: 1 when the checkpoint enables it)."),
    ] = None,
    blur_sigma: opr.blur_sigma(restore=True) = None,
    blur_size: opr.blur_size(restore=True) = None,
    keep_fraction: opr.keep_fraction(restore=True) = None,
    sr_kernel: opr.sr_kernel(restore=True) = None,
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
    format: stm.Format = None,
    input_format: stm.InputFormat = None,
    input_opt: stm.InputOpt = None,
    timeout: stm.Timeout = stm.TIMEOUT,
    realtime: stm.Realtime = False,
) -> None:
    """Restore degraded videos (inpaint, deblur or sr4x), block by block.

    One input is written to -o. Several inputs or folders are written to -O DIR, each as
    DIR/<input name>: an output that exists is skipped unless --overwrite, an input that fails
    does not stop the others, and a table at the end lists each input as restored, skipped or
    failed (with the reason); the exit code is that of the first input that failed.

    The learned model runs on the operator it was trained for; on another it stops with exit
    code 2 and points to --model classical (or, where it was measured to hold, warns and runs).

    A stream (- for stdin or stdout, a URL, a device with --input-format) is read and written in
    order; stdout then carries only the video, every message goes to stderr. Ctrl-C or the end of
    the source leaves a stream's output playable up to the last restored frame.
    """
    from instantvir_cli.errors import UsageError
    from instantvir_cli.paths import default_output_path
    from instantvir_cli.restore import RestoreOptions

    with handle_errors():
        streams = [t for t in input if stm.is_stream(t) or input_format]
        inputs = [Path(t) for t in input]
        # a folder with -o stays a single input (and is refused as one, exit 3)
        batch = out_dir is not None or len(inputs) > 1 or (not streams and inputs[0].is_dir() and output is None)
        if batch and streams:
            raise UsageError(f"a stream ({streams[0]}) is restored on its own, with -o: it can't be part of a batch")
        if realtime and not streams:
            raise UsageError("--realtime keeps up with a live input (-, a URL, a device); a file is read at its "
                             "own pace")
        if batch and output is not None:
            raise UsageError("-o names the output of one input: for several inputs or a folder use -O DIR")
        if batch and out_dir is None:
            raise UsageError("several inputs (or a folder) need an output folder: -O DIR")
        encode = enc.encode_options(codec, crf, preset, pix_fmt, lossless, copy_streams, encoder_opt)
        opts = RestoreOptions(
            task=task, model=model, mask=mask, seed=seed, sigma_y=noise, block_frames=block_frames,
            device=STATE.device, checkpoint=checkpoint, consistency_steps=consistency_steps, precision=precision,
            prompt=prompt, init=init, still_ema=still_ema,
            operator=opr.operator_options(blur_sigma, blur_size, keep_fraction, sr_kernel),
            tolerate_damage=tolerate_damage, realtime=realtime,
        )
        if batch:
            from instantvir_cli.cli._batch import restore_batch

            raise typer.Exit(restore_batch(inputs, out_dir, opts, encode, overwrite, progress))
        from instantvir_cli.restore import restore_video

        from instantvir_cli.video.endpoint import Sink

        (single,) = input
        src = stm.source(single, input_format, input_opt, timeout)
        if output is None and not src.is_file:
            raise UsageError("name the output of a stream with -o (a file, - for stdout, or a URL)")
        sink = Sink.parse(output if output is not None else default_output_path(src.path, "restored"), format,
                          timeout)
        with FrameProgress("restore", None, enabled=progress) as bar:
            report = restore_video(src, sink, opts, encode, overwrite=overwrite, on_progress=bar, warn=warn)
    if not STATE.quiet or report.dropped:
        w_in, h_in = report.size_in
        w_out, h_out = report.size_out
        dropped = f"; dropped {report.dropped} input frames to keep up (--realtime)" if report.dropped else ""
        # stdout carries the video of -o -: the summary goes to stderr then
        console = err_console if output is not None and stm.is_stream(output) else out_console
        console.print(
            f"restored {report.frames} frames ({report.operator['task']}, {report.model}) "
            f"{w_in}x{h_in} -> {w_out}x{h_out}: {report.output} in {report.seconds:.1f} s ({report.fps:.1f} fps)"
            + dropped
        )
