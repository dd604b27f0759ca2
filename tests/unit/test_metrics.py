"""Metrics against scikit-image (PSNR, SSIM) and a direct NumPy flicker; streaming == one shot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from instantvir_cli.errors import UsageError
from instantvir_cli.metrics import PSNR_CAP, QualityMeter, flicker, psnr, psnr_frames, quality, ssim, ssim_frames, to_levels

import torch


@pytest.fixture(scope="module")
def pair():
    """A short real-ish clip (a photo panning) and a distorted copy: (1, 3, 4, 64, 80) each."""
    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 127.5 - 1
    ref = torch.stack([img[:, 100 + 3 * t : 164 + 3 * t, 150 + 2 * t : 230 + 2 * t] for t in range(4)], 1)[None]
    g = torch.Generator().manual_seed(0)
    test = (ref + 0.08 * torch.randn(ref.shape, generator=g) + 0.02).clamp(-1, 1)
    return ref, test


def _np_frames(x):
    """(1, C, T, H, W) -> list of (H, W, C) float64 arrays in levels."""
    lv = to_levels(x)[0].permute(1, 2, 3, 0).double().numpy()
    return [lv[t] for t in range(lv.shape[0])]


def test_psnr_matches_skimage(pair):
    ref, test = pair
    refs, tests = _np_frames(ref), _np_frames(test)
    per_frame = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(refs, tests)]
    np.testing.assert_allclose(psnr_frames(ref, test).numpy(), per_frame, atol=1e-4)
    assert abs(psnr(ref, test) - np.mean(per_frame)) < 1e-4


def test_ssim_matches_skimage(pair):
    ref, test = pair
    refs, tests = _np_frames(ref), _np_frames(test)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)
    per_frame = [structural_similarity(a, b, **kw) for a, b in zip(refs, tests)]
    np.testing.assert_allclose(ssim_frames(ref, test).numpy(), per_frame, atol=1e-4)
    assert abs(ssim(ref, test) - np.mean(per_frame)) < 1e-4
    assert abs(ssim(ref, ref) - 1.0) < 1e-6


def test_flicker_matches_numpy(pair):
    ref, test = pair
    a, b = np.stack(_np_frames(ref)), np.stack(_np_frames(test))  # (T, H, W, C)
    direct = np.mean([np.abs((b[t] - b[t - 1]) - (a[t] - a[t - 1])).mean() for t in range(1, len(a))])
    assert abs(flicker(ref, test) - direct) < 1e-4
    assert flicker(ref, ref) == 0.0
    assert math.isnan(flicker(ref[:, :, :1], test[:, :, :1]))


def test_streaming_equals_one_shot(pair):
    ref, test = pair
    whole = quality(ref, test)
    for splits in ([1, 1, 1, 1], [3, 1], [2, 2], [1, 3]):
        meter, t = QualityMeter(), 0
        for n in splits:
            meter.update(ref[:, :, t : t + n], test[:, :, t : t + n])
            t += n
        r = meter.result()
        assert r.frames == whole.frames == 4
        assert abs(r.psnr - whole.psnr) < 1e-9 and abs(r.ssim - whole.ssim) < 1e-9
        assert abs(r.flicker - whole.flicker) < 1e-6


def test_batch_is_separate_videos(pair):
    ref, test = pair
    both = QualityMeter()
    both.update(torch.cat([ref, test]), torch.cat([test, ref]))
    one = quality(ref, test)
    r = both.result()
    assert r.frames == 8
    assert abs(r.psnr - one.psnr) < 1e-9
    assert abs(r.flicker - one.flicker) < 1e-6  # pairs never cross from video 0 to video 1


def test_edge_cases(pair):
    ref, test = pair
    assert psnr(ref, ref) == PSNR_CAP
    r = QualityMeter().result()
    assert r.frames == 0 and math.isnan(r.psnr)
    with pytest.raises(UsageError, match="equal"):
        psnr(ref, test[..., :-1])
    with pytest.raises(UsageError, match="at least 11x11"):
        ssim(ref[..., :8, :8], test[..., :8, :8])
    meter = QualityMeter()
    meter.update(ref, test)
    with pytest.raises(UsageError, match="continue"):
        meter.update(ref[..., :32, :], test[..., :32, :])
    # out-of-range values are clamped to [-1, 1] before mapping to levels
    assert psnr(ref, ref * 0 + 5) == psnr(ref, ref * 0 + 1)
