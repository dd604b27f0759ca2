"""Classical (non-learned) restorers: the baselines a learned model must beat.

    sr4x:    bicubic upsampling + iterative back-projection against the exact operator,
             run to its (slightly regularized) fixed point in closed form
    deblur:  Fourier-domain deconvolution of reflect-padded frames with a gradient prior
             (Tikhonov / Wiener), refined by a few ADMM iterations of a total-variation prior
    inpaint: multi-scale normalized convolution, refined by a few conjugate-gradient steps
             of a (bi)harmonic smoothness prior on the missing pixels; observed pixels are kept

Each works frame by frame (per channel), so streaming block by block equals one call.
Parameters are dataclasses; the defaults were tuned with scripts/tune_classical.py on real
clips with 8-bit quantized measurements. Regularization scales with the noise variance
sigma_q^2 + sigma_y^2, where sigma_q = (2 / 255) / sqrt(12) is the 8-bit quantization noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from instantvir_cli.errors import UsageError
from instantvir_cli.ops import GaussianBlur, Inpaint, Operator, SR
from instantvir_cli.ops.base import Banded, check_video, reflect_index, separable_apply
from instantvir_cli.ops.blur import gaussian_kernel_1d
from instantvir_cli.restorer import Restorer

SIGMA_Q = (2.0 / 255.0) / math.sqrt(12.0)  # std of 8-bit rounding noise on [-1, 1]


def noise_var(op: Operator) -> float:
    """sigma_q^2 + sigma_y^2: the measurement noise the regularizers are scaled by."""
    return SIGMA_Q**2 + float(op.sigma_y) ** 2


@dataclass(frozen=True)
class SRParams:
    """Back-projection run to its fixed point, regularized: per axis c = argmin |M c - y|^2 +
    lambda |D c|^2 with M = A up, D first differences, lambda = reg * (sigma_q^2 + sigma_y^2);
    x = up(c)."""

    reg: float = 30.0
    tol: float = 1e-7        # entries of the restoring matrices below this are dropped (banding)


@dataclass(frozen=True)
class DeblurParams:
    """Gradient-prior Wiener deconvolution, then `tv_iters` ADMM steps of isotropic TV.

    Weights are per unit noise variance: lambda = weight * (sigma_q^2 + sigma_y^2).
    """

    wiener_weight: float = 5.0    # Tikhonov weight on |grad x|^2
    tv_weight: float = 6.0        # TV weight on |grad x|_2,1
    rho_weight: float = 200.0     # ADMM penalty
    tv_iters: int = 4
    pad: int = 32                 # reflect padding before the FFT (then rounded up to a 2-3-5 size)


@dataclass(frozen=True)
class InpaintParams:
    """Normalized convolution (Gaussian `nc_sigma`, pyramid below confidence `tau`), then
    `cg_iters` CG steps of min grad_weight |grad x|^2 + |lap x|^2 over the missing pixels."""

    nc_sigma: float = 0.6
    nc_radius: int = 2
    tau: float = 0.2
    max_levels: int = 12
    cg_iters: int = 5
    grad_weight: float = 0.1
    data_weight: float = 0.04     # noisy (sigma_y > 0): weight of |M(x - y)|^2 / sigma^2 against the prior


class FrameRestorer:
    """A per-frame restorer: push(y) returns x for the same frames at once; flush() is empty.

    `op` may be replaced between pushes (e.g. `op.with_mask(block)` for a mask video).
    Frames are restored `frames_per_step` at a time: one frame at a time keeps the
    intermediates in cache (docs/results.md). `threads = None` runs them on torch's own thread
    count, which on two cores beats one thread.
    """

    name = "classical"
    threads: int | None = None
    precision = "fp32"
    frames_per_step = 1

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.timings: dict[str, float] = {}      # one stage: the restorer itself
        self._empty: torch.Tensor | None = None  # (B, C, 0, H, W) like the last output

    def _restore_in_steps(self, y: torch.Tensor) -> torch.Tensor:
        op, n, T = self.op, self.frames_per_step, y.shape[2]
        per_frame_mask = getattr(op, "frames", None) is not None
        outs = []
        for t in range(0, T, n):
            if per_frame_mask:
                self.op = op.with_mask(op.mask[t:t + n])
            outs.append(self.restore(y[:, :, t:t + n]))
        self.op = op
        return torch.cat(outs, 2)

    def push(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C, T, h, w) measurement -> (B, C, T, H, W) restored frames in [-1, 1]."""
        check_video(y, "y")
        if y.shape[2] == 0:
            H, W = self.op.signal_size(*y.shape[-2:])
            return y.new_zeros(y.shape[0], y.shape[1], 0, H, W)
        x = self._restore_in_steps(y).clamp_(-1, 1)   # a fresh tensor (joined frames): clamped in place
        self._empty = x.new_zeros(x.shape[0], x.shape[1], 0, x.shape[3], x.shape[4])
        return x

    def flush(self) -> torch.Tensor:
        """Nothing is held back: an empty (B, C, 0, H, W) tensor."""
        if self._empty is not None:
            return self._empty
        return torch.zeros(1, 3, 0, getattr(self.op, "height", None) or 0, getattr(self.op, "width", None) or 0)

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- sr4x
class BackProjectionSR(FrameRestorer):
    """sr4x: the limit of iterative back-projection x += up(y - A x) from x0 = up(y), in closed form.

    With M = A up (separable: M_H, M_W of size h x h, w x w), the iteration converges to
    x = up(c) with M c = y. Solving that per axis with a small smoothness penalty against
    noise gives one matrix per axis, R = U (M^T M + lambda D^T D)^-1 M^T: x = R_H y R_W^T.
    Costs one bicubic upsampling; with lambda = 0 the result is exactly consistent (A x = y).
    """

    name = "classical-sr"

    def __init__(self, op: SR, params: SRParams = SRParams()) -> None:
        super().__init__(op)
        self.params = params
        self._mats: dict[tuple, Banded] = {}

    def _matrix(self, n: int, like: torch.Tensor) -> Banded:
        """R for a low-resolution axis of length n: (s n, n), banded, on like's device."""
        op, s = self.op, self.op.scale
        lam = self.params.reg * noise_var(op)
        key = (n, op.kernel, s, lam, like.device, like.dtype)
        r = self._mats.get(key)
        if r is None:
            U = op.up_matrix(n)  # (s n, n)
            M = op.down_matrix(s * n) @ U  # (n, n)
            D = np.diff(np.eye(n), axis=0)  # (n-1, n) first differences
            P = np.linalg.solve(M.T @ M + lam * D.T @ D, M.T)
            R = U @ P
            R[np.abs(R) < self.params.tol * np.abs(R).max()] = 0.0
            r = Banded(torch.from_numpy(R).to(like.device, like.dtype))
            if len(self._mats) > 8:
                self._mats.clear()
            self._mats[key] = r
        return r

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        return separable_apply(y, self._matrix(h, y), self._matrix(w, y))  # (B, C, T, H, W)


