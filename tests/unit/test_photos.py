"""The photographs of the footage catalogue (instantvir_cli.photos): their licences and splits, the
size bound, fetching into the cache, refusal of val and test photos in training, and the windows
and data packs made of them."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from instantvir_cli import footage, photos
from instantvir_cli.config import DataConfig, load_config
from instantvir_cli.distill import data
from instantvir_cli.distill.data import ImageSource, Sources, WindowDataset, find_sources, load_image
from instantvir_cli.distill.pack import open_pack
from instantvir_cli.distill.packing import build_pack
from instantvir_cli.errors import ConfigError, InputNotFound, InputUnreadable
from tests.debs import build_deb

ROOT = Path(__file__).resolve().parents[2]
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian's dpkg)")


# ----------------------------------------------------------------------------- the catalogue
def test_every_photo_has_a_source_a_licence_a_split_a_description_and_a_size():
    assert len(photos.PHOTOS) >= 50
    for name, p in photos.PHOTOS.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert p.source.kind in ("wheel", "deb"), name
        assert p.licence.strip() and p.licence == p.licence.strip(), name
        assert p.split in footage.SPLITS, name
        assert p.description.strip() and "\n" not in p.description, name
        assert p.size[0] > 0 and p.size[1] > 0, name
        assert p.suffix in (".jpg", ".png"), name
        if p.source.kind == "deb":      # its licence is its paragraph's in the package's copyright file
            assert p.copyright_path and not p.notice, name
        else:                           # a wheel: a notice member linking a Creative Commons deed
            assert p.notice and not p.copyright_path and photos.cc_deed(p.licence), name


def test_names_are_unique_and_clash_with_no_clip_and_no_skimage_photograph(tmp_path):
    names = list(photos.PHOTOS)
    assert len({n.lower() for n in names}) == len(names)
    assert not set(names) & set(footage.CLIPS)                  # captions are keyed by source name
    assert not [n for n in names if hasattr(skimage.data, n)]   # data.images takes both kinds of name
    assert len({(p.source, p.member) for p in photos.PHOTOS.values()}) == len(names)
    assert len({photos.photo_path(n, tmp_path) for n in names}) == len(names)
    assert photos.photo_path("rubber_whale", tmp_path) == tmp_path / "photos" / "rubber_whale.png"


def test_no_lena_and_no_reserved_package():
    for name, p in photos.PHOTOS.items():
        text = f"{name} {p.source.name} {p.member}".lower().replace("-", "").replace("_", "")
        assert "lena" not in text and not any(r in text for r in footage.RESERVED_PACKAGES), name


def test_the_splits_partition_the_photos_mostly_train():
    by_split = {s: photos.split_photos(s) for s in footage.SPLITS}
    assert sorted(n for names in by_split.values() for n in names) == sorted(photos.PHOTOS)
    assert {s: len(n) for s, n in by_split.items()} == {"train": 39, "val": 5, "test": 10}   # docs/training.md
    assert "baboon" in by_split["test"] and "fruits" in by_split["val"] and "nuthatch" in by_split["train"]
    for a, b in (("leuven_a", "leuven_b"), ("aerial_a", "aerial_b"), ("apple", "orange")):   # one scene, one split
        assert photos.PHOTOS[a].split == photos.PHOTOS[b].split
    with pytest.raises(InputNotFound, match="unknown split 'holdout'"):
        photos.split_photos("holdout")


def test_licences_are_the_ones_the_packages_state():
    licences = {p.licence for p in photos.PHOTOS.values()}
    assert licences == {"CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-SA-3.0", "CC0-1.0", "GPL-2+", "CC-BY-2.0",
                        "Apache-2.0 AND BSD-3-Clause"}
    assert photos.PHOTOS["dandelions"].licence == "CC0-1.0"
    assert photos.PHOTOS["china"].licence == photos.PHOTOS["flower"].licence == "CC-BY-2.0"
    for p in photos.PHOTOS.values():
        if p.source.name == "plasma-workspace-wallpapers":   # the copyright file and metadata.json differ
            assert p.licence == "GPL-2+" and "metadata.json: LGPLv3" in p.description


def test_the_size_bound():
    assert photos.used_size((5312, 2988)) == (1771, 996)      # k = 3
    assert photos.used_size((2560, 1600)) == (1280, 800)      # k = 2
    assert photos.used_size((1920, 1200)) == (1920, 1200)     # within: unchanged
    assert photos.used_size((2560, 3837)) == (1280, 1918)     # portrait: the long side counts
    assert photos.used_size((2560, 1600), photos.PACK_SIDE) == (512, 320)
    for name, p in photos.PHOTOS.items():
        w, h = photos.used_size(p.size)
        assert max(w, h) <= photos.MAX_SIDE and min(w, h) >= 240, name
        assert abs(w / h - p.size[0] / p.size[1]) < 0.01, name
        assert max(photos.used_size(p.size, photos.PACK_SIDE)) <= photos.PACK_SIDE, name
    total = sum(p.megapixels for p in photos.PHOTOS.values())
    assert 50 < total < 65, total                              # docs/training.md: 57.8


def test_downscaling_is_antialiased():
    """A one-pixel checkerboard halved is flat grey: no aliasing (nearest-neighbour would keep it
    black or white)."""
    board = (np.indices((1600, 2560)).sum(0) % 2 * 255).astype(np.uint8)
    a = photos.bound(np.repeat(board[..., None], 3, axis=2))
    assert a.shape == (800, 1280, 3) and a.dtype == np.uint8
    assert abs(float(a[10:-10, 10:-10].mean()) - 127.5) < 2 and float(a[10:-10, 10:-10].std()) < 3
    small = np.zeros((480, 640, 3), np.uint8)
    assert photos.bound(small) is small


def test_creative_commons_deeds():
    assert photos.cc_deed("CC-BY-2.0") == "creativecommons.org/licenses/by/2.0"
    assert photos.cc_deed("CC-BY-SA-4.0") == "creativecommons.org/licenses/by-sa/4.0"
    assert photos.cc_deed("GPL-2+") == "" and photos.cc_deed("CC0-1.0") == ""


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mate-backgrounds

Files: nature/Aqua.jpg
       nature/Garden.jpg
Copyright: 2008, Charles Barbin
License: GPL-2+

Files: desktop/Ubuntu-Mate-*-no-logo.png
Copyright: 2014 Goce Mitevski
License: CC-BY-SA-4.0

Files: debian/*
Copyright: 2011 someone
License: GPL-2+

License: GPL-2+
 This program is free software; ...
 .
 License: not a field (an indented line of the text)
"""


