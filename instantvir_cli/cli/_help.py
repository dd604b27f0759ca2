"""How `--help` names values: choices as `a|b|c`, and no value type on flags.

Typer's rich help prints an option's type (`<str>`, `<bool>`) unless the option has a metavar.
A choice is a string here (the core checks it and names the choices in its error), so each
choice option carries its choices as its metavar, and a flag, which takes no value, shows none.
"""

from __future__ import annotations

import typer.core

# the choices, as the core spells them (tests/cli/test_help.py checks them against the core)
TASKS = "inpaint|deblur|sr4x"
MODELS = "instantvir|classical"
PRECISIONS = "auto|fp32|int8|bf16|fp16"
DEVICES = "auto|cpu|cuda|cuda:N"


def _untyped_flags() -> None:
    """Make Typer's rich help show no type for flags (`--overwrite`, `--help`): they take no value."""
    option = typer.core.TyperOption
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_vir_flags_untyped", False):
        return   # a Typer that renders types elsewhere (or this ran already)

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - Typer's signature
        if self.is_flag or getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._vir_flags_untyped = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich




def _untyped_named_arguments() -> None:
    """An argument with a metavar (`IN...`, `OUT`) is named by it: no `<str>`/`<list[str]>` beside it."""
    argument = typer.core.TyperArgument
    shown = getattr(argument, "display_type_rich", None)
    if shown is None or getattr(shown, "_vir_named", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - Typer's signature
        return None if self.metavar else shown(self, ctx)

    display_type_rich._vir_named = True  # type: ignore[attr-defined]
    argument.display_type_rich = display_type_rich


_untyped_flags()
_untyped_named_arguments()
