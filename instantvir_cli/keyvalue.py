"""KEY=VALUE option lists from the command line (`-e`, `--input-opt`), parsed one way."""

from __future__ import annotations

from instantvir_cli.errors import UsageError


def parse_key_values(pairs: list[str] | None, what: str) -> dict[str, str]:
    """['tune=film', 'g=48'] -> {'tune': 'film', 'g': '48'}; `what` names the option in the error."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must be KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


__all__ = ["parse_key_values"]
