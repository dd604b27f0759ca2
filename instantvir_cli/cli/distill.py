"""`vir distill`: train the VAE, teacher and one-step students from one TOML config."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import app
from instantvir_cli.cli._common import STATE, err_console, handle_errors, out_console

EPILOG = """Examples:

  vir distill --config configs/tiny.toml --out runs/tiny --max-steps 5

  vir distill --config configs/device-default.toml --out runs/device --max-minutes 6

  vir distill --config configs/tiny.toml --dry-run          (print the effective config)

  vir distill --config configs/wan2.1-1.3b-sr4x.toml --dry-run --json --world 8

  torchrun --nproc-per-node 2 -m instantvir_cli distill --config configs/small.toml --out runs/small

  vir distill --config configs/small.toml --out runs/small --resume
"""

_SHOWN = ("loss", "student_loss", "meas", "dmd", "critic_loss", "grad_norm", "l1", "kl")
_VAL_SHOWN = ("psnr", "ssim", "flicker", "raw_psnr", "classical_psnr", "classical_ssim", "init_psnr", "fm")


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "--:--"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class DistillProgress:
    """Renders trainer events: a Rich bar per stage on a terminal, plain lines otherwise."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = STATE.quiet
        self.live = enabled and not self.quiet and (sys.stderr.isatty() or os.environ.get("VIR_PROGRESS") == "1")
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"),
                                 TextColumn("{task.fields[info]}"), console=err_console, disable=not self.live)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def line(self, text: str) -> None:
        if not self.quiet:
            (self.progress.console if self.live else err_console).print(text, highlight=False)

    def __call__(self, e) -> None:
        if e.kind == "info":
            self.line(f"[dim]{e.message}[/dim]")
        elif e.kind == "stage":
            self.tasks[e.stage] = self.progress.add_task(e.stage, total=e.total, completed=e.step, rate="",
                                                         eta="--:--", info="")
            self.line(f"stage [bold]{e.stage}[/bold]: steps {e.step}..{e.total}")
        elif e.kind == "step":
            shown = "  ".join(f"{k} {_fmt(e.metrics[k])}" for k in _SHOWN if k in e.metrics)
            rate = f"{e.rate:.2f} it/s" if e.rate else ""
            if e.stage in self.tasks:
                self.progress.update(self.tasks[e.stage], completed=e.step, rate=rate, eta=_duration(e.eta), info=shown)
            if not self.live:
                self.line(f"{e.stage} {e.step}/{e.total}  {rate}  eta {_duration(e.eta)}  {shown}")
        elif e.kind == "val":
            m = e.metrics
            shown = "  ".join(f"{k} {_fmt(m[k])}" for k in _VAL_SHOWN if k in m)
            self.line(f"[cyan]validation[/cyan] {e.stage} @ {e.step}: {shown}")
        elif e.kind == "done":
            rate = f" ({e.rate:.2f} steps/s)" if e.rate else ""
            self.line(f"[green]done[/green] {e.stage} at step {e.step}{rate}" + (f": {e.message}" if e.message else ""))
        elif e.kind == "export":
            self.line(f"[green]exported[/green] {e.message} ({', '.join(e.metrics.get('tasks', []))})")


@app.command(epilog=EPILOG)
def distill(
    config: Annotated[Path, typer.Option("--config", "-c", help="Run configuration (TOML).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default: run.out of the config).")] = None,
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", min=0, help="Stop each stage after this many steps.")
    ] = None,
    max_minutes: Annotated[
        Optional[float], typer.Option("--max-minutes", min=0, help="Wall-clock budget (replaces run.max_minutes): "
                                      "each stage stops at its share, checkpoints and exports; 0 = none.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in the run folder.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the effective config, check the weight files "
                                          "that exist (keys, shapes) and stop.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print every model (built on the meta "
                                          "device), missing weight files and the memory per GPU as JSON.")] = False,
    world: Annotated[Optional[int], typer.Option("--world", min=1, max=4096, help="With --dry-run: the number of "
                                                 "GPUs to estimate memory for (default: $WORLD_SIZE or 1).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Distill InstantViR: VAE -> teacher (flow matching) -> causal one-step students (DMD + measurement).

    Runs under torchrun as well (DDP over the processes). Logs go to <run folder>/log.jsonl.
    """
    with handle_errors("the run folder keeps its last checkpoint: continue with --resume"):
        from instantvir_cli.config import to_toml
        from instantvir_cli.distill.trainer import effective_config, run_distill

        cfg = effective_config(config, out, max_minutes)
        if dry_run:
            from instantvir_cli.distill.plan import plan_run, to_json

            plan = plan_run(cfg, world)
            if as_json:
                sys.stdout.write(to_json({"config": str(config), **plan}) + "\n")
            else:
                out_console.print(to_toml(cfg), end="", markup=False, highlight=False)
                for m in plan["missing"]:
                    err_console.print(f"missing: {m['key']}: {m['path']} ({m['why']})", markup=False, highlight=False)
            return
        if as_json or world is not None:
            raise typer.BadParameter("--json and --world go with --dry-run")
        with DistillProgress(progress) as bar:
            result = run_distill(cfg, max_steps=max_steps, resume=resume, on_event=bar)
    if not STATE.quiet and int(os.environ.get("RANK", "0")) == 0:
        rates = ", ".join(f"{k} {v:.2f}" for k, v in result.rates.items())
        out_console.print(f"run folder {result.out}" + (f"; export {result.export}" if result.export else "")
                          + (f"; steps/s: {rates}" if rates else ""))
