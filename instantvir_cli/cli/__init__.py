"""The `vir` command line: a thin Typer layer over the core (no torch math here)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instantvir_cli import __version__
from instantvir_cli.malloc import tune_malloc
from instantvir_cli.cli import _help
from instantvir_cli.cli._common import STATE, err_console, handle_errors, resolve_device

app = typer.Typer(
    name="vir",
    help="Restore degraded video (missing pixels, Gaussian blur, 4x low resolution) in real time.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 input not found, 4 input unreadable, "
    "5 input corrupt, 6 output refused, 7 mask invalid, 8 checkpoint, 9 config, 10 network, 130 interrupted.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vir {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    device: Annotated[
        str, typer.Option("--device", metavar=_help.DEVICES, help="Where to compute: auto, cpu, cuda or cuda:N.",
                          envvar="VIR_DEVICE")
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")] = False,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """vir: real-time video restoration with one-step causal students (the InstantViR method)."""
    tune_malloc()   # frame-sized buffers reused from the heap, not faulted in anew (instantvir_cli/malloc.py)
    with handle_errors():
        try:
            STATE.device = resolve_device(device)
        except typer.BadParameter as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    STATE.quiet = quiet
    STATE.verbose = verbose and not quiet


from instantvir_cli.cli import bench, compare, degrade, distill, restore  # noqa: E402  (registers commands)

__all__ = ["app", "bench", "compare", "degrade", "distill", "restore"]