def test_a_file_licence_is_read_from_its_copyright_paragraph():
    assert footage.deb_file_licence(COPYRIGHT, "nature/Garden.jpg") == "GPL-2+"      # a continued Files field
    assert footage.deb_file_licence(COPYRIGHT, "desktop/Ubuntu-Mate-Dark-no-logo.png") == "CC-BY-SA-4.0"
    assert footage.deb_file_licence(COPYRIGHT, "nature/Storm.jpg") == ""               # in no paragraph
    assert footage.deb_licence(COPYRIGHT) == ""                                        # no Files: *
    later = COPYRIGHT.replace("Files: debian/*", "Files: *\nCopyright: x\nLicense: MIT\n\nFiles: debian/*")
    assert footage.deb_licence(later) == "MIT"
    assert footage.deb_file_licence(later, "nature/Garden.jpg") == "MIT"              # the last match wins
    assert footage.deb_file_licence(later, "debian/rules") == "GPL-2+"


def test_licence_problems_are_named():
    marigold = photos.PHOTOS["marigold"]
    assert photos.licence_problem(marigold, {"licence": COPYRIGHT}) == ""
    other = COPYRIGHT.replace("License: GPL-2+\n\nFiles: desktop", "License: CC-BY-NC-4.0\n\nFiles: desktop")
    assert "gives nature/Garden.jpg the licence 'CC-BY-NC-4.0'" in photos.licence_problem(marigold, {"licence": other})
    assert "licence 'none'" in photos.licence_problem(marigold, {})
    flower = photos.PHOTOS["flower"]
    readme = "Image: flower.jpg\nReleased under a creative commons license. [1]\n[1] https://creativecommons.org/licenses/by/2.0/\n"
    assert photos.licence_problem(flower, {flower.notice: readme}) == ""
    assert "does not state CC-BY-2.0" in photos.licence_problem(flower, {flower.notice: readme.replace("by/2.0", "by-nc/2.0")})
    assert "does not state" in photos.licence_problem(flower, {})