# -------------------------------------------------------------------------------------- deblur
def fft_size(n: int) -> int:
    """The smallest m >= n whose only prime factors are 2, 3 and 5."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _pad_index(n: int, length: int) -> tuple[np.ndarray, int]:
    """Reflect-padding source indices taking a length-n axis to `length`, and the left offset."""
    left = (length - n) // 2
    big = max(left, length - n - left)
    return reflect_index(n, big)[big - left : big - left + length], left


class WienerTVDeblur(FrameRestorer):
    """deblur: reflect-pad, FFT-deconvolve with a gradient prior, ADMM-TV refine, crop.

    The blur is per channel and per frame, so all of it runs on (B, C, T) stacks of 2-D FFTs.
    """

    name = "classical-deblur"

    def __init__(self, op: GaussianBlur, params: DeblurParams = DeblurParams()) -> None:
        super().__init__(op)
        self.params = params
        self._plans: dict[tuple, tuple] = {}

    def _plan(self, H: int, W: int, like: torch.Tensor):
        key = (H, W, like.device, self.op.kernel_size, self.op.sigma)
        plan = self._plans.get(key)
        if plan is None:
            LH, LW = fft_size(H + 2 * self.params.pad), fft_size(W + 2 * self.params.pad)
            ih, top = _pad_index(H, LH)
            iw, left = _pad_index(W, LW)
            kh, kw = self._otf(LH), self._otf(LW)[: LW // 2 + 1]
            K = kh[:, None] * kw[None, :]  # (LH, LW/2+1), real: the kernel is symmetric
            wh = 2 * math.pi * np.arange(LH) / LH
            ww = 2 * math.pi * np.arange(LW // 2 + 1) / LW
            G = (2 - 2 * np.cos(wh))[:, None] + (2 - 2 * np.cos(ww))[None, :]  # |grad|^2 symbol
            dev = like.device
            plan = (
                LH, LW, top, left,
                torch.from_numpy(ih).to(dev), torch.from_numpy(iw).to(dev),
                torch.from_numpy(K).to(dev, torch.float32), torch.from_numpy(G).to(dev, torch.float32),
            )
            if len(self._plans) > 8:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _otf(self, n: int) -> np.ndarray:
        """DFT of the op's 1-D Gaussian centred at 0 on a circle of length n (real, float64)."""
        g = gaussian_kernel_1d(self.op.kernel_size, self.op.sigma)
        r = self.op.kernel_size // 2
        h = np.zeros(n)
        np.add.at(h, np.mod(np.arange(-r, r + 1), n), g)
        return np.fft.fft(h).real

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        H, W = y.shape[-2:]
        LH, LW, top, left, ih, iw, K, G = self._plan(H, W, y)
        var = noise_var(self.op)
        bottom, right = LH - H - top, LW - W - left
        if max(top, bottom) < H and max(left, right) < W:  # one mirror suffices: F.pad is faster
            yp = F.pad(y.reshape(-1, H, W), (left, right, top, bottom), mode="reflect").view(*y.shape[:-2], LH, LW)
        else:
            yp = y.index_select(-2, ih).index_select(-1, iw)  # (B, C, T, LH, LW)
        KY = torch.fft.rfft2(yp) * K
        x = torch.fft.irfft2(KY / (K * K + p.wiener_weight * var * G), s=(LH, LW))
        if p.tv_iters > 0:
            x = self._admm_tv(x, KY, K, G, p.tv_weight * var, p.rho_weight * var, p.tv_iters)
        return x[..., top : top + H, left : left + W]

    @staticmethod
    def _admm_tv(x, KY, K, G, lam: float, rho: float, iters: int) -> torch.Tensor:
        """ADMM for min 1/2 |k * x - y|^2 + lam |grad x|_2,1 on the periodic padded frames.

        x: (..., LH, LW) start (the Wiener estimate); KY = conj(K) Y, K, G: (LH, LW/2+1).
        Splitting z = grad x with scaled dual u; written with few passes over memory:
        z - u = (2 s - 1) v and the next u = (1 - s) v, where v = grad x + u, s = shrink(|v|).
        """
        s = (x.shape[-2], x.shape[-1])
        inv = 1.0 / (K * K + rho * G)
        KY, rinv = KY * inv, inv * rho
        gx, gy = _circ_grad(x)
        ux, uy = torch.zeros_like(gx), torch.zeros_like(gy)
        for i in range(iters):
            last = i == iters - 1   # the last iteration needs neither the next dual nor grad x
            vx, vy = gx.add_(ux), gy.add_(uy)
            mag = torch.hypot(vx, vy).clamp_(min=1e-12)
            shrink = torch.div(-lam / rho, mag).add_(1.0).clamp_(min=0.0)  # (..., LH, LW)
            if not last:
                keep = 1 - shrink
                ux, uy = vx * keep, vy * keep
            f = shrink.mul_(2).sub_(1)  # 2 s - 1
            X = torch.fft.rfft2(_circ_grad_t(vx.mul_(f), vy.mul_(f))).mul_(rinv).add_(KY)  # z - u
            x = torch.fft.irfft2(X, s=s)
            if not last:
                gx, gy = _circ_grad(x)
        return x


