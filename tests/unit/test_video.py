"""instantvir_cli.video: probe, VideoReader, VideoWriter, write_synthetic_clip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import media
from instantvir_cli.errors import InputCorrupt, InputNotFound, InputUnreadable, OutputRefused, UsageError
from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter, probe, write_synthetic_clip
from instantvir_cli.video.damage import avi_index_errors, matroska_crc_errors, mpegts_sync_errors
from instantvir_cli.video.reader import SWS_FLAGS

FAST = EncodeOptions(preset="ultrafast")
REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers
def copy_video(src: Path, dst: Path, options: EncodeOptions = FAST, block_size: int = 8) -> list[str]:
    """Read `src` and write it to `dst` unchanged; return the warnings."""
    warnings: list[str] = []
    with VideoReader(src, block_size=block_size) as reader, VideoWriter(
        dst, reader.info.width, reader.info.height, source=reader, options=options, warn=warnings.append
    ) as writer:
        for block in reader:
            writer.write(block.x, block.pts)
    return warnings


def read_all(path: Path, block_size: int = 16) -> tuple[torch.Tensor, list[int]]:
    """(1, 3, T, H, W) frames and pts of a whole (small) video."""
    xs, pts = [], []
    with VideoReader(path, block_size=block_size) as reader:
        for block in reader:
            xs.append(block.x)
            pts += block.pts
    return torch.cat(xs, 2), pts


def frame_times(path: Path) -> list[float]:
    """Presentation times (s) of the video frames, decoded with plain PyAV."""
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[tuple[float, bytes]]:
    """(time, payload) of every packet of the first `kind` stream, with plain PyAV."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in c.demux(s) if p.size]


def first_frame_tags(path: Path) -> tuple[int, int, int, int]:
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return int(f.colorspace), int(f.color_range), int(f.color_primaries), int(f.color_trc)


def to_levels(x: torch.Tensor, peak: int = 255) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * peak / 2).round()


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- probe
def test_probe_real_footage(bunny_mp4, bikes_mp4):
    i = probe(bunny_mp4)
    assert (i.width, i.height, i.frames, i.frames_exact) == (1280, 720, 132, True)
    assert i.fps == 25 and not i.vfr and i.codec == "h264" and i.pix_fmt == "yuv420p" and i.bit_depth == 8
    assert i.has_audio and not i.has_subtitles and i.rotation == 0
    # untagged: BT.709 assumed from 720 lines, BT.601 below
    assert (i.colorspace, i.color_range, i.colour_tagged) == ("bt709", "limited", False)
    b = probe(bikes_mp4)
    assert (b.width, b.height, b.frames, b.colorspace, b.has_audio) == (640, 272, 250, "bt601", False)
    assert b.duration == pytest.approx(10.0)


def test_probe_generated(clip_testsrc_audio, clip_vfr, clip_vfr_mp4, clip_rotated, clip_10bit, clip_fullrange,
                        clip_bt601, clip_subtitles, clip_odd):
    t = probe(clip_testsrc_audio)
    assert (t.width, t.height, t.frames, t.fps, t.vfr, t.time_base) == (320, 240, 50, 25, False, Fraction(1, 12800))
    assert t.colour_tagged and t.colorspace == "bt709"
    for vfr in (clip_vfr, clip_vfr_mp4):
        assert probe(vfr).vfr
    assert probe(clip_rotated).rotation == 90
    ten = probe(clip_10bit)
    assert (ten.bit_depth, ten.pix_fmt, ten.frames, ten.frames_exact) == (10, "yuv420p10le", 20, True)  # counted
    assert probe(clip_fullrange).color_range == "full"
    assert (probe(clip_bt601).colorspace, probe(clip_bt601).colour_tagged) == ("bt601", True)
    s = probe(clip_subtitles)
    assert s.has_subtitles and s.has_audio and (s.frames, s.frames_exact) == (50, True)
    estimate = probe(clip_subtitles, scan_packets=10)  # MKV has no frame count: duration * fps
    assert not estimate.frames_exact and abs(estimate.frames - 50) <= 1
    assert (probe(clip_odd).width, probe(clip_odd).height) == (161, 97)


