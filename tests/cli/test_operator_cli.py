"""The operator on the command line: --blur-sigma, --blur-size, --keep-fraction, --sr-kernel."""

from __future__ import annotations

import json

import pytest

from tests.cli.helpers import assert_one_line_error, vir, write_mask
from tests.model_fixtures import save_tiny_checkpoint

FAST = ("--preset", "ultrafast", "--no-progress")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """Students of the three tasks, each recording the default operator as its training operator."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _sidecar(path):
    return json.loads(path.with_name(path.name + ".vir.json").read_text())["operator"]


def _psnr(ref, test):
    result = vir("bench", "--quality", ref, test, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["psnr"]


def test_a_blur_named_on_the_command_line_is_made_and_undone(clip_odd, tmp_path):
    blurry = tmp_path / "blurry.mkv"
    made = vir("degrade", clip_odd, blurry, "--task", "deblur", "--blur-sigma", "1.5", "--blur-size", "15",
               "--no-progress")
    assert made.exit_code == 0, made.stderr
    assert (_sidecar(blurry)["sigma"], _sidecar(blurry)["kernel_size"]) == (1.5, 15)
    right, wrong = tmp_path / "right.mkv", tmp_path / "wrong.mkv"
    assert vir("restore", blurry, "-o", right, "--model", "classical", "--lossless", *FAST).exit_code == 0
    # the same file restored as if its blur were the default sigma 3: the flag replaces the sidecar's value
    override = vir("restore", blurry, "-o", wrong, "--model", "classical", "--lossless", "--blur-sigma", "3",
                   "--blur-size", "61", *FAST)
    assert override.exit_code == 0, override.stderr
    assert "--blur-sigma 3.0 replaces the sidecar's 1.5" in override.stderr
    # measured: 27.4 dB with the blur it has, 7.4 dB (ringing) with the one it has not
    right_db, wrong_db = _psnr(clip_odd, right), _psnr(clip_odd, wrong)
    print(f"sigma 1.5 restored as 1.5: {right_db:.2f} dB, as 3.0: {wrong_db:.2f} dB")
    assert right_db > wrong_db + 10


def test_the_learned_model_refuses_a_blur_it_was_not_trained_on(clip_odd, tiny_ckpt, tmp_path):
    blurry = tmp_path / "blurry.mkv"
    assert vir("degrade", clip_odd, blurry, "--task", "deblur", "--blur-sigma", "2", "--no-progress").exit_code == 0
    out = tmp_path / "out.mkv"
    result = vir("restore", blurry, "-o", out, "--checkpoint", tiny_ckpt, *FAST)
    assert_one_line_error(result, 2)
    assert "blur sigma 3.0 (this input: 2.0)" in result.stderr and "--model classical" in result.stderr
    assert not out.exists()
    # with the blur it was trained on (the flag, here) it runs
    fine = vir("restore", blurry, "-o", out, "--checkpoint", tiny_ckpt, "--blur-sigma", "3", *FAST)
    assert fine.exit_code == 0, fine.stderr


@pytest.mark.parametrize("task, flag", [("sr4x", ("--sr-kernel", "bicubic")), ("inpaint", ("--keep-fraction", "0.25"))])
def test_the_learned_model_refuses_another_kernel_or_keep_fraction(clip_odd, tiny_ckpt, tmp_path, task, flag):
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip_odd, low, "--task", task, *flag, "--no-progress").exit_code == 0
    result = vir("restore", low, "-o", tmp_path / "out.mkv", "--checkpoint", tiny_ckpt, *FAST)
    assert_one_line_error(result, 2)
    assert "--model classical" in result.stderr
    classical = vir("restore", low, "-o", tmp_path / "out.mkv", "--model", "classical", *FAST)
    assert classical.exit_code == 0, classical.stderr


@pytest.fixture()
def shipped_default(tmp_path, monkeypatch):
    """`vir restore` finds the package's weights: no $VIR_CHECKPOINT, an empty user folder."""
    monkeypatch.delenv("VIR_CHECKPOINT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.mark.parametrize("args, held", [(["--sr-kernel", "bicubic"], True), (["--noise", "0.05"], False),
                                        (["--sr-kernel", "bicubic", "--noise", "0.01"], False)])
def test_the_default_runs_off_its_operator_only_where_it_was_measured_to_hold(clip_odd, tmp_path, shipped_default,
                                                                               args, held):
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip_odd, low, "--task", "sr4x", *args, "--no-progress").exit_code == 0
    out = tmp_path / "up.mkv"
    result = vir("restore", low, "-o", out, *FAST)
    if held:
        assert result.exit_code == 0, result.stderr
        assert "warning:" in result.stderr and "measured to beat the classical restorer" in result.stderr
        assert "instantvir" in result.stdout and out.is_file()
    else:
        assert_one_line_error(result, 2)
        assert "--model classical" in result.stderr and not out.exists()


def test_keep_fraction_sets_the_random_masks_density(clip_odd, tmp_path):
    holes = tmp_path / "holes.mkv"
    made = vir("degrade", clip_odd, holes, "--task", "inpaint", "--keep-fraction", "0.3", "--no-progress")
    assert made.exit_code == 0, made.stderr
    assert _sidecar(holes)["ratio"] == 0.3


@pytest.mark.parametrize("args", [
    ["--task", "deblur", "--keep-fraction", "0.3"],
    ["--task", "sr4x", "--blur-sigma", "2"],
    ["--task", "inpaint", "--sr-kernel", "bicubic"],
    ["--task", "deblur", "--blur-size", "30"],
    ["--task", "sr4x", "--sr-kernel", "lanczos"],
])
@pytest.mark.parametrize("command", ["degrade", "restore"])
def test_an_option_of_another_task_or_a_bad_value_is_a_usage_error(clip_odd, tmp_path, command, args):
    out = tmp_path / "out.mkv"
    where = [clip_odd, out] if command == "degrade" else [clip_odd, "-o", out, "--model", "classical"]
    assert_one_line_error(vir(command, *where, *args, "--no-progress"), 2)
    assert not out.exists()


def test_keep_fraction_does_not_apply_with_a_mask(clip_odd, tmp_path):
    import numpy as np

    mask = tmp_path / "keep.png"
    write_mask(mask, (np.arange(97 * 161).reshape(97, 161) % 3 == 0).astype(np.uint8) * 255)
    for command, where in (("degrade", [clip_odd, tmp_path / "o.mkv"]),
                           ("restore", [clip_odd, "-o", tmp_path / "o.mkv", "--model", "classical"])):
        result = vir(command, *where, "--task", "inpaint", "--mask", mask, "--keep-fraction", "0.4", "--no-progress")
        assert_one_line_error(result, 2)
