"""The operator's parameters as the command line names them (ops/options.py)."""

from __future__ import annotations

import pytest

from instantvir_cli.errors import UsageError
from instantvir_cli.ops import build_operator
from instantvir_cli.ops.options import OperatorOptions


def test_each_option_reaches_its_operator():
    blur = build_operator("deblur", 32, 32, **OperatorOptions(blur_sigma=1.5, blur_size=21).for_task("deblur"))
    assert (blur.sigma, blur.kernel_size) == (1.5, 21)
    sr = build_operator("sr4x", 32, 32, **OperatorOptions(sr_kernel="bicubic").for_task("sr4x"))
    assert sr.kernel == "bicubic"
    holes = build_operator("inpaint", 40, 50, **OperatorOptions(keep_fraction=0.3).for_task("inpaint"))
    assert int(holes.mask.sum()) == round(0.3 * 40 * 50)


def test_nothing_given_builds_the_defaults():
    assert OperatorOptions().for_task("deblur") == {}
    op = build_operator("deblur", 16, 16, **OperatorOptions().for_task("deblur"))
    assert (op.sigma, op.kernel_size) == (3.0, 61)


@pytest.mark.parametrize("options, task, flag", [
    (OperatorOptions(blur_sigma=2.0), "sr4x", "--blur-sigma"),
    (OperatorOptions(blur_size=31), "inpaint", "--blur-size"),
    (OperatorOptions(keep_fraction=0.3), "deblur", "--keep-fraction"),
    (OperatorOptions(sr_kernel="bicubic"), "deblur", "--sr-kernel"),
])
def test_an_option_of_another_task_is_refused(options, task, flag):
    with pytest.raises(UsageError, match=f"{flag} applies to --task"):
        options.for_task(task)


@pytest.mark.parametrize("kwargs", [{"blur_sigma": 0.0}, {"blur_sigma": float("nan")}, {"blur_size": 30},
                                    {"blur_size": -1}, {"keep_fraction": 0.0}, {"keep_fraction": 1.5},
                                    {"sr_kernel": "lanczos"}])
def test_bad_values_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        OperatorOptions(**kwargs)


def test_override_replaces_the_sidecars_values_and_says_so():
    spec = build_operator("deblur", 32, 32).to_dict()
    out, changes = OperatorOptions(blur_sigma=2.0).override(spec)
    assert out["sigma"] == 2.0 and out["kernel_size"] == 61
    assert changes == ["--blur-sigma 2.0 replaces the sidecar's 3.0"]
    same, none = OperatorOptions(blur_sigma=3.0).override(spec)
    assert same == spec and none == []


def test_keep_fraction_cannot_replace_a_mask_file():
    spec = {"task": "inpaint", "height": 8, "width": 8, "sigma_y": 0.0, "mask_file": "/x/keep.png",
            "mask_sha256": "0"}
    with pytest.raises(UsageError, match="keep.png"):
        OperatorOptions(keep_fraction=0.4).override(spec)