def _circ_grad(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences with periodic wrap along W and H: two (..., H, W) tensors."""
    gx, gy = torch.empty_like(v), torch.empty_like(v)
    torch.sub(v[..., :, 1:], v[..., :, :-1], out=gx[..., :, :-1])
    torch.sub(v[..., :, :1], v[..., :, -1:], out=gx[..., :, -1:])
    torch.sub(v[..., 1:, :], v[..., :-1, :], out=gy[..., :-1, :])
    torch.sub(v[..., :1, :], v[..., -1:, :], out=gy[..., -1:, :])
    return gx, gy


def _circ_grad_t(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Adjoint of `_circ_grad`: (gx[j-1] - gx[j]) + (gy[i-1] - gy[i])."""
    out = torch.empty_like(gx)
    torch.sub(gx[..., :, :-1], gx[..., :, 1:], out=out[..., :, 1:])
    torch.sub(gx[..., :, -1:], gx[..., :, :1], out=out[..., :, :1])
    out[..., 1:, :].add_(gy[..., :-1, :]).sub_(gy[..., 1:, :])
    out[..., :1, :].add_(gy[..., -1:, :]).sub_(gy[..., :1, :])
    return out


# ------------------------------------------------------------------------------------- inpaint
def _gauss_conv(v: torch.Tensor, g: list[float]) -> torch.Tensor:
    """Separable zero-padded convolution of (N, C, H, W) with the symmetric 1-D taps g.

    Shifted in-place adds: much faster on CPU than a depthwise conv2d.
    """
    r, (H, W) = len(g) // 2, v.shape[-2:]
    p = F.pad(v, (r, r, 0, 0))
    out = p[..., :, 0:W] * g[0]
    for k in range(1, len(g)):
        out.add_(p[..., :, k : k + W], alpha=g[k])
    p = F.pad(out, (0, 0, r, r))
    out = p[..., 0:H, :] * g[0]
    for k in range(1, len(g)):
        out.add_(p[..., k : k + H, :], alpha=g[k])
    return out


def mask_pyramid(m: torch.Tensor, g: list[float], tau: float, levels: int) -> list[tuple]:
    """What `normalized_convolution` takes from the mask alone, per pyramid level (finest first):
    (den, w, 1 - w): the observed pixels' weight clamped away from 0, and the blend weight of that
    level's own estimate against the next coarser one and its complement (None, None at the last
    level). m: (N, 1, H, W) in {0, 1}.

    A static mask gives the same pyramid for every frame, so a restorer computes it once.
    """
    out = []
    while True:
        den = _gauss_conv(m, g)
        H, W = m.shape[-2:]
        coarser = levels > 0 and min(H, W) > 1 and bool((den < tau).any())
        w = (den / tau).clamp(max=1.0) if coarser else None
        out.append((den.clamp(min=1e-6), w, None if w is None else 1 - w))
        if not coarser:
            return out
        m, levels = F.avg_pool2d(m, 2, ceil_mode=True), levels - 1


def normalized_convolution(v: torch.Tensor, m: torch.Tensor, g: list[float], tau: float, levels: int,
                           pyramid: list | None = None) -> torch.Tensor:
    """Fill (N, C, H, W) frames from observed values v = m * y, m: (N, 1, H, W) in {0, 1}.

    Gaussian-weighted mean of the observed neighbours; where the weight of the observed
    pixels is below `tau`, blend in the same estimate from a 2x coarser pyramid level.
    `pyramid`: `mask_pyramid(m, g, tau, levels)`, when already computed.
    """
    return _fill(v, pyramid or mask_pyramid(m, g, tau, levels), g)


def _fill(v: torch.Tensor, pyramid: list, g: list[float], level: int = 0) -> torch.Tensor:
    den, w, w_rest = pyramid[level]
    est = _gauss_conv(v, g).div_(den)
    if w is not None:
        coarse = _fill(F.avg_pool2d(v, 2, ceil_mode=True), pyramid, g, level + 1)
        up = F.interpolate(coarse, size=v.shape[-2:], mode="bilinear", align_corners=False)
        est = est.mul_(w).add_(up.mul_(w_rest))   # w est + (1 - w) up
    return est


def _neighbour_sum(p: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of the interior of a 1-pixel-padded (..., H+2, W+2) tensor."""
    out = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
    return out.add_(p[..., 1:-1, :-2]).add_(p[..., 1:-1, 2:])


def smoothness_op(v: torch.Tensor, a: float) -> torch.Tensor:
    """(L^T L + a D^T D) v on (N, C, H, W): the normal operator of |lap v|^2 + a |grad v|^2.

    D: forward differences inside the frame, so D^T D = -(Neumann Laplacian).
    L: the 5-point Laplacian at interior pixels only, so L^T spreads it back with zeros outside.
    """
    lap_n = _neighbour_sum(F.pad(v, (1, 1, 1, 1), mode="replicate")).add_(v, alpha=-4.0)  # Neumann
    p = F.pad(lap_n[..., 1:-1, 1:-1], (2, 2, 2, 2))  # interior Laplacian, zero outside
    return _neighbour_sum(p).add_(p[..., 1:-1, 1:-1], alpha=-4.0).add_(lap_n, alpha=-a)


class NormalizedConvInpaint(FrameRestorer):
    """inpaint: normalized convolution, then CG on a (bi)harmonic prior; observed pixels kept.

    With sigma_y > 0 the observed pixels are noisy: they become a soft data term instead.
    """

    name = "classical-inpaint"

    def __init__(self, op: Inpaint, params: InpaintParams = InpaintParams()) -> None:
        super().__init__(op)
        self.params = params
        self._pyramid: tuple | None = None   # (mask tensor, mask_pyramid) of a static mask

    def _mask_pyramid(self, m5: torch.Tensor, m: torch.Tensor, g: list[float]) -> list:
        """`mask_pyramid` of m, kept while the op's (1, 1, 1, H, W) mask m5 is the same tensor
        (an operator's mask is fixed: `Inpaint.with_mask` makes a new operator)."""
        p, cached = self.params, self._pyramid
        if m5.shape[2] != 1:
            return mask_pyramid(m, g, p.tau, p.max_levels)
        if cached is None or cached[0] is not m5:
            cached = self._pyramid = (m5, mask_pyramid(m5[:, :, 0], g, p.tau, p.max_levels))
        return cached[1]

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        B, C, T, H, W = y.shape
        m5 = self.op.mask_like(y)  # (1, 1, T|1, H, W)
        yf = y.transpose(1, 2).reshape(B * T, C, H, W)  # (N, C, H, W), N = B T
        m = m5.expand(B, 1, T, H, W).transpose(1, 2).reshape(B * T, 1, H, W)
        r = max(int(p.nc_radius), 1)
        g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * p.nc_sigma**2))
        g = (g / g.sum()).tolist()
        v = yf * m
        est = normalized_convolution(v, m, g, p.tau, p.max_levels, self._mask_pyramid(m5, m, g))
        refine = p.cg_iters > 0 and min(H, W) >= 3
        if self.op.sigma_y > 0:  # noisy observations: smooth them too
            x = self._cg(est, v, m, p, soft=p.data_weight / noise_var(self.op)) if refine else est
        else:
            x = v + (1 - m) * est
            if refine:
                x = v + (1 - m) * self._cg(x, v, m, p)  # observed pixels exactly as measured
        return x.reshape(B, T, C, H, W).transpose(1, 2)  # (B, C, T, H, W)

    @staticmethod
    def _cg(x: torch.Tensor, v: torch.Tensor, m: torch.Tensor, p: InpaintParams, soft: float | None = None):
        """CG on min a |grad x|^2 + |lap x|^2 (+ soft |M (x - y)|^2), per frame and channel.

        Hard (soft is None): only the missing pixels move, x = v + z with z zero where
        observed. Inner products are per (N, C) slice, so every frame is solved on its own
        (streaming equals one call). In-place updates keep the passes over memory few.
        """
        a = p.grad_weight
        free = (1 - m) if soft is None else None

        def Q(d):
            q = smoothness_op(d, a)
            return q.mul_(free) if soft is None else q.addcmul_(m, d, value=soft)

        def dot(u, w):
            return torch.linalg.vecdot(u.flatten(-2), w.flatten(-2))[..., None, None]  # (N, C, 1, 1)

        if soft is None:
            z = free * x
            r = Q(x).neg_()  # b - Q z with b = -Q v: Q is linear and v + z = x (v is zero where free)
        else:
            z = x.clone()
            r = (soft * v).sub_(Q(z))
        d = r.clone()
        rs = dot(r, r)
        for _ in range(p.cg_iters):
            Qd = Q(d)
            alpha = rs / dot(d, Qd).clamp_(min=1e-20)
            z.addcmul_(alpha, d)
            r.addcmul_(alpha, Qd, value=-1.0)
            rs_new = dot(r, r)
            d.mul_(rs_new / rs.clamp(min=1e-20)).add_(r)
            rs = rs_new
        return z if soft is not None else z.add_(v)


# ------------------------------------------------------------------------------------- factory
def classical_restorer(op: Operator, params: SRParams | DeblurParams | InpaintParams | None = None) -> Restorer:
    """The classical restorer for `op`'s task (optionally with non-default parameters)."""
    kinds = {SR: (BackProjectionSR, SRParams), GaussianBlur: (WienerTVDeblur, DeblurParams),
             Inpaint: (NormalizedConvInpaint, InpaintParams)}
    for op_cls, (cls, params_cls) in kinds.items():
        if isinstance(op, op_cls):
            if params is not None and not isinstance(params, params_cls):
                raise UsageError(f"{type(params).__name__} does not apply to task {op.task}")
            return cls(op, params or params_cls())
    raise UsageError(f"no classical restorer for task {getattr(op, 'task', type(op).__name__)!r}")
