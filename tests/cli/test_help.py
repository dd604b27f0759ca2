"""`--help` names the choices of an option and shows no value type on flags; so do the man pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from instantvir_cli.cli import _help
from tests.cli.helpers import vir

COMMANDS = ["restore", "degrade", "bench", "compare", "distill"]
MAN = Path(__file__).resolve().parents[2] / "man"


def test_the_choices_are_the_cores():
    from instantvir_cli.learned import PRECISIONS
    from instantvir_cli.ops import TASKS
    from instantvir_cli.restore import MODELS

    assert _help.TASKS.split("|") == list(TASKS)
    assert sorted(_help.MODELS.split("|")) == sorted(MODELS)
    assert _help.PRECISIONS.split("|") == list(PRECISIONS)


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_flags_show_no_type(name):
    text = vir(*([name] if name else []), "--help").stdout
    assert "<bool>" not in text
    assert re.search(r"--help\s+(-h\s+)?Show this message", text), text    # the flag, then its help


@pytest.mark.parametrize("name", COMMANDS)
def test_no_option_or_argument_shows_a_bare_string_type(name):
    text = vir(name, "--help").stdout
    assert "<str>" not in text and "<list[" not in text, text


@pytest.mark.parametrize("name, option, metavar", [
    ("restore", "--encoder-opt", "KEY=VALUE"), ("restore", "--input-opt", "KEY=VALUE"), ("restore", "--format", "NAME"),
    ("restore", "--codec", "NAME"), ("restore", "--timeout", "SECONDS"), ("degrade", "--input-format", "NAME"),
    ("restore", "--preset", "ultrafast..veryslow"),
])
def test_value_options_name_their_values(name, option, metavar):
    text = vir(name, "--help").stdout
    line = next(line for line in text.splitlines() if re.match(rf"\W*{option}\b", line))
    assert metavar in line, line


@pytest.mark.parametrize("name, option, choices", [
    ("restore", "--task", "inpaint|deblur|sr4x"), ("degrade", "--task", "inpaint|deblur|sr4x"),
    ("restore", "--model", "instantvir|classical"), ("restore", "--precision", "auto|fp32|int8|bf16|fp16"),
    ("restore", "--sr-kernel", "area|bicubic"), ("degrade", "--sr-kernel", "area|bicubic"),
    ("bench", "--task", "inpaint|deblur|sr4x|all"), ("bench", "--compare", "dps|wan-vae"),
    ("", "--device", "auto|cpu|cuda|cuda:N"),
])
def test_choice_options_name_their_choices(name, option, choices):
    text = vir(*([name] if name else []), "--help").stdout
    line = next(line for line in text.splitlines() if re.match(rf"\W*{option}\b", line))   # the option's row
    assert choices in line and "<str>" not in line, line
    page = (MAN / (f"vir-{name}.1" if name else "vir.1")).read_text().replace("\\-", "-")
    assert re.search(rf"\\fB{option}\\fR.*{re.escape(choices)}", page), f"man page of {name or 'vir'}: {option}"


def test_operator_options_on_restore_as_on_degrade():
    for name in ("restore", "degrade"):
        text = vir(name, "--help").stdout
        for option in ("--blur-sigma", "--blur-size", "--keep-fraction", "--sr-kernel"):
            assert option in text, (name, option)
