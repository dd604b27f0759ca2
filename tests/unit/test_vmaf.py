"""VMAF through the bundled ffmpeg: identical clips score near the top, a blurred copy lower, and a
binary without libvmaf is reported, not failed."""

from __future__ import annotations

import subprocess

import pytest

from instantvir_cli import vmaf
from instantvir_cli.bench import bench_quality
from instantvir_cli.video import write_synthetic_clip


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmaf")
    clean = write_synthetic_clip(d / "clean.mkv", 128, 96, 9, lossless=True)
    blurred = d / "blurred.mkv"
    subprocess.run([vmaf._ffmpeg(), "-loglevel", "error", "-i", str(clean), "-vf", "gblur=sigma=2",
                    "-c:v", "ffv1", str(blurred)], check=True)
    return clean, blurred


def test_the_bundled_ffmpeg_has_libvmaf():
    assert vmaf.vmaf_unavailable() is None       # imageio-ffmpeg is pinned to a binary that has it


def test_identical_scores_high_and_blur_scores_lower(pair):
    clean, blurred = pair
    same = vmaf.vmaf_score(clean, clean)
    worse = vmaf.vmaf_score(clean, blurred)
    print(f"VMAF identical {same:.2f}, blurred {worse:.2f}")
    assert same > 95
    assert worse < same - 10


def test_bench_quality_reports_vmaf_beside_psnr(pair):
    clean, blurred = pair
    q = bench_quality(clean, blurred)
    assert q.vmaf is not None and q.vmaf_note == ""
    assert 0 < q.vmaf < 95 and q.psnr < 40
    assert "vmaf" in q.as_dict()


def test_without_libvmaf_it_says_so(pair, monkeypatch):
    monkeypatch.setattr(vmaf, "_ffmpeg", lambda: "/bin/false")
    vmaf.vmaf_unavailable.cache_clear()
    try:
        assert "no libvmaf" in vmaf.vmaf_unavailable()
        assert vmaf.vmaf_score(*pair) is None
    finally:
        vmaf.vmaf_unavailable.cache_clear()
