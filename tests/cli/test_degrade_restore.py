"""`vir degrade` then `vir restore` end to end on real footage."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from instantvir_cli.video import VideoReader
from tests.cli.helpers import vir, write_mask

FAST = ("--preset", "ultrafast", "--no-progress")


def _frames(path):
    """All frames of a (small) video as uint8 (T, H, W, 3)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _packets(path, kind):
    with av.open(str(path)) as c:
        s = [st for st in c.streams if st.type == kind][0]
        return [(p.pts, bytes(p)) for p in c.demux(s) if p.size]


def test_degrade_sr4x_writes_small_lossless_video_and_sidecar(bikes_mp4, tmp_path):
    out = tmp_path / "bikes-x4.mkv"
    result = vir("degrade", bikes_mp4, out, "--task", "sr4x", "--no-progress")
    assert result.exit_code == 0, result.stderr
    sidecar = json.loads((tmp_path / "bikes-x4.mkv.vir.json").read_text())
    assert sidecar["operator"]["task"] == "sr4x"
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (160, 68)
    # the file holds exactly the 4x4 block averages of the input (decoded as vir decodes it),
    # quantized to 8 bits
    with VideoReader(bikes_mp4, block_size=24) as reader:
        block = next(iter(reader))
    x = ((block.x[0].permute(1, 2, 3, 0).double() + 1) * 127.5).numpy()
    y = _frames(out)[:24]
    T, H, W, C = x.shape
    expect = x.reshape(T, H // 4, 4, W // 4, 4, C).mean(axis=(2, 4))
    assert np.abs(y.astype(np.float64) - expect).max() <= 0.5 + 1e-4


def test_restore_reads_the_sidecar(bikes_mp4, tmp_path):
    low = tmp_path / "low.mkv"
    assert vir("degrade", bikes_mp4, low, "--task", "sr4x", "--no-progress").exit_code == 0
    out = tmp_path / "up.mp4"
    result = vir("restore", low, "-o", out, "--model", "classical", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "sr4x" in result.stdout
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (640, 272)
        assert sum(1 for _ in c.decode(video=0)) == 250
    quality = vir("bench", "--quality", bikes_mp4, out, "--json")
    assert quality.exit_code == 0, quality.stderr
    scores = json.loads(quality.stdout)
    assert set(scores) >= {"psnr", "ssim", "flicker", "frames"}
    # measured 32.02 dB, SSIM 0.8755 (the classical sr4x through an ultrafast H.264 encode)
    print(f"bikes, sr4x, classical: {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    assert scores["frames"] == 250 and scores["psnr"] > 31.7 and scores["ssim"] > 0.865


def test_restore_bunny_keeps_audio_packets_bit_identical(bunny_mp4, tmp_path):
    out = tmp_path / "bunny.mp4"
    result = vir("restore", bunny_mp4, "-o", out, "--task", "deblur", "--model", "classical", *FAST)
    assert result.exit_code == 0, result.stderr
    assert _packets(out, "audio") == _packets(bunny_mp4, "audio")
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames in (0, 132) and sum(1 for _ in c.decode(video=0)) == 132


def test_no_copy_streams_drops_audio(clip_testsrc_audio, tmp_path):
    out = tmp_path / "silent.mp4"
    result = vir("restore", clip_testsrc_audio, "-o", out, "--task", "deblur", "--model", "classical",
                 "--no-copy-streams", *FAST)
    assert result.exit_code == 0, result.stderr
    with av.open(str(out)) as c:
        assert not c.streams.audio


def test_inpaint_with_mask_file_keeps_observed_pixels(clip_testsrc_audio, tmp_path):
    with av.open(str(clip_testsrc_audio)) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    rng = np.random.default_rng(0)
    keep = (rng.random((h, w)) < 0.3).astype(np.uint8) * 255
    mask = tmp_path / "keep.png"
    write_mask(mask, keep)
    holes = tmp_path / "holes.mkv"
    assert vir("degrade", clip_testsrc_audio, holes, "--task", "inpaint", "--mask", mask, "--no-progress").exit_code == 0
    assert json.loads((tmp_path / "holes.mkv.vir.json").read_text())["operator"]["task"] == "inpaint"
    out = tmp_path / "filled.mkv"
    result = vir("restore", holes, "-o", out, "--model", "classical", "--lossless", "--no-progress")
    assert result.exit_code == 0, result.stderr
    y, x = _frames(holes), _frames(out)
    observed = keep > 0
    assert np.array_equal(x[:, observed], y[:, observed])
    assert np.abs(x[:, ~observed].astype(int) - 128).mean() > 5  # holes were filled, not left grey


@pytest.mark.parametrize("task", ["inpaint", "deblur", "sr4x"])
def test_bench_speed_json(task):
    result = vir("bench", "--resolution", "64x48", "--frames", "5", "--task", task, "--model", "classical", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["task"] == task and data["frames"] == 5
    st = data["stages"]
    assert set(st) >= {"decode", "restore", "encode"} and all(st[k] > 0 for k in ("decode", "restore", "encode")), st
    assert st["decode"] + st["restore"] + st["encode"] <= data["seconds"] * (1 + 1e-6), (st, data["seconds"])
    assert 0 < data["e2e_fps"] <= data["model_fps"]            # the whole run holds the restorer


def test_inpaint_with_a_mask_video_keeps_each_frames_observed_pixels(clip_testsrc_audio, tmp_path):
    with av.open(str(clip_testsrc_audio)) as c:
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        n = sum(1 for _ in c.decode(video=0))
    rng = np.random.default_rng(1)
    keep = (rng.random((n, h, w)) < 0.4).astype(np.uint8) * 255          # a different mask every frame
    mask = tmp_path / "keep.mkv"
    write_mask(mask, keep)
    holes = tmp_path / "holes.mkv"
    result = vir("degrade", clip_testsrc_audio, holes, "--task", "inpaint", "--mask", mask, "--no-progress")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "filled.mkv"
    result = vir("restore", holes, "-o", out, "--model", "classical", "--lossless", "--block-frames", "5",
                 "--no-progress")
    assert result.exit_code == 0, result.stderr
    y, x = _frames(holes), _frames(out)
    observed = keep > 0
    assert np.array_equal(x[observed], y[observed])
    assert (y[~observed] == 128).all()                                   # holes are mid-grey in the measurement


def test_an_mp4_with_frames_dropped_at_capture_degraded_to_matroska_restores_whole(tmp_path):
    """MP4 declares a capture gap in its index, Matroska cannot: the sidecar's frame count tells
    `vir restore` that the .mkv's jump in time is the source's, not a lost cluster."""
    from tests import media

    clip = media.generate("drops.mp4", media._src("96x64", "8", 2)
                          + ["-vf", "select='not(between(n,5,7))'", "-fps_mode", "passthrough", *media.X264])
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip, low, "--task", "sr4x", *FAST).exit_code == 0
    out = tmp_path / "out.mkv"
    result = vir("restore", low, "-o", out, "--model", "classical", *FAST)
    assert result.exit_code == 0, result.stderr
    assert len(_frames(out)) == 13
    assert [p for p, _ in _packets(out, "video")] == [p for p, _ in _packets(low, "video")]
    sidecar = tmp_path / "low.mkv.vir.json"
    record = json.loads(sidecar.read_text())
    record["source"]["frames"] = 16                    # a count the file falls short of: frames lost
    sidecar.write_text(json.dumps(record))
    result = vir("restore", low, "-o", tmp_path / "again.mkv", "--model", "classical", *FAST)
    assert result.exit_code == 5 and "it holds 13 of the 16 frames its sidecar records" in result.stderr
    assert not (tmp_path / "again.mkv").exists()
