"""`vir distill`: train the VAE, teacher and one-step student from one TOML config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import app
from instantvir_cli.cli._common import handle_errors


@app.command()
def distill(
    config: Annotated[Path, typer.Option("--config", "-c", help="Run configuration (TOML).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder (checkpoints, logs, exports).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many steps per stage.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the effective config and stop.")] = False,
) -> None:
    """Distill InstantViR: VAE -> teacher (flow matching) -> causal one-step student (DMD + measurement)."""
    from instantvir_cli.errors import ConfigError

    with handle_errors():
        try:
            from instantvir_cli.distill.trainer import run_distill
        except ImportError:
            raise ConfigError("the trainer is not part of this build yet (vir distill arrives with the trainer)") from None
        run_distill(config, out=out, max_steps=max_steps, resume=resume, dry_run=dry_run)
