"""Bad input: one line on stderr, a documented exit code per class, no traceback, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import assert_one_line_error, vir, write_mask


def _restore(inp, out, *extra):
    return vir("restore", inp, "-o", out, "--task", "deblur", "--model", "classical", "--no-progress", *extra)


def _nothing_at(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(("." + out.stem, out.stem)) and p != out
                and "partial" in p.name], list(out.parent.iterdir())


def test_missing_file(tmp_path):
    out = tmp_path / "out.mp4"
    assert_one_line_error(_restore(tmp_path / "nope.mp4", out), 3)
    _nothing_at(out)


def test_folder(tmp_path):
    (tmp_path / "dir.mp4").mkdir()
    out = tmp_path / "out.mp4"
    assert_one_line_error(_restore(tmp_path / "dir.mp4", out), 3)
    _nothing_at(out)


@pytest.mark.parametrize("case", ["empty", "random_bytes", "audio_only", "zero_frames"])
def test_unreadable(bad_inputs, tmp_path, case):
    out = tmp_path / "out.mp4"
    assert_one_line_error(_restore(bad_inputs[case], out), 4)
    _nothing_at(out)


def test_truncated_mid_stream(bad_inputs, tmp_path):
    out = tmp_path / "out.mp4"
    assert_one_line_error(_restore(bad_inputs["truncated"], out), 5)
    _nothing_at(out)


def test_output_equal_to_input(clip_odd, tmp_path):
    inp = tmp_path / "in.mp4"
    shutil.copy(clip_odd, inp)
    before = inp.read_bytes()
    assert_one_line_error(_restore(inp, inp, "--overwrite"), 6)
    assert inp.read_bytes() == before


def test_existing_output_without_overwrite(clip_odd, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    assert_one_line_error(_restore(clip_odd, out), 6)
    assert out.read_bytes() == b"keep me"


def test_mask_of_wrong_size(clip_testsrc_audio, tmp_path):
    import numpy as np

    mask = tmp_path / "mask.png"
    write_mask(mask, np.full((7, 10), 255, np.uint8))
    out = tmp_path / "out.mp4"
    result = vir("restore", clip_testsrc_audio, "-o", out, "--task", "inpaint", "--mask", mask, "--model", "classical",
                 "--no-progress")
    assert_one_line_error(result, 7)
    assert "10x7" in result.stderr
    _nothing_at(out)


def test_unknown_task(clip_odd, tmp_path):
    out = tmp_path / "out.mp4"
    result = vir("restore", clip_odd, "-o", out, "--task", "denoise", "--model", "classical")
    assert_one_line_error(result, 2)
    assert "denoise" in result.stderr
    _nothing_at(out)


def test_unknown_task_degrade(clip_odd, tmp_path):
    out = tmp_path / "out.mkv"
    assert_one_line_error(vir("degrade", clip_odd, out, "--task", "colorize"), 2)
    _nothing_at(out)


def test_missing_task_without_sidecar(clip_odd, tmp_path):
    out = tmp_path / "out.mp4"
    assert_one_line_error(vir("restore", clip_odd, "-o", out, "--model", "classical"), 2)
    _nothing_at(out)


def test_failed_degrade_leaves_no_sidecar(bad_inputs, tmp_path):
    out = tmp_path / "out.mkv"
    assert_one_line_error(vir("degrade", bad_inputs["truncated"], out, "--task", "deblur", "--no-progress"), 5)
    assert not out.exists() and not (tmp_path / "out.mkv.vir.json").exists()