@pytest.mark.parametrize("name", ["empty", "random_bytes", "text", "audio_only", "zero_frames", "header_only"])
def test_unreadable_inputs(bad_inputs, name):
    with pytest.raises(InputUnreadable) as e:
        probe(bad_inputs[name])
    assert "\n" not in str(e.value) and str(bad_inputs[name].name) in str(e.value)
    with pytest.raises(InputUnreadable):
        VideoReader(bad_inputs[name])


def test_audio_only_says_no_video(bad_inputs):
    with pytest.raises(InputUnreadable, match="no video stream"):
        probe(bad_inputs["audio_only"])


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputNotFound, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(InputNotFound, match="folder"):
        probe(tmp_path)


@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_corrupt_inputs_raise_after_good_frames(bad_inputs, name):
    reader = VideoReader(bad_inputs[name], block_size=4)
    with reader, pytest.raises(InputCorrupt) as e:
        for _ in reader:
            pass
    msg = str(e.value)
    assert "\n" not in msg and bad_inputs[name].name in msg
    assert reader.frames_read > 10 and f"read {reader.frames_read} frames" in msg
    if name == "truncated":
        assert "truncated" in msg


def test_tolerate_damage_delivers_what_decodes(bad_inputs):
    with VideoReader(bad_inputs["corrupt"], block_size=8, tolerate_damage=True) as reader:
        n = sum(block.frames for block in reader)
    assert reader.damage and 30 < n <= 50     # what decodes is delivered, the damage accounted for
    assert reader.damage.damaged or reader.damage.lost
    assert "input damaged: corrupt.mp4: " in reader.damage.summary("corrupt.mp4")


# ----------------------------------------------------------------------------- reader
def test_reader_blocks(bikes_mp4):
    expected = frame_times(bikes_mp4)
    n, seen_pts = 0, []
    with VideoReader(bikes_mp4, block_size=16) as reader:
        for block in reader:
            assert block.x.dtype == torch.float32 and block.x.is_contiguous()
            assert block.x.shape[:2] == (1, 3) and block.x.shape[3:] == (272, 640)
            assert block.index == n and block.frames == len(block.pts) <= 16
            assert -1 <= block.x.min() and block.x.max() <= 1
            n += block.frames
            seen_pts += block.pts
        assert reader.frames_read == 250 and not reader.damage
    assert [float(p * block.time_base) for p in seen_pts] == expected


def test_reader_stops_early_without_hanging(bunny_mp4):
    t0 = time.perf_counter()
    with VideoReader(bunny_mp4, block_size=4, queue_depth=1) as reader:
        next(reader)
    assert not reader._thread.is_alive()
    assert time.perf_counter() - t0 < 10


KR_KB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}


def _reference_rgb(path: Path, matrix: str, full: bool) -> np.ndarray:
    """First frame converted with the textbook equations from its 4:2:0 planes: (H, W, 3) float levels."""
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
    h, w = f.height, f.width
    y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:, :pw].astype(np.float64)
               for p, pw in zip(f.planes, (w, (w + 1) // 2, (w + 1) // 2)))
    u, v = (c.repeat(2, 0).repeat(2, 1)[:h, :w] for c in (u, v))  # nearest chroma upsampling
    kr, kb = KR_KB[matrix]
    if full:
        yy, cb, cr = y / 255, (u - 128) / 255, (v - 128) / 255
    else:
        yy, cb, cr = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    r, b = yy + 2 * (1 - kr) * cr, yy + 2 * (1 - kb) * cb
    g = (yy - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], -1) * 255, 0, 255)


@pytest.mark.parametrize("clip,matrix,full", [
    ("clip_untagged_hd", "bt709", False),   # untagged HD: BT.709 assumed, limited range
    ("clip_bt601", "bt601", False),         # tagged SD BT.601
    ("clip_fullrange", "bt709", True),      # full-range tag honoured
    ("bikes_mp4", "bt601", False),          # real footage, untagged SD: BT.601 assumed
])
def test_reader_colour_matches_reference(request, clip, matrix, full):
    path = request.getfixturevalue(clip)
    x, _ = read_all(path)
    ours = to_levels(x[0, :, 0]).permute(1, 2, 0).numpy()  # (H, W, 3)
    err = np.abs(ours - _reference_rgb(path, matrix, full))
    assert np.median(err) <= 1 and np.percentile(err, 90) <= 2  # edges: chroma interpolation differs
    other = "bt601" if matrix == "bt709" else "bt709"  # the test can tell the conventions apart
    assert np.mean(np.abs(ours - _reference_rgb(path, other, not full))) > 4


