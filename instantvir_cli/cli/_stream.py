"""Options for stream inputs and outputs (pipes, URLs, devices), shared by `restore` and `degrade`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instantvir_cli.limits import NETWORK_TIMEOUT_S

PANEL = "Streams (- for stdin/stdout, URLs, devices)"

Format = Annotated[Optional[str], typer.Option(
    "--format", "-f", metavar="NAME", show_default=False, rich_help_panel=PANEL,
    help="Container of a pipe or URL output: matroska (the default for -o -), nut, mpegts, flv, mp4 "
         "(fragmented), ... (udp and tcp default to mpegts, rtmp to flv).")]
InputFormat = Annotated[Optional[str], typer.Option(
    "--input-format", metavar="NAME", show_default=False, rich_help_panel=PANEL,
    help="FFmpeg input format to open IN with, e.g. v4l2 for /dev/video0 (default: probed).")]
InputOpt = Annotated[Optional[list[str]], typer.Option(
    "--input-opt", metavar="KEY=VALUE", show_default=False, rich_help_panel=PANEL,
    help="FFmpeg demuxer or protocol option for IN, e.g. video_size=640x480 (repeatable).")]
Timeout = Annotated[float, typer.Option(
    "--timeout", metavar="SECONDS", min=0.1, rich_help_panel=PANEL,
    help="How long a URL may stay silent (connecting, reading, writing) before exit 10.")]
Realtime = Annotated[bool, typer.Option(
    "--realtime", rich_help_panel=PANEL,
    help="Keep up with a live source: drop whole input blocks while the restorer is behind and report "
         "how many (default: the reader waits, holding the source back).")]

TIMEOUT = NETWORK_TIMEOUT_S


def source(text: str, input_format: str | None, input_opt: list[str] | None, timeout: float):
    """The core's Source for IN."""
    from instantvir_cli.video.endpoint import Source, parse_options

    return Source.parse(text, input_format, parse_options(input_opt), timeout)


def is_stream(text: str) -> bool:
    """`-` or a URL: not a path."""
    from instantvir_cli.video.endpoint import is_url

    return text == "-" or is_url(text)
