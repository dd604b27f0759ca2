"""Render roff man pages (`vir.1`, `vir-<command>.1`) from the Typer app's own option data.

Typer has no man-page support and its vendored Click breaks click-man, so the pages are
generated here from the same parameter objects that `--help` shows, and committed in `man/`.
Run `python -m instantvir_cli.cli.manpage man/` after changing an option; a test fails when a
page misses an option that `--help` shows.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import typer

from instantvir_cli import __version__

EXIT_CODES = [
    ("0", "success"),
    ("1", "unexpected internal failure (a bug: please report it)"),
    ("2", "usage error: unknown option or task, bad value"),
    ("3", "input not found, or a folder"),
    ("4", "input unreadable: empty, not a media file, no video stream, no frames; frames over the size "
          "limit (VIR_MAX_PIXELS) or too large for memory"),
    ("5", "input corrupt or truncated part-way through; the message names the frame (--tolerate-damage goes on)"),
    ("6", "output refused: same as the input, exists without --overwrite, being written by another vir, "
          "folder not writable, or disk full"),
    ("7", "mask invalid: wrong size, unreadable, or not the file the sidecar recorded"),
    ("8", "checkpoint not found or invalid"),
    ("9", "configuration invalid (distill config, sidecar): the key and its allowed range"),
    ("10", "network source or sink unreachable: connection refused or reset, HTTP error (404, ...), or silent "
           "longer than --timeout"),
    ("130", "interrupted (Ctrl-C); nothing is left at a file output, unless the input or output is a stream "
            "(-, a URL, a device): then the output is finished with the frames restored so far"),
]


def _esc(text: str) -> str:
    """Escape roff specials in running text."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def _header(name: str, summary: str) -> list[str]:
    return [
        f'.TH {name.upper()} 1 "{date.today():%B %Y}" "vir {__version__}" "User Commands"',
        ".SH NAME",
        f"{_esc(name)} \\- {_esc(summary)}",
    ]


def _options(params) -> list[str]:
    lines: list[str] = []
    for p in params:
        if p.param_type_name != "option" or p.hidden:
            continue
        flags = ", ".join(f"\\fB{_esc(o)}\\fR" for o in [*p.opts, *p.secondary_opts])
        metavar = "" if p.is_flag else f" \\fI{_esc(p.metavar or p.name.upper())}\\fR"
        lines += [".TP", flags + metavar]
        text = p.help or ""
        if not p.is_flag and p.default not in (None, ...) and not callable(p.default):
            text += f" Default: {p.default}."
        lines.append(_esc(text))
    return lines


def _arg(a) -> str:  # noqa: ANN001 - a Click argument
    """An argument's name as the synopsis shows it: NAME, or NAME... when it takes several."""
    return _esc(a.name.upper()) + ("..." if a.nargs != 1 else "")


def command_page(app: typer.Typer, name: str) -> str:
    """The roff page of `vir <name>`."""
    group = typer.main.get_command(app)
    cmd = group.commands[name]
    summary = (cmd.help or "").strip().splitlines()[0]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    synopsis = f"\\fBvir {name}\\fR [\\fIOPTIONS\\fR] " + " ".join(f"\\fI{_arg(a)}\\fR" for a in args)
    lines = _header(f"vir-{name}", summary) + [".SH SYNOPSIS", synopsis, ".SH DESCRIPTION", _esc(cmd.help or "")]
    if args:
        lines.append(".SH ARGUMENTS")
        for a in args:
            lines += [".TP", f"\\fI{_arg(a)}\\fR", _esc(getattr(a, "help", "") or "")]
    lines += [".SH OPTIONS"] + _options(cmd.params)
    if cmd.epilog:
        lines += [".SH EXAMPLES", ".nf"] + [_esc(line) for line in cmd.epilog.strip().splitlines()
                                           if line.strip() and not line.startswith("Examples")] + [".fi"]
    lines += [".SH EXIT STATUS"] + [f".TP\n{c}\n{_esc(t)}" for c, t in EXIT_CODES]
    lines += [".SH SEE ALSO", "\\fBvir\\fR(1)"]
    return "\n".join(lines) + "\n"


def main_page(app: typer.Typer) -> str:
    """The roff page of `vir` itself: global options and the command list."""
    group = typer.main.get_command(app)
    lines = _header("vir", "real-time video restoration with one-step causal students (InstantViR)")
    lines += [".SH SYNOPSIS", "\\fBvir\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
              ".SH DESCRIPTION", _esc(group.help or ""), ".SH GLOBAL OPTIONS"] + _options(group.params)
    lines.append(".SH COMMANDS")
    for name, cmd in sorted(group.commands.items()):
        lines += [".TP", f"\\fBvir {name}\\fR", _esc((cmd.help or "").strip().splitlines()[0])]
    lines += [
        ".SH ENVIRONMENT",
        ".TP", "\\fBVIR_DEVICE\\fR", "Default for \\-\\-device.",
        ".TP", "\\fBVIR_CHECKPOINT\\fR", "Learned model weights used when \\-\\-checkpoint is not given.",
        ".TP", "\\fBVIR_DEFAULT_MALLOC\\fR", "Set to 1 to keep glibc's malloc defaults (vir otherwise raises its mmap "
        "and trim thresholds so that frame-sized buffers are reused, not faulted in anew).",
        ".TP", "\\fBVIR_MAX_PIXELS\\fR", "Pixels a frame may have, input or output (default 35389440, 8192 x 4320); "
        "a larger frame is refused with exit 4 before it is decoded.",
        ".SH EXIT STATUS",
    ] + [f".TP\n{c}\n{_esc(t)}" for c, t in EXIT_CODES]
    lines += [".SH SEE ALSO", ", ".join(f"\\fBvir\\-{n}\\fR(1)" for n in sorted(group.commands))]
    return "\n".join(lines) + "\n"


def write_pages(app: typer.Typer, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "vir.1"]
    written[0].write_text(main_page(app))
    for name in typer.main.get_command(app).commands:
        path = folder / f"vir-{name}.1"
        path.write_text(command_page(app, name))
        written.append(path)
    return written


if __name__ == "__main__":
    from instantvir_cli.cli import app

    for p in write_pages(app, Path(sys.argv[1] if len(sys.argv) > 1 else "man")):
        print(p)