def test_reader_10bit_is_lossless(clip_10bit):
    x, _ = read_all(clip_10bit)
    with av.open(str(clip_10bit)) as c:  # a uint16 decode, same conversion (gbrp16le arrays come out R, G, B)
        ref = [f.to_ndarray(format="gbrp16le", src_colorspace="ITU709", src_color_range="MPEG", dst_color_range="JPEG",
                            interpolation=SWS_FLAGS, channel_last=True) for f in c.decode(video=0)]
    ref = torch.from_numpy(np.stack(ref).astype(np.int64)).permute(3, 0, 1, 2)  # (3, T, H, W)
    ours = ((x[0].double() + 1) * 65535 / 2).round().long()
    assert torch.equal(ours, ref)
    assert (ref % 257 != 0).float().mean() > 0.5  # values an 8-bit path could not produce


def test_reader_odd_size(clip_odd):
    x, _ = read_all(clip_odd)
    assert x.shape == (1, 3, 20, 97, 161)


# ----------------------------------------------------------------------------- writer: round trips
def test_roundtrip_cfr_with_audio(clip_testsrc_audio, tmp_path):
    out = tmp_path / "out.mp4"
    assert copy_video(clip_testsrc_audio, out) == []
    a, b = probe(clip_testsrc_audio), probe(out)
    assert (b.width, b.height, b.frames, b.fps, b.vfr) == (a.width, a.height, a.frames, a.fps, False)
    assert frame_times(out) == frame_times(clip_testsrc_audio)
    assert packets(out, "audio") == packets(clip_testsrc_audio, "audio")
    assert folder_names(tmp_path) == ["out.mp4"]


def test_roundtrip_bunny_keeps_audio_bit_identical(bunny_mp4, tmp_path):
    out = tmp_path / "bunny.mp4"
    copy_video(bunny_mp4, out, block_size=16)
    assert probe(out).frames == 132
    assert frame_times(out) == frame_times(bunny_mp4)
    src_audio = packets(bunny_mp4, "audio")
    assert len(src_audio) == 249 and packets(out, "audio") == src_audio


@pytest.mark.parametrize("src", ["clip_vfr", "clip_vfr_mp4"])
@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_roundtrip_vfr_keeps_timestamps(request, tmp_path, src, ext):
    path = request.getfixturevalue(src)
    out = tmp_path / f"out{ext}"
    copy_video(path, out)
    got, want = frame_times(out), frame_times(path)
    assert len(got) == len(want) == 36
    assert np.abs(np.array(got) - np.array(want)).max() <= 0.0011  # MKV stores milliseconds
    assert probe(out).vfr


def test_subtitles_copied_to_mkv_dropped_from_mp4(clip_subtitles, tmp_path):
    mkv, mp4 = tmp_path / "subs.mkv", tmp_path / "subs.mp4"
    assert copy_video(clip_subtitles, mkv) == []
    assert packets(mkv, "subtitles") == packets(clip_subtitles, "subtitles")
    assert len(packets(mkv, "subtitles")) == 2
    assert packets(mkv, "audio") == packets(clip_subtitles, "audio")
    warnings = copy_video(clip_subtitles, mp4)
    assert len(warnings) == 1 and "subtitle" in warnings[0] and ".mkv" in warnings[0]
    assert probe(mp4).has_audio and not probe(mp4).has_subtitles


def test_stopping_early_trims_copied_audio(clip_testsrc_audio, tmp_path):
    out = tmp_path / "first.mkv"
    with VideoReader(clip_testsrc_audio, block_size=10) as reader, VideoWriter(
        out, 320, 240, source=reader, options=FAST
    ) as writer:
        for block in reader:
            writer.write(block.x, block.pts)
            if writer.frames_written == 20:
                break  # 20 frames = 0.8 s
    # MKV can't store the AAC priming packet's negative time: the muxer shifts every stream by it
    shift = frame_times(out)[0]
    audio = [(round(t - shift, 3), data) for t, data in packets(out, "audio")]
    source = packets(clip_testsrc_audio, "audio")
    assert audio == source[: len(audio)]
    assert 0.75 <= audio[-1][0] <= 0.8 + 1e-6 and len(frame_times(out)) == 20


