"""Whether a student fits the operator it is asked to undo (fit.py)."""

from __future__ import annotations

import pytest
import torch

from instantvir_cli import fit
from instantvir_cli.errors import UsageError
from instantvir_cli.ops import build_operator

TRAINED = {t: build_operator(t, 96, 96).to_dict() for t in ("inpaint", "deblur", "sr4x")}


def test_the_training_operator_at_another_frame_size_is_the_same():
    for task in ("deblur", "sr4x"):
        assert fit.differences(TRAINED[task], build_operator(task, 480, 272)) == {}
    # another seed draws another mask of the same density: the same operator to the student
    assert fit.differences(TRAINED["inpaint"], build_operator("inpaint", 480, 272, seed=7)) == {}


def test_a_shorter_kernel_with_the_same_blur_is_the_same():
    # sigma 3 over 31 taps leaves out tails below 1e-6 of the 61-tap kernel
    assert fit.differences(TRAINED["deblur"], build_operator("deblur", 64, 64, kernel_size=31)) == {}
    assert fit.differences(TRAINED["deblur"], build_operator("deblur", 64, 64, kernel_size=9)) == {"blur_size": (61, 9)}


def test_each_departure_is_named():
    assert fit.differences(TRAINED["deblur"], build_operator("deblur", 64, 64, sigma=2.0)) == {"blur_sigma": (3.0, 2.0)}
    assert fit.differences(TRAINED["sr4x"], build_operator("sr4x", 64, 64, kernel="bicubic")) == \
        {"sr_kernel": ("area", "bicubic")}
    assert fit.differences(TRAINED["inpaint"], build_operator("inpaint", 64, 64, ratio=0.3)) == \
        {"keep_fraction": (0.5, 0.3)}
    noisy = build_operator("sr4x", 64, 64, sigma_y=0.05)
    assert fit.differences(TRAINED["sr4x"], noisy) == {"noise": (0.0, 0.05)}


def test_a_mask_files_keep_fraction_is_measured():
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[:, :10] = True                                      # 20 % observed
    assert fit.differences(TRAINED["inpaint"], build_operator("inpaint", 40, 50, mask=mask)) == \
        {"keep_fraction": (0.5, 0.2)}
    mask[:, :25] = True                                      # 50 %: the trained density
    assert fit.differences(TRAINED["inpaint"], build_operator("inpaint", 40, 50, mask=mask)) == {}


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"stand-in for a checkpoint's bytes")
    return path


def test_check_fit_runs_the_same_operator_silently(checkpoint):
    assert fit.check_fit(TRAINED["deblur"], build_operator("deblur", 64, 64), checkpoint) is None


def test_check_fit_refuses_another_operator_and_points_to_classical(checkpoint):
    with pytest.raises(UsageError) as err:
        fit.check_fit(TRAINED["deblur"], build_operator("deblur", 64, 64, sigma=2.0), checkpoint)
    message = str(err.value)
    assert "blur sigma 3.0 (this input: 2.0)" in message and "--model classical" in message
    assert "\n" not in message


def test_check_fit_warns_where_the_checkpoint_was_measured_to_hold(checkpoint, monkeypatch):
    held = fit.Held("deblur", "blur_sigma", 2.75, 3.5, "earth, sigma 3.5: +0.5 dB")
    monkeypatch.setitem(fit.HOLDS, fit.file_sha256(checkpoint), (held,))
    note = fit.check_fit(TRAINED["deblur"], build_operator("deblur", 64, 64, sigma=3.5), checkpoint)
    assert note is not None and "measured" in note and "earth, sigma 3.5" in note
    with pytest.raises(UsageError):    # outside the measured range
        fit.check_fit(TRAINED["deblur"], build_operator("deblur", 64, 64, sigma=4.0), checkpoint)
    other = checkpoint.with_name("other.safetensors")
    other.write_bytes(b"another checkpoint")
    with pytest.raises(UsageError):    # the ranges belong to that one file
        fit.check_fit(TRAINED["deblur"], build_operator("deblur", 64, 64, sigma=3.5), other)


def test_a_checkpoint_without_its_operator_is_run_with_a_warning(checkpoint):
    note = fit.check_fit(None, build_operator("sr4x", 64, 64), checkpoint)
    assert note is not None and "does not record" in note


def test_the_measured_ranges_belong_to_the_shipped_weights():
    from instantvir_cli.models.lookup import _package_weights

    assert fit.file_sha256(_package_weights()) == fit.SHIPPED_SHA256


def test_only_one_parameter_may_differ_even_where_each_was_measured(checkpoint, monkeypatch):
    monkeypatch.setitem(fit.HOLDS, fit.file_sha256(checkpoint), fit.HOLDS[fit.SHIPPED_SHA256])
    one = build_operator("sr4x", 64, 64, kernel="bicubic")
    assert "measured" in fit.check_fit(TRAINED["sr4x"], one, checkpoint)
    both = build_operator("sr4x", 64, 64, kernel="bicubic", sigma_y=0.01)
    with pytest.raises(UsageError):
        fit.check_fit(TRAINED["sr4x"], both, checkpoint)
