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


def _centred(x: torch.Tensor) -> torch.Tensor:
    """Levels minus the mid level 127.5, float32: clamp(x, -1, 1) * 127.5."""
    return x.float().clamp(-1, 1) * 127.5


def _psnr_err(e: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR from the error e = test - ref in levels: (B, C, T, H, W) -> (B T,)."""
    mse = e.double().pow(2).mean(dim=(1, 3, 4)).reshape(-1)
    return (10 * torch.log10(PEAK**2 / mse)).clamp(max=PSNR_CAP)


def psnr_frames(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB: (B, C, T, H, W) x2 -> (B T,) float64, capped at PSNR_CAP."""
    _check_pair(ref, test)
    return _psnr_err(_centred(test) - _centred(ref))


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


def _ssim_map_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of the SSIM map over the valid positions of centred (C, H, W) levels: (C,) float64."""
    f = _valid_gauss(torch.stack([a, b, a * a, b * b, a * b]))  # (5, C, H-10, W-10)
    ma, mb, saa, sbb, sab = f.unbind(0)
    va, vb, cov = saa - ma * ma, sbb - mb * mb, sab - ma * mb  # moments around 127.5: exact enough in float32
    ma, mb = ma + 127.5, mb + 127.5
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.sum(dim=(-2, -1), dtype=torch.float64)


def _ssim_centred(a: torch.Tensor, b: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """Per-frame SSIM of centred levels a, b: (B, C, T, H, W) -> (B T,) float64.

    Works frame by frame in strips of `rows` output rows (overlapping by the window), so the
    intermediate maps stay in cache (faster than whole blocks on a CPU).
    """
    B, C, T, H, W = a.shape
    if H < SSIM_WIN or W < SSIM_WIN:
        raise UsageError(f"SSIM needs frames of at least {SSIM_WIN}x{SSIM_WIN}, got {W}x{H}")
    h, w = H - SSIM_WIN + 1, W - SSIM_WIN + 1
    out = torch.empty(B, T, dtype=torch.float64)
    for i in range(B):
        for t in range(T):
            total = torch.zeros(C, dtype=torch.float64, device=a.device)
            for r0 in range(0, h, rows):
                r1 = min(r0 + rows, h) + SSIM_WIN - 1
                total += _ssim_map_sum(a[i, :, t, r0:r1], b[i, :, t, r0:r1])
            out[i, t] = float(total.mean()) / (h * w)
    return out.reshape(-1)


def ssim_frames(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM: (B, C, T, H, W) x2 -> (B T,) float64 (mean over channels and positions)."""
    _check_pair(ref, test)
    return _ssim_centred(_centred(ref), _centred(test))


def _flicker_err(e: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
    """Per pair mean |e_t - e_(t-1)| from errors e = test - ref, (B, C, T, H, W) -> (B, pairs).

    (x^_t - x^_(t-1)) - (x_t - x_(t-1)) = e_t - e_(t-1). `prev`: the error frame before e.
    """
    d = (e[:, :, 1:] - e[:, :, :-1]).abs_().mean(dim=(1, 3, 4), dtype=torch.float64)  # (B, T-1)
    if prev is None:
        return d
    d0 = (e[:, :, :1] - prev).abs_().mean(dim=(1, 3, 4), dtype=torch.float64)  # (B, 1)
    return torch.cat([d0, d], 1)


def flicker_pairs(ref: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per consecutive-frame pair: mean |d test - d ref| in levels: (B, C, T, H, W) -> (B (T-1),)."""
    _check_pair(ref, test)
    return _flicker_err(_centred(test) - _centred(ref)).reshape(-1)


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

    Holds only running sums and the previous frame's error test - ref (for flicker).
    """

    def __init__(self, ssim: bool = True) -> None:
        self.with_ssim = ssim
        self._psnr = self._ssim = self._flicker = 0.0
        self._frames = self._pairs = 0
        self._prev: torch.Tensor | None = None  # the last error frame, for flicker

    @torch.no_grad()
    def update(self, ref: torch.Tensor, test: torch.Tensor) -> None:
        """Add the next frames: ref and test are (B, C, T, H, W) in [-1, 1]."""
        _check_pair(ref, test)
        if ref.shape[2] == 0:
            return
        test = test.to(ref.device)
        if self._prev is not None and self._prev.shape[:2] + self._prev.shape[3:] != ref.shape[:2] + ref.shape[3:]:
            raise UsageError(f"block of shape {tuple(ref.shape)} does not continue the previous blocks")
        a, b = _centred(ref), _centred(test)
        e = b - a  # (B, C, T, H, W) error in levels
        self._psnr += float(_psnr_err(e).sum())
        if self.with_ssim:
            self._ssim += float(_ssim_centred(a, b).sum())
        self._frames += ref.shape[0] * ref.shape[2]
        f = _flicker_err(e, self._prev)
        self._flicker += float(f.sum())
        self._pairs += f.numel()
        self._prev = e[:, :, -1:].clone()  # (B, C, 1, H, W)

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
