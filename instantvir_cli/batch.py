"""Restore several videos in one call: files and folders in, `OUT_DIR/<input name>` out.

    jobs = plan_batch([Path("a.mp4"), Path("clips")], Path("out"))
    results = run_batch(jobs, RestoreOptions(), EncodeOptions())
    code = first_failure(results)          # 0, or the exit code of the first input that failed

A folder contributes its video files (by extension, not recursing, hidden files left out). Each
input is restored by `restore.restore_video` with its own sidecar; an output that exists is
skipped unless `overwrite`; an input that fails is recorded with its reason and exit code and
the others go on. Only Ctrl-C stops the batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

from instantvir_cli.errors import InputNotFound, OutputRefused, UsageError, VirError
from instantvir_cli.paths import check_input_path
from instantvir_cli.restore import ProgressFn, RestoreOptions, RestoreReport, WarnFn, restore_video
from instantvir_cli.video import EncodeOptions

# what a folder contributes: containers FFmpeg reads video from
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".nut", ".ts", ".mts", ".m2ts", ".mpg",
                  ".mpeg", ".flv", ".ogv", ".wmv", ".y4m", ".3gp")

RESTORED, SKIPPED, FAILED = "restored", "skipped", "failed"
EXIT_INTERNAL = 1


@dataclass(frozen=True)
class BatchJob:
    """One input and where its restoration goes; `error` is a problem found while planning."""

    input: Path
    output: Path | None
    error: VirError | None = None


@dataclass
class BatchResult:
    """What happened to one input: restored, skipped (its output exists) or failed (with why)."""

    input: Path
    output: Path | None
    status: str                      # RESTORED | SKIPPED | FAILED
    exit_code: int = 0               # the error's exit code when FAILED, else 0
    reason: str = ""                 # why it was skipped or failed
    report: RestoreReport | None = None


def folder_videos(folder: Path) -> list[Path]:
    """The video files directly in `folder` (by extension), sorted by name; hidden files left out."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".") and p.is_file())


def plan_batch(inputs: list[Path], out_dir: Path) -> list[BatchJob]:
    """One job per input file (folders expanded), in order; the same file named twice runs once.

    Raises UsageError when no inputs are given or an input folder is `out_dir` itself. Problems
    of one input (an empty folder, two inputs that would write the same output) become that
    job's `error`; a missing or unreadable file is found when it runs.
    """
    if not inputs:
        raise UsageError("no inputs given")
    out_resolved = out_dir.expanduser().resolve()
    jobs: list[BatchJob] = []
    seen: set[Path] = set()
    claimed: dict[Path, Path] = {}        # output -> the input that writes it
    for given in inputs:
        if given.is_dir():
            if given.expanduser().resolve() == out_resolved:
                raise UsageError(f"the output folder {out_dir} is also an input folder: choose another -O")
            files = folder_videos(given)
            if not files:
                jobs.append(BatchJob(given, None, InputNotFound(
                    f"no video files in folder {given} (looked for {', '.join(VIDEO_SUFFIXES)})")))
                continue
        else:
            files = [given]
        for f in files:
            key = f.expanduser().resolve()
            if key in seen:
                continue
            seen.add(key)
            out = out_dir / f.name
            first = claimed.setdefault(out, f)
            if first is not f:
                jobs.append(BatchJob(f, out, OutputRefused(f"{f} and {first} would both be written to {out}")))
                continue
            jobs.append(BatchJob(f, out))
    return jobs


def prepare_out_dir(out_dir: Path) -> None:
    """Create the output folder (and its parents); OutputRefused when it can't be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputRefused(f"-O must name a folder, but {out_dir} is a file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputRefused(f"can't create the output folder {out_dir}: {e.strerror or e}") from None


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.expanduser().resolve() == b.expanduser().resolve()


def run_batch(
    jobs: list[BatchJob],
    opts: RestoreOptions,
    encode: EncodeOptions,
    overwrite: bool = False,
    progress: Callable[[BatchJob], ContextManager[ProgressFn | None]] | None = None,
    on_start: Callable[[int, int, BatchJob], None] | None = None,
    on_done: Callable[[BatchResult], None] | None = None,
    warn: WarnFn | None = None,
) -> list[BatchResult]:
    """Restore each job in turn; see the module docstring.

    `progress(job)` gives a context manager whose value is that input's progress callback;
    `on_start(i, n, job)` is called before job i of n (1-based) and `on_done(result)` after each;
    warnings name their input. An error that is not a VirError (a bug) fails that input with
    exit code 1 and its type and message; KeyboardInterrupt stops the batch.
    """
    results: list[BatchResult] = []
    for i, job in enumerate(jobs, 1):
        if on_start:
            on_start(i, len(jobs), job)
        result = _run_one(job, opts, encode, overwrite, progress, warn)
        results.append(result)
        if on_done:
            on_done(result)
    return results


def _run_one(job: BatchJob, opts: RestoreOptions, encode: EncodeOptions, overwrite: bool,
             progress: Callable[[BatchJob], ContextManager[ProgressFn | None]] | None,
             warn: WarnFn | None) -> BatchResult:
    def failed(code: int, reason: str) -> BatchResult:
        return BatchResult(job.input, job.output, FAILED, code, reason)

    if job.error is not None:
        return failed(job.error.exit_code, str(job.error))
    try:
        check_input_path(job.input)      # a missing input fails even where its output exists
    except VirError as e:
        return failed(e.exit_code, str(e))
    if _same_file(job.input, job.output):
        return failed(OutputRefused.exit_code, f"the output {job.output} is the input itself")
    if job.output.is_file() and not overwrite:
        return BatchResult(job.input, job.output, SKIPPED, 0, "output exists (--overwrite replaces it)")
    name = job.input.name

    def named(message: str) -> None:
        if warn:
            warn(f"{name}: {message}")

    try:
        with (progress(job) if progress else contextlib.nullcontext()) as bar:
            report = restore_video(job.input, job.output, opts, encode, overwrite=overwrite, on_progress=bar,
                                   warn=named)
    except VirError as e:
        return failed(e.exit_code, str(e))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a bug on one input must not lose the others
        return failed(EXIT_INTERNAL, f"internal error (a bug: please report it): {type(e).__name__}: {e}")
    return BatchResult(job.input, job.output, RESTORED, 0, "", report)


def first_failure(results: list[BatchResult]) -> int:
    """The exit code of the first input that failed, 0 when none did (skipped is not a failure)."""
    return next((r.exit_code for r in results if r.status == FAILED), 0)
