"""Running `vir` in-process for CLI tests."""

from __future__ import annotations

from typer.testing import CliRunner

from instantvir_cli.cli import app

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})


def vir(*args: str):
    """Invoke `vir ARGS...`; returns Click's Result (exit_code, stdout, stderr)."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, code: int) -> None:
    """The command failed with `code`, printing exactly one line on stderr and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
