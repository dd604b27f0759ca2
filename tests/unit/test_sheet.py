"""Panels side by side (sheet.py) and their labels (font.py)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from instantvir_cli import font
from instantvir_cli.errors import UsageError
from instantvir_cli.sheet import BACKGROUND, BOX, GAP, Crop, compose, encode_png, layout


def test_every_printable_character_has_its_own_glyph():
    chars = [chr(c) for c in range(32, 127)]
    assert set(font.GLYPHS) == set(chars)
    shapes = {font.glyph(c).tobytes() for c in chars}
    assert len(shapes) == len(chars)                   # no two characters look the same
    assert not font.glyph(" ").any() and all(font.glyph(c).any() for c in chars[1:])
    assert font.glyph("é").tobytes() == font.glyph("?").tobytes()


def test_text_is_drawn_inside_its_box_at_its_scale():
    img = np.zeros((40, 200, 3), np.uint8)
    end = font.draw_text(img, 10, 5, "vir 4x", scale=2, colour=(200, 100, 50))
    ys, xs = np.nonzero(img.any(2))
    assert xs.min() >= 10 and xs.max() < 10 + font.text_width("vir 4x", 2)
    assert ys.min() >= 5 and ys.max() < 5 + font.text_height(2)
    assert end == 10 + font.text_width("vir 4x", 2) + 2
    assert {tuple(v) for v in img[ys, xs]} == {(200, 100, 50)}
    # scale 2 is scale 1 with every pixel doubled
    one = np.zeros((20, 100, 3), np.uint8)
    font.draw_text(one, 0, 0, "vir 4x", scale=1)
    two = np.zeros((40, 200, 3), np.uint8)
    font.draw_text(two, 0, 0, "vir 4x", scale=2)
    assert np.array_equal(two.any(2), one.any(2).repeat(2, 0).repeat(2, 1))


def test_text_past_the_edge_is_clipped_and_long_text_cut():
    img = np.zeros((10, 30, 3), np.uint8)
    font.draw_text(img, 20, 4, "WWWW", scale=1)           # runs off the right and bottom edges
    assert img[:, 20:].any() and not img[:, :20].any()
    assert font.fit_text("a long file name.mkv", font.text_width("a long", 1)) == "a lo.."
    assert font.fit_text("short", 100) == "short"


@pytest.mark.parametrize("text", ["1,2,3", "1,2,3,x", "-1,0,4,4", "0,0,0,5", ""])
def test_crop_must_be_four_sensible_numbers(text):
    with pytest.raises(UsageError):
        Crop.parse(text)


def test_crop_outside_the_frame_is_refused():
    with pytest.raises(UsageError, match="outside"):
        layout(2, 64, 48, Crop(40, 10, 30, 10))


def _panels(n, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(60, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _background_columns(img, rows):
    """Columns that are the background colour over the given rows."""
    return np.nonzero((img[rows] == BACKGROUND).all(2).all(0))[0]


@pytest.mark.parametrize("n", [1, 3, 4])
def test_sheet_size_and_panels(n):
    lay = layout(n, 64, 48)
    frames = _panels(n)
    img = compose(lay, frames, [[f"panel {i}", "PSNR 30.00 dB"] for i in range(n)])
    assert img.shape == (lay.sheet_h, lay.sheet_w, 3)
    assert lay.sheet_w == n * 64 + (n + 1) * GAP and lay.sheet_h % 2 == 0
    for i, frame in enumerate(frames):                  # each frame, unchanged, where its panel is
        x = lay.panel_x(i)
        assert np.array_equal(img[lay.frame_y:lay.frame_y + 48, x:x + 64], frame)
    # across the frames' rows the background shows only in the gaps: n panels, n + 1 gaps
    cols = _background_columns(img, slice(lay.frame_y, lay.frame_y + 48))
    runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
    assert len(runs) == n + 1 and all(len(r) == GAP for r in runs)
    assert img[GAP:lay.frame_y].any() and (img[GAP:lay.frame_y] != BACKGROUND).any()   # labels drawn


def test_crop_is_boxed_and_zoomed_below_each_panel():
    crop = Crop(8, 6, 16, 12)
    lay = layout(2, 64, 48, crop, lines=3)
    assert lay.zoom == 4 and (lay.inset_w, lay.inset_h) == (64, 48)
    frames = _panels(2)
    img = compose(lay, frames, [["a", "b", "c"], ["d", "e", "f"]])
    for i, frame in enumerate(frames):
        x = lay.panel_x(i)
        inset = img[lay.inset_y:lay.inset_y + 48, x:x + 64]
        assert np.array_equal(inset, frame[6:18, 8:24].repeat(4, 0).repeat(4, 1))
        shown = img[lay.frame_y:lay.frame_y + 48, x:x + 64]
        assert np.array_equal(shown[6:18, 8:24], frame[6:18, 8:24])      # the crop itself is not drawn over
        assert (shown[5, 7:25] == BOX).all() and (shown[18, 7:25] == BOX).all()   # the box around it
        assert (shown[6:18, 7] == BOX).all() and (shown[6:18, 24] == BOX).all()


def test_png_decodes_to_the_same_pixels():
    img = compose(layout(2, 31, 17), _panels(2, 31, 17), [["x"], ["y"]])
    with av.open(io.BytesIO(encode_png(img))) as c:
        back = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(back, img)
