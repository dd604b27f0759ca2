"""`vir restore IN... -O DIR`: run the core's batch and render it (progress, errors, the summary table)."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.markup import escape
from rich.table import Table

from instantvir_cli.cli._common import STATE, FrameProgress, err_console, info, out_console, warn
from instantvir_cli.errors import EXIT_INTERRUPTED


def summary_table(results) -> Table:  # noqa: ANN001 - list[batch.BatchResult]
    """One row per input: what happened and the output, or why not."""
    from instantvir_cli.batch import FAILED, RESTORED

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("input", overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("output / reason", overflow="fold")
    for r in results:
        if r.status == RESTORED:
            rep = r.report
            detail = f"{r.output} ({rep.frames} frames, {rep.operator['task']}, {rep.model}, {rep.fps:.1f} fps)"
        else:
            detail = r.reason if r.status == FAILED else f"{r.output}: {r.reason}"
        status = f"{r.status} (exit {r.exit_code})" if r.status == FAILED else r.status
        table.add_row(escape(str(r.input)), status, escape(detail))
    return table


def restore_batch(inputs: list[Path], out_dir: Path, opts, encode, overwrite: bool,  # noqa: ANN001
                  progress: bool) -> int:
    """Restore every input into `out_dir`; print the summary table; return the exit code."""
    from instantvir_cli.batch import FAILED, first_failure, plan_batch, prepare_out_dir, run_batch

    jobs = plan_batch(inputs, out_dir)
    prepare_out_dir(out_dir)
    done: list = []

    def on_start(i: int, n: int, job) -> None:  # noqa: ANN001
        info(f"[{i}/{n}] {escape(str(job.input))}")

    def on_done(result) -> None:  # noqa: ANN001
        done.append(result)
        if result.status == FAILED:
            err_console.print(f"[red]error:[/red] {escape(str(result.input))}: {escape(result.reason)}")

    def bar(job):  # noqa: ANN001, ANN202
        return FrameProgress(job.input.name, None, enabled=progress)

    try:
        run_batch(jobs, opts, encode, overwrite=overwrite, progress=bar, on_start=on_start, on_done=on_done,
                  warn=warn)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]: the input being restored was not written, nor the ones after it")
        _print_summary(done, len(jobs))
        return EXIT_INTERRUPTED
    _print_summary(done, len(jobs))
    return first_failure(done)


def _print_summary(results, planned: int) -> None:  # noqa: ANN001
    from instantvir_cli.batch import FAILED, RESTORED, SKIPPED

    if STATE.quiet:
        return
    out_console.print(summary_table(results))
    counts = {s: sum(r.status == s for r in results) for s in (RESTORED, SKIPPED, FAILED)}
    left = planned - len(results)
    out_console.print(f"{counts[RESTORED]} restored, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"
                      + (f", {left} left by the interrupt" if left else ""))
