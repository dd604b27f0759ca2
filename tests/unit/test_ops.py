"""Operators: exact adjoints, kernels against their formulas, masks, noise, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instantvir_cli.errors import ConfigError, MaskInvalid, UsageError
from instantvir_cli.ops import GaussianBlur, SR, build_operator, operator_from_dict
from instantvir_cli.ops.base import reflect_index
from instantvir_cli.ops.sr import cubic, resize_matrix

CASES = [
    ("inpaint", {}, 7, 9),
    ("inpaint", {"ratio": 0.3, "seed": 5}, 16, 24),
    ("deblur", {}, 7, 9),  # smaller than the 61 x 61 kernel: repeated mirroring
    ("deblur", {}, 1, 5),
    ("deblur", {}, 40, 33),
    ("deblur", {}, 200, 230),  # large enough for the banded (tiled) path
    ("deblur", {"kernel_size": 9, "sigma": 1.5}, 13, 11),
    ("sr4x", {}, 8, 12),
    ("sr4x", {}, 36, 44),
    ("sr4x", {"kernel": "bicubic"}, 8, 12),
    ("sr4x", {"kernel": "bicubic"}, 36, 44),
    ("sr4x", {"kernel": "bicubic"}, 200, 228),
]


def _ids(c):
    return f"{c[0]}-{'-'.join(f'{k}{v}' for k, v in c[1].items())}-{c[2]}x{c[3]}"


@pytest.mark.parametrize("task,opts,H,W", CASES, ids=[_ids(c) for c in CASES])
def test_adjoint_identity(task, opts, H, W):
    op = build_operator(task, H, W, **opts)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 2, H, W, generator=g)
    y = torch.randn(op.A(x).shape, generator=g)
    ax, aty = op.A(x), op.AT(y)
    assert ax.shape == (2, 3, 2, *op.measurement_size(H, W))
    assert aty.shape == x.shape
    lhs = (ax.double() * y.double()).sum()
    rhs = (x.double() * aty.double()).sum()
    scale = ax.double().norm() * y.double().norm()
    assert abs(lhs - rhs) <= 1e-5 * scale
    # float64 inputs: exact to rounding
    ax64, aty64 = op.A(x.double()), op.AT(y.double())
    assert abs((ax64 * y.double()).sum() - (x.double() * aty64).sum()) <= 1e-10 * scale


def test_blur_kernel_matches_formula():
    op = GaussianBlur()
    k = op.kernel().numpy()
    u = np.arange(61) - 30.0
    ref = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * 3.0**2))
    ref /= ref.sum()
    assert k.shape == (61, 61)
    np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-15)
    # the response to an impulse far from the borders is the kernel itself
    x = torch.zeros(1, 1, 1, 81, 81, dtype=torch.float64)
    x[..., 40, 40] = 1
    np.testing.assert_allclose(op.A(x)[0, 0, 0, 10:71, 10:71].numpy(), ref, atol=1e-15)


def test_blur_matches_reflect_pad_conv():
    op = GaussianBlur()
    x = torch.rand(1, 3, 2, 40, 50, dtype=torch.float64) * 2 - 1
    k = op.kernel()
    frames = x[0].transpose(0, 1)  # (T, C, H, W)
    ref = F.conv2d(F.pad(frames, (30, 30, 30, 30), mode="reflect"), k.expand(3, 1, 61, 61), groups=3)
    torch.testing.assert_close(op.A(x)[0].transpose(0, 1), ref, atol=1e-12, rtol=0)


def test_blur_small_frame_repeated_mirroring():
    op = GaussianBlur()
    img = np.random.default_rng(0).random((7, 9))
    padded = np.pad(img, 30, mode="reflect")  # numpy mirrors repeatedly for wide pads
    win = np.lib.stride_tricks.sliding_window_view(padded, (61, 61))
    ref = (win * op.kernel().numpy()).sum((-2, -1))
    out = op.A(torch.from_numpy(img)[None, None, None])[0, 0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert reflect_index(3, 5).tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]


def test_area_is_block_average():
    op = SR(16, 20)
    x = torch.randn(1, 2, 3, 16, 20, dtype=torch.float64)
    y = op.A(x)
    ref = torch.zeros(1, 2, 3, 4, 5, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            ref[..., i, j] = x[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean((-2, -1))
    torch.testing.assert_close(y, ref)
    # the adjoint is nearest upsampling / 16
    torch.testing.assert_close(op.AT(ref), ref.repeat_interleave(4, -2).repeat_interleave(4, -1) / 16)


def test_bicubic_weights_are_matlab_antialiased_cubic():
    m = resize_matrix(64, 16, antialias=True)
    np.testing.assert_allclose(m.sum(1), 1.0)
    # an interior row: taps at distances +-0.5 .. +-7.5 from the centre, kernel cubic(d / 4) / 4
    row = m[8]
    centre = 4 * 8 + 1.5  # 0-based input coordinate of output sample 8
    d = np.arange(64) - centre
    ref = cubic(d / 4) / 4
    np.testing.assert_allclose(row, ref / ref.sum(), atol=1e-12)
    assert cubic(np.array([0.0, 1.0, 2.0])).tolist() == [1.0, 0.0, 0.0]
    # a constant frame stays constant
    op = SR(32, 32, kernel="bicubic")
    torch.testing.assert_close(op.A(torch.full((1, 1, 1, 32, 32), 0.3)), torch.full((1, 1, 1, 8, 8), 0.3))


def test_sr_sizes_and_errors():
    op = build_operator("sr4x", 480, 832)
    assert op.measurement_size(480, 832) == (120, 208)
    assert op.signal_size(120, 208) == (480, 832)
    with pytest.raises(UsageError, match="divisible by 4"):
        build_operator("sr4x", 482, 832)
    with pytest.raises(UsageError, match="divisible by 4"):
        op.A(torch.zeros(1, 3, 1, 10, 12))
    with pytest.raises(UsageError, match="kernel"):
        build_operator("sr4x", 8, 8, kernel="lanczos")
    x0 = op.init(torch.zeros(1, 3, 2, 120, 208))
    assert x0.shape == (1, 3, 2, 480, 832)
    for task in ("inpaint", "deblur"):
        o = build_operator(task, 30, 40)
        assert o.measurement_size(30, 40) == (30, 40) and o.signal_size(30, 40) == (30, 40)


def test_random_mask_ratio_and_sharing():
    for H, W, ratio in ((16, 24, 0.5), (7, 9, 0.5), (10, 10, 0.3)):
        op = build_operator("inpaint", H, W, ratio=ratio, seed=3)
        assert int(op.mask.sum()) == round(ratio * H * W)
    op = build_operator("inpaint", 16, 24, seed=3)
    x = torch.rand(2, 3, 4, 16, 24) + 0.5  # never 0, so zeros in y mark the holes
    y = op.A(x)
    observed = y != 0
    assert torch.equal(observed, op.mask.expand_as(observed))
    assert torch.equal(y[observed], x[observed])
    assert torch.equal(op.init(y), y) and torch.equal(op.AT(y), y)


def test_mask_seeds():
    a = build_operator("inpaint", 32, 32, seed=1).mask
    assert torch.equal(a, build_operator("inpaint", 32, 32, seed=1).mask)
    assert not torch.equal(a, build_operator("inpaint", 32, 32, seed=2).mask)


def test_user_masks():
    m = torch.rand(8, 10) > 0.5
    op = build_operator("inpaint", 8, 10, mask=m)
    assert torch.equal(op.mask, m)
    op2 = build_operator("inpaint", 8, 10, mask=m.int())  # 0/1 numbers are accepted
    assert torch.equal(op2.mask, m)
    video = torch.rand(3, 8, 10) > 0.5
    opv = op.with_mask(video)
    x = torch.rand(1, 3, 3, 8, 10)
    torch.testing.assert_close(opv.A(x), x * video[None, None].float())
    with pytest.raises(UsageError, match="with_mask"):
        opv.A(torch.rand(1, 3, 2, 8, 10))
    with pytest.raises(MaskInvalid, match="the video is 10x8"):
        build_operator("inpaint", 8, 10, mask=torch.ones(8, 11, dtype=torch.bool))
    with pytest.raises(MaskInvalid, match="0 or 1"):
        build_operator("inpaint", 8, 10, mask=torch.full((8, 10), 0.5))
    with pytest.raises(UsageError, match="frames are"):
        op.A(torch.rand(1, 3, 1, 9, 10))


def test_json_round_trip(tmp_path):
    mask_file = tmp_path / "mask.png"
    mask_file.write_bytes(b"not really a png")
    user = torch.rand(6, 8) > 0.5
    ops = [
        build_operator("inpaint", 12, 16, seed=7, ratio=0.4, sigma_y=0.05),
        build_operator("inpaint", 6, 8, mask=user),
        build_operator("deblur", 30, 40, sigma_y=0.01),
        build_operator("deblur", 30, 40, kernel_size=21, sigma=2.0),
        build_operator("sr4x", 32, 48),
        build_operator("sr4x", 32, 48, kernel="bicubic", sigma_y=0.05),
    ]
    x = torch.randn(1, 3, 2, 6, 8)
    for op in ops:
        d = json.loads(json.dumps(op.to_dict()))
        op2 = operator_from_dict(d)
        assert type(op2) is type(op) and op2.to_dict() == op.to_dict()
        xs = torch.randn(1, 3, 2, op.height, op.width)
        torch.testing.assert_close(op2.A(xs), op.A(xs), rtol=0, atol=0)
    # a mask file is recorded by path and hash; rebuilding needs the loaded mask
    opf = build_operator("inpaint", 6, 8, mask=user).with_mask_file(mask_file)
    d = json.loads(json.dumps(opf.to_dict()))
    assert d["mask_file"] == str(mask_file.resolve()) and len(d["mask_sha256"]) == 64
    with pytest.raises(ConfigError, match="mask="):
        operator_from_dict(d)
    op3 = operator_from_dict(d, mask=user)
    assert op3.to_dict() == d and torch.equal(op3.A(x), opf.A(x))


def test_factory_errors():
    with pytest.raises(UsageError, match="unknown task"):
        build_operator("denoise", 8, 8)
    with pytest.raises(UsageError, match="unknown option"):
        build_operator("deblur", 8, 8, seed=1)
    with pytest.raises(ConfigError, match="unknown task"):
        operator_from_dict({"task": "nope"})
    with pytest.raises(ConfigError, match="unknown key"):
        operator_from_dict({"task": "deblur", "radius": 3})
    with pytest.raises(UsageError, match="sigma_y"):
        build_operator("deblur", 8, 8, sigma_y=-1)
    with pytest.raises(UsageError, match="B, C, T, H, W"):
        build_operator("deblur", 8, 8).A(torch.zeros(3, 8, 8))


@pytest.mark.parametrize("task", ["inpaint", "deblur", "sr4x"])
def test_noise_seeded_and_right_std(task):
    op = build_operator(task, 64, 64, sigma_y=0.05)
    x = torch.rand(1, 3, 4, 64, 64) * 2 - 1
    y1 = op.measure(x, generator=torch.Generator().manual_seed(0))
    y2 = op.measure(x, generator=torch.Generator().manual_seed(0))
    y3 = op.measure(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    n = y1 - op.A(x)
    if task == "inpaint":
        assert torch.all(n[:, :, :, ~op.mask] == 0)  # holes stay exactly 0
        n = n[:, :, :, op.mask]
    assert abs(float(n.std()) - 0.05) < 0.002
    op.sigma_y = 0.0
    assert torch.equal(op.measure(x), op.A(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("task,opts,H,W", CASES, ids=[_ids(c) for c in CASES])
def test_cuda_matches_cpu(task, opts, H, W):
    op = build_operator(task, H, W, sigma_y=0.05, **opts)
    x = torch.rand(1, 3, 2, H, W) * 2 - 1
    y = op.measure(x, generator=torch.Generator().manual_seed(0))
    yc = op.measure(x.cuda(), generator=torch.Generator().manual_seed(0))
    assert yc.device.type == "cuda"
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.AT(y.cuda()).cpu(), op.AT(y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.init(y.cuda()).cpu(), op.init(y), atol=1e-5, rtol=1e-5)
