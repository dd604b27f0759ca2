"""Encoder options shared by `restore`, `degrade` and `bench` (one definition, one help panel)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instantvir_cli.errors import UsageError
from instantvir_cli.keyvalue import parse_key_values

PANEL = "Encoding"

Codec = Annotated[str, typer.Option("--codec", metavar="NAME", help="Video encoder (any FFmpeg encoder PyAV has).",
                                    rich_help_panel=PANEL)]
Crf = Annotated[int, typer.Option("--crf", min=0, max=63, help="Constant rate factor (lower = better).", rich_help_panel=PANEL)]
Preset = Annotated[str, typer.Option(
    "--preset", metavar="ultrafast..veryslow", rich_help_panel=PANEL,
    help="Encoder speed preset (x264/x265: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, "
         "veryslow).")]
PixFmt = Annotated[str, typer.Option("--pix-fmt", metavar="NAME", help="Output pixel format (e.g. yuv420p, yuv444p).",
                                     rich_help_panel=PANEL)]
CopyStreams = Annotated[
    bool,
    typer.Option("--copy-streams/--no-copy-streams", help="Copy audio and subtitle streams.", rich_help_panel=PANEL),
]
Extra = Annotated[
    Optional[list[str]],
    typer.Option("--encoder-opt", "-e", metavar="KEY=VALUE", show_default=False, rich_help_panel=PANEL,
                 help="Extra encoder option KEY=VALUE (repeatable), e.g. tune=film, g=48."),
]


def parse_extra(pairs: list[str] | None) -> dict[str, str]:
    """['tune=film', 'g=48'] -> {'tune': 'film', 'g': '48'}."""
    return parse_key_values(pairs, "encoder option")


def encode_options(codec: str, crf: int, preset: str, pix_fmt: str, lossless: bool, copy_streams: bool,
                   encoder_opt: list[str] | None):
    """The core's EncodeOptions from the shared encoding flags."""
    from instantvir_cli.video import EncodeOptions

    return EncodeOptions(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, lossless=lossless,
                         copy_streams=copy_streams, extra=parse_extra(encoder_opt))
