"""Checks on input and output paths that every command applies before touching a file."""

from __future__ import annotations

import os
from pathlib import Path

from instantvir_cli.errors import InputNotFound, InputUnreadable, OutputRefused

SIDECAR_SUFFIX = ".vir.json"


def check_input_path(path: Path) -> Path:
    """Return `path` if it is a readable, non-empty regular file, else raise the matching error."""
    if not path.exists():
        raise InputNotFound(f"input not found: {path}")
    if path.is_dir():
        raise InputNotFound(f"input is a folder, not a video file: {path}")
    if not path.is_file():
        raise InputNotFound(f"input is not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise InputUnreadable(f"input is not readable (permissions): {path}")
    if path.stat().st_size == 0:
        raise InputUnreadable(f"input is empty (0 bytes): {path}")
    return path


def check_output_path(output: Path, inputs: list[Path], overwrite: bool) -> Path:
    """Refuse an output that is one of the inputs, exists (without overwrite) or can't be created."""
    out_resolved = output.expanduser().resolve()
    for inp in inputs:
        if inp.exists() and out_resolved == inp.expanduser().resolve():
            raise OutputRefused(f"output is the same file as the input: {output}")
    if out_resolved.is_dir():
        raise OutputRefused(f"output is a folder: {output}")
    if output.exists() and not overwrite:
        raise OutputRefused(f"output exists: {output} (pass --overwrite to replace it)")
    parent = out_resolved.parent
    if not parent.is_dir():
        raise OutputRefused(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputRefused(f"output folder is not writable: {parent}")
    return output


def sidecar_path(video: Path) -> Path:
    """`clip.mkv` -> `clip.mkv.vir.json`: where `degrade` records the operator it applied."""
    return video.with_name(video.name + SIDECAR_SUFFIX)


def default_output_path(input_path: Path, tag: str, suffix: str | None = None) -> Path:
    """`in.mp4` -> `in.<tag>.mp4` beside the input."""
    return input_path.with_name(f"{input_path.stem}.{tag}{suffix or input_path.suffix or '.mp4'}")
