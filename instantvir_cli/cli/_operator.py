"""The operator's parameters on the command line, shared by `degrade` and `restore` (one help panel)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

PANEL = "Operator"


def _help(text: str, default: str, restore: bool) -> str:
    where = "the sidecar's, else " if restore else ""
    return f"{text} (default: {where}{default})."


def _option(kind: type, flag: str, metavar: str, text: str, default: str, restore: bool):
    return Annotated[Optional[kind], typer.Option(flag, metavar=metavar, show_default=False, rich_help_panel=PANEL,
                                                  help=_help(text, default, restore))]


def blur_sigma(restore: bool):
    return _option(float, "--blur-sigma", "PIXELS", "deblur: the Gaussian's sigma", "3.0", restore)


def blur_size(restore: bool):
    return _option(int, "--blur-size", "PIXELS", "deblur: the Gaussian kernel's side, odd", "61", restore)


def keep_fraction(restore: bool):
    return _option(float, "--keep-fraction", "0..1", "inpaint: share of pixels vir's random mask keeps", "0.5", restore)


def sr_kernel(restore: bool):
    return _option(str, "--sr-kernel", "area|bicubic",
                   "sr4x: 4x4 block average (area) or antialiased bicubic downscaling", "area", restore)


def operator_options(blur_sigma: float | None, blur_size: int | None, keep_fraction: float | None,
                     sr_kernel: str | None):
    """The core's OperatorOptions from the flags (validated there)."""
    from instantvir_cli.ops.options import OperatorOptions

    return OperatorOptions(blur_sigma=blur_sigma, blur_size=blur_size, keep_fraction=keep_fraction,
                           sr_kernel=sr_kernel)
