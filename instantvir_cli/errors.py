"""Domain errors and their exit codes.

The core raises these; the CLI turns each into one line on stderr and its exit code.
Codes (documented in README and man/vir.1):

    0  success
    1  unexpected internal failure (a bug: please report)
    2  usage error (unknown option or task, bad value)            -- Click's convention
    3  input not found or not a regular file
    4  input unreadable: empty, not a media file, no video stream, no frames; frames over the
       size limit or too large for memory
    5  input corrupt or truncated part-way through (the message names the frame)
    6  output refused: same as input, exists without --overwrite, being written by another vir,
       not writable, disk full
    7  mask invalid: wrong size, unreadable, not the file a sidecar recorded
    8  checkpoint not found or invalid
    9  configuration invalid (distill config, sidecar)
   10  network source or sink unreachable: connection refused or reset, HTTP error, timed out
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations


class VirError(Exception):
    """Base of all user-facing errors; `exit_code` is what the CLI exits with.

    A subclass names its code in its header: `class UsageError(VirError, exit_code=2)`.
    """

    exit_code = 1

    def __init_subclass__(cls, exit_code: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code


class UsageError(VirError, exit_code=2):
    """Unknown option or task, or a bad value."""


# the input
class InputNotFound(VirError, exit_code=3):
    """Not found, or not a regular file."""
class InputUnreadable(VirError, exit_code=4):
    """Empty, not a media file, no video stream, no frames."""
class InputCorrupt(VirError, exit_code=5):
    """Corrupt or truncated part-way through."""


# what vir writes, and what it reads besides the input
class OutputRefused(VirError, exit_code=6):
    """Same as the input, exists without --overwrite, not writable, or the disk is full."""
class MaskInvalid(VirError, exit_code=7):
    """Wrong size or unreadable."""
class CheckpointError(VirError, exit_code=8):
    """Not found, unreadable, or not describing the models it holds."""
class ConfigError(VirError, exit_code=9):
    """A distill config or a sidecar that is invalid."""
class NetworkError(VirError, exit_code=10):
    """A URL source or sink that can't be reached or stops answering: refused, HTTP error, timed out."""


EXIT_INTERRUPTED = 130
