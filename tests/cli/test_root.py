"""The root command: --version, --help, the entry point and `python -m`."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from instantvir_cli import __version__
from tests.cli.helpers import vir


def test_version():
    result = vir("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"vir {__version__}"


def test_help_lists_every_command():
    result = vir("--help")
    assert result.exit_code == 0
    for name in ("restore", "degrade", "bench", "compare", "distill"):
        assert name in result.stdout
    for option in ("--device", "--quiet", "--version"):
        assert option in result.stdout


def test_each_command_has_help():
    for name in ("restore", "degrade", "bench", "compare", "distill"):
        result = vir(name, "--help")
        assert result.exit_code == 0, name
        assert "Usage" in result.stdout


def test_console_script_entry_point_resolves():
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "vir"]
    assert ep.value == "instantvir_cli.cli:app"
    from instantvir_cli.cli import app

    assert ep.load() is app


def test_python_dash_m_runs():
    run = subprocess.run([sys.executable, "-m", "instantvir_cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0
    assert run.stdout.strip() == f"vir {__version__}"


def test_unknown_device_is_a_usage_error():
    result = vir("--device", "tpu", "bench", "--help")
    assert result.exit_code == 2
    assert "unknown device" in result.stderr
