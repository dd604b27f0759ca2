"""`video.endpoint`: which text names a file, a pipe, a URL or a device, and a sink's container."""

from __future__ import annotations

import pytest

from instantvir_cli.errors import UsageError
from instantvir_cli.video.endpoint import Sink, Source, is_url, parse_options


@pytest.mark.parametrize("text, kind", [
    ("clip.mkv", "file"), ("-", "pipe"), ("http://h/x.mkv", "url"), ("rtsp://h:554/s", "url"),
    ("udp://127.0.0.1:1234", "url"), ("file:clip.mkv", "url"), ("FILE:/tmp/x.ts", "url"), ("C:\\v\\a.mp4", "file"),
])
def test_source_kinds(text, kind):
    assert Source.parse(text).kind == kind


def test_a_path_with_an_input_format_is_a_device():
    src = Source.parse("/dev/video0", format="v4l2", options={"video_size": "320x240"})
    assert (src.kind, src.format, src.options) == ("device", "v4l2", {"video_size": "320x240"})


def test_an_existing_file_is_never_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file:odd.mkv").write_bytes(b"x")
    assert not is_url("file:odd.mkv")


@pytest.mark.parametrize("text, fmt, want", [
    ("-", None, "matroska"), ("-", "nut", "nut"), ("udp://127.0.0.1:5000", None, "mpegts"),
    ("rtmp://h/live/key", None, "flv"), ("srt://h:9000", None, "mpegts"), ("file:/tmp/x.ts", None, None),
])
def test_sink_formats(text, fmt, want):
    assert Sink.parse(text, fmt).format == want


def test_sink_suffix_follows_the_container():
    assert Sink.parse("-").suffix == ".mkv" and Sink.parse("-", "mp4").suffix == ".mp4"
    assert Sink.parse("file:/tmp/x.ts").suffix == ".ts"


@pytest.mark.parametrize("args", [("x.mkv", "nut"), ("http://h/up", None), ("-", "nosuchformat")])
def test_sink_refusals(args):
    with pytest.raises(UsageError):
        Sink.parse(*args)


def test_options_and_timeout():
    assert parse_options(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError):
        parse_options(["novalue"])
    with pytest.raises(UsageError):
        Source.parse("-", timeout=0)
