"""Where video comes from and goes: a regular file, a pipe (`-`), a URL or a capture device.

    Source.parse("clip.mkv")                      a file: checked as a path, probed, sidecar beside it
    Source.parse("-")                             stdin: read once, without seeking
    Source.parse("http://host/clip.mkv")          a URL FFmpeg opens (http(s), rtsp, rtmp(s), udp, tcp, file:;
                                                  srt where FFmpeg has libsrt, which PyAV's wheels lack: exit 2)
    Source.parse("/dev/video0", format="v4l2")    a device, opened by FFmpeg with its input format
    Sink.parse("-", format="matroska")            stdout; a URL sink: `udp://127.0.0.1:1234` (mpegts)

Files keep the all-or-nothing rules of `atomic.py`. Every other endpoint is a stream: it is read
or written once, in order, by FFmpeg itself, and what was written is what the reader gets, so a
stream output is finished (encoder flushed, trailer written) whenever vir stops. URLs are opened
with a timeout (PyAV's interrupt callback, and FFmpeg's `rw_timeout`): a refused connection, an
HTTP error or silence longer than the timeout is `NetworkError` (exit 10), never a hang.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from instantvir_cli.errors import InputUnreadable, NetworkError, OutputRefused, UsageError
from instantvir_cli.keyvalue import parse_key_values
from instantvir_cli.limits import NETWORK_TIMEOUT_S
from instantvir_cli.video.info import MOV

DEFAULT_TIMEOUT = NETWORK_TIMEOUT_S     # seconds a URL may stay silent (limits.py)
PIPE_FORMAT = "matroska"   # the container written to stdout without --format
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|file:)", re.IGNORECASE)   # scheme://... or file:...
# a URL sink's container when --format is not given
SCHEME_FORMAT = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv",
                 "rtmps": "flv", "rtsp": "rtsp"}
# a container's usual file suffix (the writer's codec choices follow it)
FORMAT_SUFFIX = {"matroska": ".mkv", "webm": ".webm", "mp4": ".mp4", "mov": ".mov", "mpegts": ".ts",
                 "flv": ".flv", "nut": ".nut", "avi": ".avi", "rtp_mpegts": ".ts", "rtsp": ".ts"}
_NETWORK_ERRORS = tuple(getattr(av.error, n) for n in (
    "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError", "TimeoutError", "ExitError",
    "HTTPError", "HTTPClientError", "BrokenPipeError") if hasattr(av.error, n))


def is_url(text: str) -> bool:
    """`http://...`, `udp://...`, `file:clip.mkv`: a name FFmpeg's protocols open (not a path)."""
    return bool(_URL.match(text)) and not Path(text).exists()


def parse_options(pairs: list[str] | None, what: str = "--input-opt") -> dict[str, str]:
    """['listen=1', 'video_size=640x480'] -> {'listen': '1', 'video_size': '640x480'}."""
    return parse_key_values(pairs, what)


@dataclass(frozen=True)
class Source:
    """A video input. kind: file | pipe | url | device; `format` and `options` go to FFmpeg's demuxer."""

    spec: str
    kind: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, text: str | Path, format: str | None = None, options: dict[str, str] | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> Source:
        text = str(text)
        if timeout <= 0:
            raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
        kind = "pipe" if text == "-" else "url" if is_url(text) else "device" if format else "file"
        return cls(text, kind, format, dict(options or {}), timeout)

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def path(self) -> Path:
        """The file's path (also a name for messages about the other kinds)."""
        return Path(self.spec) if self.kind in ("file", "device") else Path(self.name)

    @property
    def name(self) -> str:
        """How messages name it."""
        return "stdin" if self.kind == "pipe" else Path(self.spec).name if self.kind == "file" else self.spec

    def open(self) -> av.container.InputContainer:
        """The opened container; errors: NetworkError (a URL), InputUnreadable (the rest)."""
        from instantvir_cli.limits import max_pixels

        options = {"max_pixels": str(max_pixels()), **self.options}
        kwargs: dict = {}
        if self.kind == "url":
            options.setdefault("rw_timeout", str(int(self.timeout * 1e6)))
            kwargs["timeout"] = self.timeout
        target = _Stdin(sys.stdin.buffer) if self.kind == "pipe" else self.spec
        t0 = time.monotonic()
        try:
            container = av.open(target, mode="r", format=self.format, options=options, **kwargs)
        except PermissionError:
            raise InputUnreadable(f"input is not readable (permissions): {self.spec}") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
            raise self._error(e, time.monotonic() - t0) from None
        if self.kind == "pipe" and container.format.name == MOV:
            v = container.streams.video[0] if container.streams.video else None
            if v is not None and v.codec_context is not None and v.codec_context.format is None:
                container.close()
                raise InputUnreadable(SEEK_HINT)
        return container

    def _error(self, e: BaseException, seconds: float) -> Exception:
        from instantvir_cli.video.info import _reason

        reason = _reason(e)
        if self.kind == "url" and (network_failure(e) or seconds >= 0.9 * self.timeout):
            if seconds >= 0.9 * self.timeout or isinstance(e, (av.error.ExitError, av.error.TimeoutError)):
                reason = f"no answer within {self.timeout:g} s (--timeout)"
            return NetworkError(f"can't open {self.spec}: {reason}")
        if isinstance(e, av.error.ProtocolNotFoundError):
            return UsageError(f"can't open {self.spec}: PyAV's FFmpeg has no such protocol")
        if self.kind == "pipe":
            hint = f"; {SEEK_HINT}" if "moov" in reason.lower() else " (stdin takes matroska, nut, mpegts, y4m, ...)"
            return InputUnreadable(f"not a readable video stream on stdin ({reason}){hint}")
        if self.kind == "device" and self.format:
            return InputUnreadable(f"can't open {self.spec} as {self.format}: {reason}")
        return InputUnreadable(f"not a readable video: {self.spec} ({reason})")