# ----------------------------------------------------------------------------- fetching, offline
def _jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    """A smooth random JPEG of `size` (width, height)."""
    g = np.random.default_rng(seed)
    small = g.integers(0, 256, (size[1] // 64 + 1, size[0] // 64 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()




@pytest.fixture
def fake_mate(tmp_path, monkeypatch):
    """`apt-get download mate-backgrounds` gives a tiny package: marigold (a 2560x1600 JPEG, as
    catalogued) and aqua under the real copyright paragraphs; returns (calls, set_copyright)."""
    marigold, aqua = photos.PHOTOS["marigold"], photos.PHOTOS["water_drop"]
    state = {"copyright": COPYRIGHT}
    calls: list[str] = []
    real_run = subprocess.run

    def fake_apt(cmd, **kw):
        if cmd[:2] != ["apt-get", "download"]:
            return real_run(cmd, **kw)
        calls.append(cmd[-1])
        d = tmp_path / f"deb{len(calls)}"
        deb = build_deb(d, "mate-backgrounds", {marigold.member: _jpeg(marigold.size), aqua.member: _jpeg(aqua.size, 1),
                                                 "usr/share/doc/mate-backgrounds/copyright": state["copyright"].encode()})
        shutil.copy(deb, Path(kw["cwd"]) / deb.name)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(footage.subprocess, "run", fake_apt)
    monkeypatch.setenv("VIR_FOOTAGE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_IMAGES", {})             # load_image's per-process cache
    return calls, lambda text: state.update(copyright=text)


@needs_dpkg
def test_photos_are_fetched_once_and_used_bounded(fake_mate, tmp_path):
    calls, _ = fake_mate
    got = photos.fetch_photos(("marigold", "water_drop"))
    assert calls == ["mate-backgrounds"] and got["marigold"] == tmp_path / "cache" / "photos" / "marigold.jpg"
    assert sorted(p.name for p in (tmp_path / "cache" / "photos").iterdir()) == ["marigold.jpg", "water_drop.jpg"]
    a = photos.photo_array("marigold")                   # the package's 2560x1600, used at 1280x800
    assert a.shape == (800, 1280, 3) and a.dtype == np.uint8 and calls == ["mate-backgrounds"]
    assert photos.photo_array("marigold", photos.PACK_SIDE).shape == (320, 512, 3)


@needs_dpkg
def test_a_photo_of_another_licence_is_refused_and_nothing_is_cached(fake_mate, tmp_path):
    _, set_copyright = fake_mate
    set_copyright(COPYRIGHT.replace("License: GPL-2+\n\nFiles: desktop", "License: CC-BY-NC-4.0\n\nFiles: desktop"))
    with pytest.raises(InputNotFound, match=r"deb mate-backgrounds .*marigold: its copyright file gives "
                                            r"nature/Garden\.jpg the licence 'CC-BY-NC-4.0'.*records 'GPL-2\+'"):
        photos.fetch_photos(("marigold",))
    assert not list((tmp_path / "cache" / "photos").iterdir())


@needs_dpkg
def test_a_photo_of_another_size_is_refused(fake_mate, tmp_path, monkeypatch):
    monkeypatch.setitem(photos.PHOTOS, "marigold", dataclasses.replace(photos.PHOTOS["marigold"], size=(2560, 1700)))
    with pytest.raises(InputUnreadable, match=r"is 2560x1600, the catalogue records 2560x1700"):
        photos.photo_array("marigold")


def test_a_wheel_notice_is_checked(tmp_path, monkeypatch):
    flower = photos.PHOTOS["flower"]

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "scikit_learn-1.7.2-py3-none-any.whl", "w") as z:
            z.writestr(flower.member, _jpeg(flower.size))
            z.writestr(flower.notice, "Image: flower.jpg\nReleased under a creative commons license.\n")
            z.writestr("scikit_learn-1.7.2.dist-info/METADATA", "Name: scikit-learn\nLicense-Expression: BSD-3-Clause\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(footage.subprocess, "run", fake_pip)
    with pytest.raises(InputNotFound, match=r"scikit-learn==1\.7\.2 .*README\.txt does not state CC-BY-2\.0"):
        photos.fetch_photos(("flower",), tmp_path)
    assert not (tmp_path / "photos" / "flower.jpg").exists()


def test_unknown_photo_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(InputNotFound, match="unknown photograph 'nope'.*bridge"):
        photos.fetch_photos(("nope",), tmp_path)


# ----------------------------------------------------------------------------- training on them
def _data(**kw) -> DataConfig:
    base = {"paths": (), "footage": (), "images": ("marigold",), "val_clips": (), "frames": 5, "crop": 32,
            "val_frames": 9, "val_size": 32, "workers": 0}
    return DataConfig(**{**base, **kw})


@pytest.mark.parametrize("name, split", [("baboon", "test"), ("china", "test"), ("fruits", "val")])
def test_a_val_or_test_photo_in_training_is_refused(name, split, tmp_path, monkeypatch):
    monkeypatch.setattr(photos, "fetch_photos", lambda *a, **k: pytest.fail("fetched before the split check"))
    message = (r"^data\.images: 'baboon' is a test photograph: test photographs are never trained on$" if name == "baboon"
               else rf"^data\.images: '{name}' is a {split} photograph")
    with pytest.raises(ConfigError, match=message) as err:
        find_sources(_data(images=("astronaut", name)))
    assert err.value.exit_code == 9
    with pytest.raises(ConfigError, match=message):           # from a pack too, before it is opened
        find_sources(_data(images=(name,), pack=str(tmp_path / "no-pack")))


def test_an_unknown_image_name_says_where_names_come_from():
    with pytest.raises(ConfigError, match=r"'nope' is no photograph of the footage catalogue .*skimage\.data has no"):
        find_sources(_data(images=("nope",)))


def test_the_shipped_configs_name_only_train_photos():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        for n in load_config(path).data.images:
            assert n not in photos.PHOTOS or photos.PHOTOS[n].split == "train", (path.name, n)
    with_photos = load_config(ROOT / "configs" / "default-photos.toml").data
    assert set(photos.split_photos("train")) <= set(with_photos.images)
    assert set(load_config(ROOT / "configs" / "default.toml").data.images) <= set(with_photos.images)
    for name in ("default.toml", "device-default.toml"):     # the lead's to change
        assert not set(load_config(ROOT / "configs" / name).data.images) & set(photos.PHOTOS), name


@needs_dpkg
def test_a_fetched_photo_is_animated_into_windows(fake_mate):
    cfg = _data(images=("marigold",))
    s = find_sources(cfg)
    assert s.names["train_images"] == ["marigold"]
    img = load_image("marigold")
    assert img.shape == (3, 800, 1280) and -1.0 <= float(img.min()) and float(img.max()) <= 1.0
    ds = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="teacher")
    xs = [ds[i]["x"] for i in range(3)]
    assert all(x.shape == (3, 5, 32, 32) for x in xs) and torch.equal(xs[0], ds[0]["x"])
    assert len({float(x.sum()) for x in xs}) == 3


@needs_dpkg
def test_a_pack_holds_a_photo_bounded_with_its_licence_and_is_deterministic(fake_mate, tmp_path):
    cfg = _data(images=("marigold",))
    sources = Sources((), (ImageSource("marigold"),), ())
    m = build_pack(tmp_path / "p", cfg, sources, 4 << 20)
    (e,) = m["entries"]
    assert e["kind"] == "image" and e["shape"] == [320, 512, 3] and e["licence"] == "GPL-2+"
    assert e["split"] == "train" and e["source"] == "deb mate-backgrounds" and e["original_size"] == [2560, 1600]
    first = (tmp_path / "p" / e["file"]).read_bytes()
    again = build_pack(tmp_path / "q", cfg, sources, 4 << 20)
    assert (tmp_path / "q" / e["file"]).read_bytes() == first and again["entries"] == m["entries"]
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["entries"][0]["sha256"] == e["sha256"]
    packed = find_sources(_data(images=("marigold",), pack=str(tmp_path / "p")))
    data._IMAGES.clear()
    assert tuple(load_image("marigold", packed.train_images[0].packed).shape) == (3, 320, 512)
    assert open_pack(tmp_path / "p").entries[("image", "marigold")]["scale"] == 0.2


def test_main_lists_and_fetches_photos(tmp_path, monkeypatch, capsys):
    got = []
    monkeypatch.setattr(photos, "fetch_photos", lambda names, dest: got.append((names, dest)) or
                        {n: photos.photo_path(n, dest) for n in names})
    photos.main([str(tmp_path), "--split", "val"])
    assert got == [(photos.split_photos("val"), tmp_path)]
    assert capsys.readouterr().out.splitlines()[0] == str(tmp_path / "photos" / "drum_room.jpg")
    photos.main([])
    assert got[-1] == (tuple(photos.PHOTOS), None)
    photos.main(["--list"])
    table = capsys.readouterr().out
    assert all(f"| {n} |" in table for n in photos.PHOTOS) and "| 4352x2448 | 1451x816 |" in table


# ----------------------------------------------------------------------------- from the registries
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (a Debian machine)")
def test_real_photo_from_a_debian_package(tmp_path, monkeypatch):
    """Downloads lomiri-wallpapers-20.04's .deb (11 MB) from Debian: a registry failure fails the
    test. The nuthatch (6028x3391) is used at 1507x848 and animated into a window."""
    monkeypatch.setenv("VIR_FOOTAGE_DIR", str(tmp_path))
    cfg = _data(images=("nuthatch",))
    s = find_sources(cfg)
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["nuthatch.jpg"]
    assert photos.photo_array("nuthatch").shape == (848, 1507, 3)
    x = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="vae")[0]["x"]
    assert x.shape == (3, 5, 32, 32) and float(x.std()) > 0


@pytest.mark.slow
def test_every_catalogued_photo_is_in_its_package_as_catalogued(tmp_path):
    """Downloads every package of the photographs (about 280 MB: opencv-doc's 96 MB, plasma's 94 MB)."""
    for name in photos.fetch_photos(tuple(photos.PHOTOS), tmp_path):
        a = photos.photo_array(name, dest=tmp_path)
        assert (a.shape[1], a.shape[0]) == photos.used_size(photos.PHOTOS[name].size), name