def test_audio_the_container_cant_hold_is_dropped(tmp_path):
    opus = media.generate("opus_audio.mkv", media._src("64x48", "10", 1) + media._sine(1) + media.X264
                          + ["-c:a", "libopus", "-b:a", "32k"])
    out = tmp_path / "out.mov"
    warnings = copy_video(opus, out)
    assert len(warnings) == 1 and "opus" in warnings[0] and ".mov" in warnings[0]
    assert not probe(out).has_audio and probe(out).frames == 10
    mp4 = tmp_path / "out.mp4"  # MP4 does hold Opus
    assert copy_video(opus, mp4) == [] and packets(mp4, "audio") == packets(opus, "audio")


def test_no_stream_copy(clip_testsrc_audio, tmp_path):
    out = tmp_path / "silent.mp4"
    copy_video(clip_testsrc_audio, out, EncodeOptions(preset="ultrafast", copy_streams=False))
    assert not probe(out).has_audio


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_rotation_kept(clip_rotated, tmp_path, ext):
    out = tmp_path / f"rot{ext}"
    copy_video(clip_rotated, out)
    i = probe(out)
    assert i.rotation == 90 and (i.width, i.height) == (160, 96)


def test_colour_tags_on_output(clip_testsrc_audio, clip_bt601, tmp_path):
    out = tmp_path / "tags.mp4"
    copy_video(clip_testsrc_audio, out)
    assert first_frame_tags(out) == (1, 1, 1, 1)  # bt709 matrix, limited, bt709 primaries and transfer
    out601 = tmp_path / "tags601.mkv"
    copy_video(clip_bt601, out601)
    assert first_frame_tags(out601)[:2] == (6, 1)  # the source's BT.601 matrix is kept
    full = tmp_path / "full.mkv"
    copy_video(clip_testsrc_audio, full, EncodeOptions(preset="ultrafast", color_range="full"))
    assert first_frame_tags(full)[:2] == (1, 2)
    assert probe(full).color_range == "full"