SEEK_HINT = ("an MP4/MOV with its index (moov) at the end needs seeking, which stdin can't do: remux it with "
             "-movflags +faststart, or pipe matroska, nut or mpegts")


def network_failure(e: BaseException) -> bool:
    """Whether an FFmpeg error is the network's: refused, reset, HTTP error, timeout, interrupted."""
    return isinstance(e, _NETWORK_ERRORS) or getattr(e, "errno", None) in (101, 104, 110, 111, 113)


@dataclass(frozen=True)
class Sink:
    """A video output. kind: file | pipe | url; `format`: the container (pipes and URLs)."""

    spec: str
    kind: str
    format: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, text: str | Path, format: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Sink:
        text = str(text)
        kind = "pipe" if text == "-" else "url" if is_url(text) else "file"
        if kind == "file":
            if format is not None:
                raise UsageError("--format names the container of a pipe (-o -) or URL output; a file's "
                                 "extension picks its own")
            return cls(text, kind, None, timeout)
        if kind == "pipe":
            format = format or PIPE_FORMAT
        else:
            scheme = text.split(":", 1)[0].lower()
            format = format or SCHEME_FORMAT.get(scheme)
            if format is None and scheme != "file":
                raise UsageError(f"-o {text}: name the container with --format (e.g. mpegts, flv, matroska)")
        if format is not None:
            try:
                av.format.ContainerFormat(format, "w")
            except (ValueError, av.error.FFmpegError):
                raise UsageError(f"unknown output format {format!r} (see ffmpeg -muxers)") from None
        return cls(text, kind, format, timeout)

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def path(self) -> Path:
        return Path(self.spec) if self.kind == "file" else Path(self.name)

    @property
    def name(self) -> str:
        return "stdout" if self.kind == "pipe" else Path(self.spec).name if self.kind == "file" else self.spec

    @property
    def suffix(self) -> str:
        """The file suffix its container usually has (the writer's codec choices follow it)."""
        if self.kind == "file" or self.format is None:
            return Path(self.spec.split("?", 1)[0]).suffix.lower()
        return FORMAT_SUFFIX.get(self.format, "." + self.format)

    def open(self) -> av.container.OutputContainer:
        """The opened container (stdout or the URL); errors: NetworkError, OutputRefused."""
        options: dict[str, str] = {}
        if self.suffix in (".mp4", ".mov", ".m4v"):     # no seeking back to write the index
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        kwargs: dict = {}
        if self.kind == "url":
            kwargs["timeout"] = self.timeout
        if self.kind == "pipe" and sys.stdout.isatty():
            raise UsageError("-o - writes video to stdout, which is a terminal here: pipe it into a program or "
                             "a file")
        target = _Stdout(sys.stdout.buffer) if self.kind == "pipe" else self.spec
        try:
            return av.open(target, mode="w", format=self.format, container_options=options or None, **kwargs)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise self.error(e) from None

    def flush(self) -> None:
        """Push stdout's buffered bytes out (nothing for a URL: FFmpeg wrote them)."""
        if self.kind == "pipe":
            _Stdout(sys.stdout.buffer).flush()

    def error(self, e: BaseException, doing: str = "open") -> Exception:
        """The error for a failure to `doing` (open, write) this sink."""
        from instantvir_cli.video.info import _reason

        if self.kind == "url" and network_failure(e):
            reason = _reason(e)
            if isinstance(e, (av.error.ExitError, av.error.TimeoutError)):
                reason = f"no progress within {self.timeout:g} s (--timeout)"
            return NetworkError(f"can't {doing} {self.spec}: {reason}")
        return OutputRefused(f"can't {doing} {self.name}: {_reason(e)}")


class _Stdin:
    """stdin for PyAV: `read` only, so FFmpeg treats it as the pipe it is (no seeking).

    It reads the file descriptor itself where there is one: a read blocked in the reader's thread
    then holds no lock of Python's, which would stop the interpreter from exiting after Ctrl-C."""

    def __init__(self, raw):
        self._raw = raw
        try:
            self._fd: int | None = raw.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def read(self, n: int) -> bytes:
        if self._fd is None:
            return self._raw.read(n)
        import os

        return os.read(self._fd, n)


class _Stdout:
    """stdout for PyAV: `write` only (not seekable), flushed as it goes so a reader downstream
    gets each packet."""

    def __init__(self, raw):
        self._raw = raw

    def write(self, data) -> int:
        try:
            self._raw.write(data)
        except BrokenPipeError:
            _detach_stdout()
            raise
        return len(data)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except BrokenPipeError:
            _detach_stdout()
            raise


def _detach_stdout() -> None:
    """The reader of stdout went away: point fd 1 at /dev/null so that the interpreter's own
    flush at exit has nowhere to fail (Python's advice for SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


__all__ = ["DEFAULT_TIMEOUT", "PIPE_FORMAT", "SEEK_HINT", "Sink", "Source", "is_url", "network_failure",
           "parse_options"]
