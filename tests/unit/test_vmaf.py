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


def test_frames_are_paired_by_index_not_by_timestamp(tmp_path):
    # the same moving frames at 26.777 fps in MP4 (exact times) and in Matroska (rounded to the
    # millisecond, some earlier than the MP4's): paired by timestamp some frames met their
    # neighbours and identical content scored low
    from fractions import Fraction

    import torch

    from instantvir_cli.video import EncodeOptions, VideoWriter

    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 1, 96, 160, generator=g) * 2 - 1
    x = torch.cat([torch.roll(base, shifts=7 * t, dims=-1) for t in range(12)], 2)   # a fast pan
    paths = {}
    for suffix in (".mp4", ".mkv"):
        paths[suffix] = tmp_path / f"pan{suffix}"
        with VideoWriter(paths[suffix], 160, 96, options=EncodeOptions(lossless=True), fps=Fraction(26777, 1000)) as w:
            w.write(x)
    score = vmaf.vmaf_score(paths[".mp4"], paths[".mkv"])
    assert score > 95, score