def _colour_bars(h: int = 96, w: int = 256, t: int = 4) -> torch.Tensor:
    levels = torch.tensor([[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16], [235, 16, 235],
                           [235, 16, 16], [16, 16, 235], [16, 16, 16]], dtype=torch.float32)
    img = levels.repeat_interleave(w // 8, 0).T[:, None, :].expand(3, h, w).clone()  # (3, H, W)
    img[:, h // 2:] = torch.linspace(0, 255, w).round()  # grey ramp below
    return (img / 127.5 - 1)[None, :, None].expand(1, 3, t, h, w).contiguous()


@pytest.mark.parametrize("crf,colorspace,rng,tolerance", [
    (0, None, "limited", 1),     # x264 lossless: the RGB <-> YUV conversions alone
    (18, None, "limited", 2),    # the defaults: BT.709, limited range, crf 18
    (18, "bt601", "full", 3),    # swscale rounds full-range chroma down by up to half a level
])
def test_colour_roundtrip_within_two_levels(tmp_path, crf, colorspace, rng, tolerance):
    x = _colour_bars()
    out = tmp_path / "bars.mp4"
    options = EncodeOptions(preset="ultrafast", crf=crf, colorspace=colorspace, color_range=rng)
    with VideoWriter(out, 256, 96, options=options, fps=25) as w:
        w.write(x)
    y, _ = read_all(out)
    diff = (to_levels(y) - to_levels(x)).abs()  # (1, 3, T, H, W); rows 0-47 bars, 48-95 ramp
    bars = diff[..., 4:40, :].reshape(1, 3, 4, 36, 8, 32)[..., 4:-4]  # bar interiors (chroma bleeds at edges)
    assert bars.max() <= tolerance and bars.mean() <= 0.6
    assert diff[..., 56:92, :].max() <= 2  # grey ramp


# ----------------------------------------------------------------------------- writer: lossless, sizes
@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_lossless_roundtrip_is_exact(tmp_path, ext):
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (1, 3, 5, 37, 53), generator=g).float()
    x = levels / 127.5 - 1
    out = tmp_path / f"exact{ext}"
    with VideoWriter(out, 53, 37, options=EncodeOptions(lossless=True, preset="ultrafast"), fps=24) as w:
        w.write(x[:, :, :2])
        w.write(x[:, :, 2:])
    y, pts = read_all(out)
    assert torch.equal(to_levels(y), levels) and pts == sorted(pts) and len(pts) == 5
    assert probe(out).codec == ("ffv1" if ext == ".mkv" else "h264")


def test_lossless_16bit_from_10bit_source(clip_10bit, tmp_path):
    out = tmp_path / "deep.mkv"
    copy_video(clip_10bit, out, EncodeOptions(lossless=True))
    info = probe(out)
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("ffv1", "gbrp16le", 16)
    a, _ = read_all(clip_10bit)
    b, _ = read_all(out)
    assert torch.equal(a, b)


def test_odd_size_switches_to_444_and_keeps_size(clip_odd, tmp_path):
    out = tmp_path / "odd.mp4"
    warnings = copy_video(clip_odd, out)
    assert len(warnings) == 1 and "yuv444p" in warnings[0] and "161x97" in warnings[0]
    i = probe(out)
    assert (i.width, i.height, i.frames, i.pix_fmt) == (161, 97, 20, "yuv444p")
    a, _ = read_all(clip_odd)
    b, _ = read_all(out)
    assert (to_levels(a) - to_levels(b)).abs().mean() < 3


def test_writer_without_source_counts_frames(tmp_path):
    out = tmp_path / "plain.mkv"
    with VideoWriter(out, 64, 48, options=FAST, fps=Fraction(30000, 1001)) as w:
        for _ in range(3):
            w.write(torch.zeros(1, 3, 4, 48, 64))
    assert w.frames_written == 12
    i = probe(out)
    assert i.fps == Fraction(30000, 1001) and len(frame_times(out)) == 12


# ----------------------------------------------------------------------------- writer: refusals, failures
def test_refusals(tmp_path):
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputRefused, match="exists"):
        VideoWriter(existing, 64, 48)
    with pytest.raises(OutputRefused, match="folder"):
        VideoWriter(tmp_path, 64, 48)
    with pytest.raises(OutputRefused):
        VideoWriter(tmp_path / "out.notacontainer", 64, 48)
    with pytest.raises(UsageError, match="encoder"):
        VideoWriter(tmp_path / "a.mp4", 64, 48, options=EncodeOptions(codec="nosuchcodec"))
    with pytest.raises(UsageError, match="mkv"):
        VideoWriter(tmp_path / "a.webm", 64, 48, options=EncodeOptions(lossless=True))
    assert folder_names(tmp_path) == ["exists.mp4"]
    assert existing.read_bytes() == b"keep me"


def test_failure_midway_leaves_nothing(clip_testsrc_audio, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoReader(clip_testsrc_audio, block_size=8) as reader, VideoWriter(
            out, 320, 240, source=reader, options=FAST
        ) as writer:
            for i, block in enumerate(reader):
                writer.write(block.x, block.pts)
                if i == 2:   # while writing: a hidden temporary and the output's lock, both beside it
                    names = folder_names(tmp_path)
                    assert len(names) == 2 and all(n.startswith(".out.mp4.vir-") for n in names), names
                    raise RuntimeError("boom")
    assert folder_names(tmp_path) == []


def test_failure_keeps_existing_target_with_overwrite(tmp_path):
    out = tmp_path / "out.mkv"
    out.write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 64, 48, options=FAST, overwrite=True) as w:
            w.write(torch.zeros(1, 3, 2, 48, 64))
            raise KeyboardInterrupt
    assert out.read_bytes() == b"previous result" and folder_names(tmp_path) == ["out.mkv"]
    with VideoWriter(out, 64, 48, options=FAST, overwrite=True) as w:
        w.write(torch.zeros(1, 3, 2, 48, 64))
    assert probe(out).frames == 2


