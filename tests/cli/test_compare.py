"""`vir compare`: a sheet checked for size, panels and pixels, and the side-by-side video's scores."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from instantvir_cli.sheet import BACKGROUND, GAP, Crop, layout
from instantvir_cli.vmaf import vmaf_unavailable
from tests.cli.helpers import assert_one_line_error, vir

W, H, FRAMES = 320, 240, 50       # clip_testsrc_audio


@pytest.fixture(scope="module")
def trio(clip_testsrc_audio, tmp_path_factory):
    """The clean clip, its sr4x measurement (80x60) and the classical restoration of that."""
    d = tmp_path_factory.mktemp("compare")
    low, up = d / "low.mkv", d / "up.mkv"
    assert vir("degrade", clip_testsrc_audio, low, "--task", "sr4x", "--no-progress").exit_code == 0
    assert vir("restore", low, "-o", up, "--model", "classical", "--lossless", "--no-progress").exit_code == 0
    return clip_testsrc_audio, low, up


def _png(path):
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def _decoded(path):
    """Every frame as vir decodes it (its colour matrix and range), in 8-bit levels."""
    from instantvir_cli.video import VideoReader

    with VideoReader(path, block_size=64) as reader:
        x = torch.cat([b.x for b in reader], 2)[0]                     # (3, T, H, W) in [-1, 1]
    return ((x + 1) * 127.5).round().permute(1, 2, 3, 0).numpy().astype(np.int16)


def _panel_count(img, rows):
    """Panels across `rows`: runs of columns that are not all background."""
    content = ~(img[rows] == BACKGROUND).all(2).all(0)
    return int(np.sum(content[1:] & ~content[:-1]) + content[0])


def test_sheet_size_panels_and_the_frame_shown(trio, tmp_path):
    clean, low, up = trio
    sheet = tmp_path / "sheet.png"
    result = vir("compare", clean, low, up, "-o", sheet, "--frame", "20", "--crop", "100,80,40,30")
    assert result.exit_code == 0, result.stderr
    img = _png(sheet)
    lay = layout(3, W, H, Crop(100, 80, 40, 30), lines=3)
    assert img.shape == (lay.sheet_h, lay.sheet_w, 3) and lay.sheet_w == 3 * W + 4 * GAP
    assert _panel_count(img, slice(lay.frame_y, lay.frame_y + H)) == 3
    assert _panel_count(img, slice(lay.inset_y, lay.inset_y + lay.inset_h)) == 3     # an inset under each
    # the first panel is frame 20 of the clean clip, not a neighbour
    frames = _decoded(clean)
    x = lay.panel_x(0)
    shown = img[lay.frame_y:lay.frame_y + H, x:x + W].astype(np.int16)
    inside = np.ones((H, W), bool)
    inside[80 - 2:80 + 30 + 2, 100 - 2:100 + 40 + 2] = False          # the crop box is drawn over these
    err = {n: np.abs(shown - frames[n])[inside].mean() for n in (19, 20, 21)}
    assert err[20] < 0.01 and min(err[19], err[21]) > 1, err
    # the scores: the restoration is scored, the 80x60 measurement only shown
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "reference" in rows[clean.name]
    assert "not scored" in rows["low.mkv"] and "80x60" in rows["low.mkv"]
    psnr, ssim, crop_psnr, crop_ssim = (float(v) for v in rows["up.mkv"].split()[1:5])
    assert 15 < psnr < 60 and 0 < ssim < 1 and 10 < crop_psnr < 60 and 0 < crop_ssim < 1
    assert "3 panels, frame 20" in result.stdout


def test_a_video_against_itself_scores_the_cap(trio, tmp_path):
    clean, _, _ = trio
    result = vir("compare", clean, clean, "-o", tmp_path / "same.png")
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "100.00" in line)
    assert "1.0000" in row
    assert "frame 25" in result.stdout                       # the middle frame by default


def test_no_reference_shows_the_videos_alone(trio, tmp_path):
    clean, low, up = trio
    sheet = tmp_path / "two.png"
    result = vir("compare", up, low, "-o", sheet, "--no-reference", "--label", "classical", "--label", "input")
    assert result.exit_code == 0, result.stderr
    img = _png(sheet)
    lay = layout(2, W, H)
    assert img.shape == (lay.sheet_h, lay.sheet_w, 3)
    assert _panel_count(img, slice(lay.frame_y, lay.frame_y + H)) == 2
    assert "dB" not in result.stdout and "classical" in result.stdout and "input" in result.stdout


def test_side_by_side_video_scores_every_frame(trio, tmp_path):
    clean, low, up = trio
    side = tmp_path / "side.mp4"
    result = vir("compare", clean, low, up, "-o", side, "--preset", "ultrafast", "--no-progress")
    assert result.exit_code == 0, result.stderr
    lay = layout(3, W, H, lines=2)
    with av.open(str(side)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (lay.sheet_w, lay.sheet_h)
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
        assert c.streams.audio                                   # the clean clip's audio comes along
    row = next(line for line in result.stdout.splitlines() if line.startswith("up.mkv"))
    psnr, ssim, flicker = (float(v) for v in row.split()[1:4])
    bench = json.loads(vir("bench", "--quality", clean, up, "--json").stdout)
    assert abs(psnr - bench["psnr"]) < 0.01 and abs(ssim - bench["ssim"]) < 1e-4
    assert abs(flicker - bench["flicker"]) < 1e-3
    if vmaf_unavailable() is None:
        restored = float(row.split()[4])
        same = vir("compare", clean, clean, "-o", tmp_path / "same.mkv", "--preset", "ultrafast", "--no-progress")
        itself = float(next(line for line in same.stdout.splitlines() if "100.00" in line).split()[4])
        assert 0 <= restored < itself <= 100 and itself > 95, (restored, itself)
    else:
        assert "no libvmaf" in result.stderr


@pytest.mark.parametrize("args, code", [
    (["CLEAN", "-o", "OUT.png"], 2),                                   # nothing to compare against
    (["CLEAN", "UP", "-o", "OUT.png", "--frame", "50"], 2),            # past the end (50 frames)
    (["CLEAN", "UP", "-o", "OUT.png", "--crop", "300,200,40,60"], 2),  # outside the frame
    (["CLEAN", "UP", "-o", "OUT.png", "--crop", "1,2,3"], 2),
    (["CLEAN", "UP", "-o", "OUT.mp4", "--frame", "3"], 2),             # --frame is for a sheet
    (["CLEAN", "UP", "-o", "OUT.png", "--label", "one"], 2),           # a label per video
    (["CLEAN", "MISSING", "-o", "OUT.png"], 3),
    (["CLEAN", "UP", "-o", "CLEAN"], 6),
])
def test_bad_use_is_one_line(trio, tmp_path, args, code):
    clean, _, up = trio
    where = {"CLEAN": clean, "UP": up, "MISSING": tmp_path / "missing.mp4", "OUT.png": tmp_path / "out.png",
             "OUT.mp4": tmp_path / "out.mp4"}
    assert_one_line_error(vir("compare", *[where.get(a, a) for a in args], "--no-progress"), code)
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.mp4").exists()


def test_an_existing_sheet_is_kept_without_overwrite(trio, tmp_path):
    clean, _, up = trio
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"keep me")
    assert_one_line_error(vir("compare", clean, up, "-o", sheet), 6)
    assert sheet.read_bytes() == b"keep me"
    assert vir("compare", clean, up, "-o", sheet, "--overwrite").exit_code == 0
    assert _png(sheet).shape[1] == layout(2, W, H).sheet_w
