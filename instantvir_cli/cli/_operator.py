"""The operator's parameters on the command line, shared by `degrade` and `restore` (one help panel)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

PANEL = "Operator"


def _help(text: str, default: str, restore: bool) -> str:
    where = "the sidecar's, else " if restore else ""
    return f"{text} (default: {where}{default})."


def blur_sigma(restore: bool):
    return Annotated[Optional[float], typer.Option(
        "--blur-sigma", metavar="PIXELS", show_default=False, rich_help_panel=PANEL,
        help=_help("deblur: the Gaussian's sigma", "3.0", restore))]


def blur_size(restore: bool):
    return Annotated[Optional[int], typer.Option(
        "--blur-size", metavar="PIXELS", show_default=False, rich_help_panel=PANEL,
        help=_help("deblur: the Gaussian kernel's side, odd", "61", restore))]


def keep_fraction(restore: bool):
    return Annotated[Optional[float], typer.Option(
        "--keep-fraction", metavar="0..1", show_default=False, rich_help_panel=PANEL,
        help=_help("inpaint: share of pixels vir's random mask keeps", "0.5", restore))]


def sr_kernel(restore: bool):
    return Annotated[Optional[str], typer.Option(
        "--sr-kernel", metavar="area|bicubic", show_default=False, rich_help_panel=PANEL,
        help=_help("sr4x: 4x4 block average (area) or antialiased bicubic downscaling", "area", restore))]


def operator_options(blur_sigma: float | None, blur_size: int | None, keep_fraction: float | None,
                     sr_kernel: str | None):
    """The core's OperatorOptions from the flags (validated there)."""
    from instantvir_cli.ops.options import OperatorOptions

    return OperatorOptions(blur_sigma=blur_sigma, blur_size=blur_size, keep_fraction=keep_fraction,
                           sr_kernel=sr_kernel)
