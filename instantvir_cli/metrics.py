"""Video quality metrics: PSNR, SSIM and flicker, streamed block by block.

Frames are float (B, C, T, H, W) in [-1, 1]. Every metric first maps them to 8-bit levels:
v = (clamp(x, -1, 1) + 1) * 127.5 in [0, 255], not rounded, so data range is 255.

    PSNR     10 log10(255^2 / MSE) per frame (over C, H, W), then the mean over frames;
             a frame identical to its reference counts as PSNR_CAP dB (not inf).
    SSIM     Wang et al. with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
             population covariances, averaged over the valid (un-padded) window positions
             per channel, then over channels, then over frames: the same number as
             skimage.metrics.structural_similarity(ref, test, gaussian_weights=True,
             sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1).
    flicker  mean over t >= 1 of mean |(x^_t - x^_{t-1}) - (x_t - x_{t-1})| (levels):
             how much the restored video's frame-to-frame change departs from the truth's.
             NaN for a video of one frame.

The batch index B counts separate videos (flicker pairs never cross videos).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from instantvir_cli.errors import UsageError

PSNR_CAP = 100.0
SSIM_WIN, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
PEAK = 255.0


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 255] levels (clamped, not rounded), float32."""
    return (x.float().clamp(-1, 1) + 1) * 127.5


def _check_pair(ref: torch.Tensor, test: torch.Tensor) -> None:
    if ref.dim() != 5 or ref.shape != test.shape:
        raise UsageError(
            f"reference and test must be equal (B, C, T, H, W) shapes, got {tuple(ref.shape)} and {tuple(test.shape)}"
        )


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B T, C, H, W) in levels."""
    B, C, T, H, W = x.shape
    return to_levels(x).transpose(1, 2).reshape(B * T, C, H, W)


def psnr_frames(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB: (B, C, T, H, W) x2 -> (B T,) float64, capped at PSNR_CAP."""
    _check_pair(ref, test)
    a, b = _frames(ref).double(), _frames(test).double()
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(PEAK**2 / mse)).clamp(max=PSNR_CAP)


def _gauss_taps() -> list[float]:
    r = SSIM_WIN // 2
    g = [math.exp(-(u * u) / (2 * SSIM_SIGMA**2)) for u in range(-r, r + 1)]
    return [v / sum(g) for v in g]


def _valid_gauss(x: torch.Tensor) -> torch.Tensor:
    """Separable 11-tap Gaussian, valid positions only: (..., H, W) -> (..., H-10, W-10).

    Written as shifted in-place adds, which beat a depthwise conv2d on CPU by far.
    """
    g, n = _gauss_taps(), SSIM_WIN
    H, W = x.shape[-2:]
    h, w = H - n + 1, W - n + 1
    out = x[..., :, 0:w] * g[0]
    for k in range(1, n):
        out.add_(x[..., :, k : k + w], alpha=g[k])
    res = out[..., 0:h, :] * g[0]
    for k in range(1, n):
        res.add_(out[..., k : k + h, :], alpha=g[k])
    return res


def ssim_frames(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM: (B, C, T, H, W) x2 -> (B T,) float64 (mean over channels and positions)."""
    _check_pair(ref, test)
    H, W = ref.shape[-2:]
    if H < SSIM_WIN or W < SSIM_WIN:
        raise UsageError(f"SSIM needs frames of at least {SSIM_WIN}x{SSIM_WIN}, got {W}x{H}")
    # Second moments are taken around the mid level 127.5, which keeps float32 exact enough.
    a, b = _frames(ref) - 127.5, _frames(test) - 127.5  # (N, C, H, W)
    N, C = a.shape[:2]
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (N, 5C, H, W)
    f = _valid_gauss(stack)  # (N, 5C, H-10, W-10)
    ma, mb, saa, sbb, sab = f.split(C, dim=1)
    va, vb, cov = saa - ma * ma, sbb - mb * mb, sab - ma * mb
    ma, mb = ma + 127.5, mb + 127.5
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.double().mean(dim=(2, 3)).mean(dim=1)


def flicker_pairs(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per consecutive-frame pair: mean |d test - d ref| in levels: (B, C, T, H, W) -> (B (T-1),)."""
    _check_pair(ref, test)
    a, b = to_levels(ref), to_levels(test)
    d = (b[:, :, 1:] - b[:, :, :-1]) - (a[:, :, 1:] - a[:, :, :-1])  # (B, C, T-1, H, W)
    return d.abs().double().mean(dim=(1, 3, 4)).reshape(-1)


@dataclass
class Quality:
    """Means over frames (psnr in dB, ssim in [-1, 1]) and over frame pairs (flicker, levels)."""

    psnr: float
    ssim: float
    flicker: float
    frames: int

    def as_dict(self) -> dict:
        return asdict(self)


class QualityMeter:
    """Streaming PSNR / SSIM / flicker: `update` with blocks in order, then `result`.

    Holds only running sums and the previous reference/test frame (for flicker).
    """

    def __init__(self, ssim: bool = True) -> None:
        self.with_ssim = ssim
        self._psnr = self._ssim = self._flicker = 0.0
        self._frames = self._pairs = 0
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, ref: torch.Tensor, test: torch.Tensor) -> None:
        """Add the next frames: ref and test are (B, C, T, H, W) in [-1, 1]."""
        _check_pair(ref, test)
        if ref.shape[2] == 0:
            return
        test = test.to(ref.device)
        if self._prev is not None and self._prev[0].shape[:2] + self._prev[0].shape[3:] != ref.shape[:2] + ref.shape[3:]:
            raise UsageError(f"block of shape {tuple(ref.shape)} does not continue the previous blocks")
        self._psnr += float(psnr_frames(ref, test).sum())
        if self.with_ssim:
            self._ssim += float(ssim_frames(ref, test).sum())
        self._frames += ref.shape[0] * ref.shape[2]
        if self._prev is not None:
            ref_c, test_c = torch.cat([self._prev[0], ref], 2), torch.cat([self._prev[1], test], 2)
        else:
            ref_c, test_c = ref, test
        if ref_c.shape[2] > 1:
            f = flicker_pairs(ref_c, test_c)
            self._flicker += float(f.sum())
            self._pairs += f.numel()
        self._prev = (ref[:, :, -1:].clone(), test[:, :, -1:].clone())

    def result(self) -> Quality:
        """Means so far (NaN where nothing was measured)."""
        n = self._frames
        return Quality(
            psnr=self._psnr / n if n else math.nan,
            ssim=self._ssim / n if n and self.with_ssim else math.nan,
            flicker=self._flicker / self._pairs if self._pairs else math.nan,
            frames=n,
        )


def psnr(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Mean over frames of per-frame PSNR (dB) of (B, C, T, H, W) videos in [-1, 1]."""
    return float(psnr_frames(ref, test).mean())


def ssim(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Mean over frames of per-frame SSIM of (B, C, T, H, W) videos in [-1, 1]."""
    return float(ssim_frames(ref, test).mean())


def flicker(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Mean over frame pairs of the temporal-difference error (levels); NaN for one frame."""
    f = flicker_pairs(ref, test)
    return float(f.mean()) if f.numel() else math.nan


def quality(ref: torch.Tensor, test: torch.Tensor) -> Quality:
    """All three metrics of whole (B, C, T, H, W) videos at once."""
    meter = QualityMeter()
    meter.update(ref, test)
    return meter.result()