def test_corrupt_input_leaves_no_output(bad_inputs, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(InputCorrupt):
        copy_video(bad_inputs["truncated"], out)
    assert folder_names(tmp_path) == []


SLOW_WRITER = textwrap.dedent("""
    import signal, sys, time, torch
    from instantvir_cli.video import EncodeOptions, VideoWriter
    # Ctrl-C as a terminal delivers it: a shell's background job (cmd &) starts with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with VideoWriter(sys.argv[1], 64, 48, options=EncodeOptions(preset="ultrafast")) as w:
        for i in range(10000):
            w.write(torch.rand(1, 3, 2, 48, 64) * 2 - 1)
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.01)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_midway_leaves_no_target(tmp_path, sig):
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        proc.send_signal(sig)
        # generous: on a fresh clone's first full run a SIGKILLed child once took over 30 s to be
        # reaped (the kernel, not our handler, was slow: no code runs on SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not out.exists()
    left = folder_names(tmp_path)
    if sig == signal.SIGKILL:  # nothing can run on SIGKILL: the hidden temporary and lock stay behind ...
        assert left and all(name.startswith(".out.mp4.vir-") for name in left), left
        VideoWriter(tmp_path / "next.mp4", 64, 48).abort()   # ... and the next writer there removes them
    assert folder_names(tmp_path) == []


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter
    with VideoReader(sys.argv[1], block_size=8) as r, VideoWriter(sys.argv[2], r.info.width, r.info.height,
            source=r, options=EncodeOptions(preset="ultrafast")) as w:
        for b in r:
            w.write(b.x, b.pts)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_memory_does_not_grow_with_length(ffmpeg, tmp_path):
    rss = []
    for seconds in (3, 30):  # the short clip is long enough for the encoder's buffers to fill up
        clip = media.generate(f"mem_{seconds}s.mp4", media._src("320x180", "24", seconds) + media.X264 + ["-g", "24"])
        out = tmp_path / f"copy_{seconds}.mp4"
        r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(clip), str(out)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        assert r.returncode == 0, r.stderr
        rss.append(int(r.stdout.strip()))
    # holding the 720 frames of the long clip as float would take ~500 MB more
    print("peak RSS (KiB) short, long:", rss)
    assert rss[1] <= rss[0] * 1.10, rss


# ----------------------------------------------------------------------------- synthetic clip
def test_synthetic_clip(tmp_path):
    out = write_synthetic_clip(tmp_path / "syn.mp4", 96, 64, frames=12, fps=24,
                               options=EncodeOptions(preset="ultrafast"))
    i = probe(out)
    assert (i.width, i.height, i.frames, i.fps) == (96, 64, 12, 24)
    x, _ = read_all(out)
    assert x.std() > 0.2 and (x[:, :, -1] - x[:, :, 0]).abs().mean() > 0.05  # textured and moving
    exact = write_synthetic_clip(tmp_path / "syn.mkv", 33, 21, frames=3, lossless=True)
    assert probe(exact).codec == "ffv1" and probe(exact).width == 33


# ----------------------------------------------------------------------------- damage the fuzzing found
def test_the_last_frames_are_read_when_video_is_not_the_first_stream(tmp_path):
    # the flush packet at the end has stream_index 0: a reader that trusts it loses the decoder's last frames
    clip = media.generate("audio_first.mp4", media._sine(2) + media._src("160x96", "12", 2)
                          + ["-map", "0:a", "-map", "1:v", "-c:a", "aac", "-b:a", "32k"] + media.X264 + ["-bf", "2"])
    with av.open(str(clip)) as c:
        assert c.streams[0].type == "audio"
        n = sum(1 for _ in c.decode(video=0))
    with VideoReader(clip, block_size=8) as reader:
        assert sum(b.frames for b in reader) == n == 24


def _degraded_ffv1(tmp_path) -> bytes:
    src = media.generate("ffv1_src.mkv", media._src("96x64", "8", 2) + media.X264)
    out = tmp_path / "low.mkv"
    from instantvir_cli.degrade import DegradeOptions, degrade_video

    degrade_video(src, out, DegradeOptions(task="deblur"), EncodeOptions(lossless=True))
    return out.read_bytes()


@pytest.mark.parametrize("where,said", [("track", "track headers"), ("cluster", "element of unknown kind")])
def test_a_damaged_matroska_header_is_caught_by_its_crc(tmp_path, where, said):
    data = bytearray(_degraded_ffv1(tmp_path))
    if where == "track":                   # PixelWidth (0xB0, 1 byte): the frames would decode at 97 wide
        i = data.index(b"\xb0\x81\x60")
        data[i + 2] += 1
    else:                                  # the first cluster's ID: FFmpeg skips the cluster without a word
        data[data.index(b"\x1f\x43\xb6\x75")] ^= 0x80
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputCorrupt, match=said):
        with VideoReader(bad, block_size=8) as reader:
            for _ in reader:
                pass


def _ebml(eid: bytes, body: bytes, size: bytes | None = None) -> bytes:
    """One EBML element: ID, an 8-byte size (or `size` as given), body."""
    return eid + (size if size is not None else bytes([0x01]) + len(body).to_bytes(7, "big")) + body


def _mkv_with_cluster(body: bytes, crc: int | None = None, size: bytes | None = None) -> bytes:
    crc_el = b"\xbf\x84" + (zlib.crc32(body) if crc is None else crc).to_bytes(4, "little")
    cluster = _ebml(b"\x1f\x43\xb6\x75", crc_el + body, size)
    return _ebml(b"\x1a\x45\xdf\xa3", b"") + _ebml(b"\x18\x53\x80\x67", cluster)


def test_matroska_crc_walk_is_chunked_and_exact(tmp_path):
    body = b"\xe7\x81\x2a" + bytes(range(256)) * (12 << 12)          # cluster time 42 ms, 12 MiB of payload
    good, bad = tmp_path / "good.mkv", tmp_path / "bad.mkv"
    good.write_bytes(_mkv_with_cluster(body))
    damaged = bytearray(body)
    damaged[len(body) - 5] ^= 1                                        # a byte far past the first read
    bad.write_bytes(_mkv_with_cluster(bytes(damaged), crc=zlib.crc32(body)))
    tracemalloc.start()
    try:
        assert matroska_crc_errors(good) == []
        errors = matroska_crc_errors(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(what, ms) for _, what, ms in errors] == [("cluster", 42)]
    assert peak < 4 << 20                                               # not the 12 MiB element at once


def test_matroska_size_past_the_end_reads_nothing(tmp_path):
    # a damaged size field declaring 8 GiB: the walk stops (the reader's length checks see the rest)
    f = tmp_path / "huge.mkv"
    f.write_bytes(_mkv_with_cluster(b"\xe7\x81\x00" + bytes(64), size=b"\x01" + (1 << 33).to_bytes(7, "big")))
    tracemalloc.start()
    try:
        assert matroska_crc_errors(f) == []
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def _ts_clip() -> bytes:
    return media.generate("ts_sync.ts", media._src("96x64", "8", 2) + media.X264).read_bytes()


@pytest.mark.parametrize("damage,said", [
    ("garbage", "lose their sync byte"),     # random bytes over the last frame's packets: FFmpeg resyncs silently
    ("cut", "ends inside a packet"),          # a cut 50 bytes into the last frame's first packet
])
def test_a_damaged_mpegts_is_exit_5(tmp_path, damage, said):
    # both read 15 of 16 frames with exit 0 before the sync check (found by the long fuzzing run)
    data = _ts_clip()
    assert len(data) % 188 == 0 and data[::188] == bytes([0x47]) * (len(data) // 188)
    starts = [i for i in range(0, len(data), 188)                    # video packets (PID 0x100) that start a frame
              if ((data[i + 1] & 0x1F) << 8 | data[i + 2]) == 0x100 and data[i + 1] & 0x40]
    last = starts[-1]
    if damage == "garbage":
        noise = np.random.default_rng(0).integers(0, 256, len(data) - last, dtype=np.uint8).tobytes()
        data = data[:last] + noise.replace(b"\x47", b"\x48")
    else:
        data = data[:last + 50]
    bad = tmp_path / "bad.ts"
    bad.write_bytes(data)
    with pytest.raises(InputCorrupt, match=said):
        with VideoReader(bad, block_size=8) as reader:
            for _ in reader:
                pass
    with VideoReader(bad, block_size=8, tolerate_damage=True) as reader:
        assert sum(b.frames for b in reader) == 15
        assert any(said in note for note in reader.damage.notes), reader.damage.notes


def test_whole_transport_streams_pass_the_sync_check(tmp_path):
    good = tmp_path / "good.ts"
    good.write_bytes(_ts_clip())
    m2ts = media.generate("ts_sync.m2ts", media._src("96x64", "8", 1) + media.X264
                          + ["-mpegts_m2ts_mode", "1"])
    assert m2ts.stat().st_size % 192 == 0
    assert mpegts_sync_errors(good) is None and mpegts_sync_errors(m2ts) is None
    with VideoReader(m2ts, block_size=8) as reader:
        assert sum(b.frames for b in reader) == 8


def _mjpeg_avi() -> tuple[Path, list[int]]:
    """A 16-frame MJPEG AVI and the byte positions of its video chunks' data."""
    clip = media.generate("chunks.avi", media._src("96x64", "8", 2) + ["-c:v", "mjpeg", "-q:v", "5"])
    with av.open(str(clip)) as c:
        pos = [p.pos for p in c.demux(video=0) if p.size]
    assert len(pos) == 16
    return clip, pos


def _read_through(path: Path) -> None:
    with VideoReader(path, block_size=8) as reader:
        for _ in reader:
            pass


def test_an_avi_cut_between_chunks_is_truncated(tmp_path):
    # its index (at the end) is lost, so FFmpeg takes the duration from the chunks it finds; the
    # header's frame count still says 16 (found by the long fuzzing run: exit 0 with 14 frames)
    clip, pos = _mjpeg_avi()
    bad = tmp_path / "cut.avi"
    bad.write_bytes(clip.read_bytes()[: pos[14] - 8])                  # chunks 0-13 whole, nothing after
    with pytest.raises(InputCorrupt, match="ends at frame 14 of the 16"):
        _read_through(bad)


def test_an_avi_with_dropped_frames_is_whole(tmp_path):
    # a capture that dropped frames: the muxer writes empty chunks, which count in the header's length
    clip = media.generate("drops.avi", media._src("96x64", "8", 2)
                          + ["-vf", "select='not(between(n,5,7))'", "-fps_mode", "passthrough", "-c:v", "mjpeg"])
    with av.open(str(clip)) as c:
        assert c.streams.video[0].frames == 16
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts[4:6] == [4, 8] and len(pts) == 13                      # the drops are there, as a jump in the index
    with VideoReader(clip, block_size=8) as reader:
        assert sum(b.frames for b in reader) == 13


def _gap_clip(name: str) -> Path:
    """16 frames at 8 fps with frames 5-7 dropped at capture: 13 frames, a 4-frame step in time."""
    return media.generate(name, media._src("96x64", "8", 2)
                          + ["-vf", "select='not(between(n,5,7))'", "-fps_mode", "passthrough", *media.X264])


def test_a_matroska_gap_is_frames_missing_unless_a_sidecar_counts_them(tmp_path):
    # Matroska declares no gaps: without a count beside it a jump in time is a lost cluster; with
    # the count vir degrade recorded, the jump is the source's, and frames are checked by count
    clip = _gap_clip("drops.mkv")
    with pytest.raises(InputCorrupt, match="3 frames missing from the file"):
        _read_through(clip)
    with VideoReader(clip, block_size=8) as reader:
        reader.declared_frames = 13
        assert sum(b.frames for b in reader) == 13
    with pytest.raises(InputCorrupt, match="it holds 13 of the 16 frames its sidecar records"):
        with VideoReader(clip, block_size=8) as reader:
            reader.declared_frames = 16
            for _ in reader:
                pass


def test_an_avi_chunk_the_index_lists_but_the_file_lost_is_damage(tmp_path):
    # a zeroed chunk header: FFmpeg skips the chunk, which then reads like a frame dropped at capture
    # (found by a fuzzing run: exit 0 with 15 of 16 frames)
    clip, pos = _mjpeg_avi()
    data = bytearray(clip.read_bytes())
    data[pos[13] - 8: pos[13] - 4] = bytes(4)                          # chunk 13's ID
    bad = tmp_path / "hole.avi"
    bad.write_bytes(bytes(data))
    assert avi_index_errors(clip) is None
    with pytest.raises(InputCorrupt, match="frame 13's chunk is missing"):
        _read_through(bad)
