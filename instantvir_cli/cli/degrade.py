"""`vir degrade`: make a degraded video (and its sidecar) from a clean one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import _encode as enc
from instantvir_cli.cli import _operator as opr
from instantvir_cli.cli import _stream as stm
from instantvir_cli.cli import _help, app
from instantvir_cli.cli._common import (STATE, FrameProgress, Overwrite, ShowProgress, TolerateDamage, err_console,
                                        handle_errors, out_console, warn)

EPILOG = """Examples:

  vir degrade clip.mp4 low.mkv --task sr4x

  vir degrade clip.mp4 holes.mkv --task inpaint --seed 3 --noise 0.05

  vir degrade clip.mp4 holes.mp4 --task inpaint --mask keep.png

  vir degrade clip.mp4 blurry.mkv --task deblur --blur-sigma 2 --blur-size 31

  vir degrade clip.mp4 - --task sr4x | vir restore - -o up.mkv --task sr4x   (no sidecar on a pipe)
"""


@app.command(epilog=EPILOG)
def degrade(
    input: Annotated[str, typer.Argument(help="Clean video: a file, - (stdin), a URL or a device.", metavar="IN",
                                         show_default=False)],
    output: Annotated[str, typer.Argument(help="Degraded video to write (sidecar OUT.vir.json beside it); - (stdout) "
                                          "or a URL: no sidecar.", metavar="OUT", show_default=False)],
    task: Annotated[str, typer.Option("--task", "-t", metavar=_help.TASKS, help="The degradation.", show_default=False)] = ...,  # type: ignore[assignment]
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inpainting mask and of the noise.")] = 0,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Measurement noise std sigma_y on [-1, 1].")] = 0.0,
    mask: Annotated[
        Optional[Path], typer.Option("--mask", help="Keep-mask image or video (non-zero = observed) for inpaint.")
    ] = None,
    blur_sigma: opr.blur_sigma(restore=False) = None,
    blur_size: opr.blur_size(restore=False) = None,
    keep_fraction: opr.keep_fraction(restore=False) = None,
    sr_kernel: opr.sr_kernel(restore=False) = None,
    lossless: Annotated[
        bool,
        typer.Option("--lossless/--lossy", help="Exactly lossless output (default), or the encoder options below.",
                     rich_help_panel=enc.PANEL),
    ] = True,
    codec: enc.Codec = "libx264",
    crf: enc.Crf = 18,
    preset: enc.Preset = "medium",
    pix_fmt: enc.PixFmt = "yuv420p",
    copy_streams: enc.CopyStreams = True,
    encoder_opt: enc.Extra = None,
    tolerate_damage: TolerateDamage = False,
    overwrite: Overwrite = False,
    progress: ShowProgress = True,
    format: stm.Format = None,
    input_format: stm.InputFormat = None,
    input_opt: stm.InputOpt = None,
    timeout: stm.Timeout = stm.TIMEOUT,
) -> None:
    """Degrade a video with a known operator: y = A(x) + sigma_y * n.

    The sidecar OUT.vir.json records the operator for vir restore. A stream output (- or a URL)
    has no sidecar: the warning names the restore options that rebuild the same operator.
    """
    from instantvir_cli.degrade import DegradeOptions, degrade_video

    stream_out = stm.is_stream(output)
    with handle_errors("the stream output was finished with the frames degraded so far" if stream_out else
                       "nothing was written to the output path"):
        operator = opr.operator_options(blur_sigma, blur_size, keep_fraction, sr_kernel)
        encode = enc.encode_options(codec, crf, preset, pix_fmt, lossless, copy_streams, encoder_opt)
        opts = DegradeOptions(task=task, seed=seed, noise=noise, mask=mask, operator=operator,
                              tolerate_damage=tolerate_damage)
        from instantvir_cli.video.endpoint import Sink

        src = stm.source(input, input_format, input_opt, timeout)
        sink = Sink.parse(output, format, timeout)
        with FrameProgress("degrade", None, enabled=progress) as bar:
            report = degrade_video(src, sink, opts, encode, overwrite=overwrite, on_progress=bar, warn=warn)
    if report.restore_hint:
        warn(f"no sidecar for a stream output: restore it with {report.restore_hint}")
    if not STATE.quiet:
        side = f" (+ {report.sidecar.name})" if report.sidecar else ""
        console = out_console if sink.is_file else err_console     # stdout may carry the video
        console.print(
            f"degraded {report.frames} frames ({opts.task}) {report.size_in[0]}x{report.size_in[1]} -> "
            f"{report.size_out[0]}x{report.size_out[1]}: {report.output}{side}"
        )
