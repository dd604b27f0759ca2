"""What every command shares: the stderr console, error mapping and the progress bar."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from instantvir_cli.errors import EXIT_INTERRUPTED, VirError

# Messages and progress go to stderr; results (tables, JSON) to stdout.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


@dataclass
class GlobalOptions:
    """Options of the root command, shared by every subcommand."""

    device: str = "auto"
    quiet: bool = False
    verbose: bool = False


STATE = GlobalOptions()

# options every command that writes a video shares
Overwrite = Annotated[bool, typer.Option("--overwrite", "-y", help="Replace an existing output.")]
ShowProgress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")]
TolerateDamage = Annotated[bool, typer.Option(
    "--tolerate-damage",
    help="Process what decodes from a damaged or truncated input and say how much was lost "
         "(default: a damaged frame is an error, exit 5).")]


def resolve_device(name: str) -> str:
    """`auto` -> cuda when available, else cpu; anything else is passed through checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter(f"device {name!r} requested but CUDA is not available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise typer.BadParameter(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    return name


def info(message: str) -> None:
    """A progress message on stderr, silenced by --quiet."""
    if not STATE.quiet:
        err_console.print(message)


def warn(message: str) -> None:
    """A warning on stderr (shown even with --quiet)."""
    err_console.print(f"[yellow]warning:[/yellow] {message}")


def debug(message: str) -> None:
    if STATE.verbose and not STATE.quiet:
        err_console.print(f"[dim]{message}[/dim]")


@contextlib.contextmanager
def handle_errors(interrupted: str = "nothing was written to the output path") -> Iterator[None]:
    """Turn domain errors into one red line on stderr and their exit code; Ctrl-C into 130.

    `interrupted` says what the user has after Ctrl-C.
    """
    try:
        yield
    except VirError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:   # the core may say what the output holds (a stream finished early)
        err_console.print(f"[red]interrupted[/red]: {escape(str(exc)) if str(exc) else interrupted}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


class FpsColumn(ProgressColumn):
    """Frames per second from Rich's speed estimate."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        return Text("-- fps" if speed is None else f"{speed:5.1f} fps", style="cyan")


class FramesColumn(ProgressColumn):
    """`done/total`, or `done frames` when the total is unknown (a pipe, a stream)."""

    def render(self, task) -> Text:  # noqa: ANN001
        done = int(task.completed)
        return Text(f"{done} frames" if task.total is None else f"{done}/{int(task.total)}", style="green")


class KnownTotal(ProgressColumn):
    """`column` where the total is known, nothing where it is not (no bar, percentage or ETA)."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task) -> Text:  # noqa: ANN001
        return Text("") if task.total is None else self.column.render(task)


class FrameProgress:
    """A Rich progress bar over frames on stderr; total may be unknown (None): frames, fps and the
    time elapsed are shown then."""

    def __init__(self, description: str, total: int | None, enabled: bool = True):
        self.enabled = enabled and not STATE.quiet and (sys.stderr.isatty() or os.environ.get("VIR_PROGRESS") == "1")
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            KnownTotal(BarColumn()),
            FramesColumn(),
            KnownTotal(TaskProgressColumn()),
            FpsColumn(),
            TimeElapsedColumn(),
            KnownTotal(TextColumn("eta")),
            KnownTotal(TimeRemainingColumn()),
            console=err_console,
            disable=not self.enabled,
            refresh_per_second=4,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> "FrameProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, done: int, total: int | None) -> None:
        """Progress callback for the core: `done` frames so far out of `total` (None: unknown)."""
        self._progress.update(self._task, completed=done, total=total)
