"""The Haar wavelet front and back ends of LeanVAE, folded into linear patch maps.

LeanVAE (arXiv 2503.14325) splits each frame into Haar bands (2-D for the first frame, 3-D for
the frames after), then embeds the low band and the high bands of each patch with one linear
map each. Both steps are linear, so `WaveletPatch` applies them as one matrix on raw pixel
patches, and the decoder's transposed linears plus inverse Haar likewise: the wavelet never
costs a pass over the pixels, while the parameters keep the published layout.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["haar_dwt", "haar_idwt", "haar_dwt_adjoint", "patchify", "unpatchify_into",
           "WaveletPatch", "DWT_IMAGE", "DWT_VIDEO"]


def haar_dwt(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """One level of the unnormalized Haar transform along `dims`, in that order.

    Each axis in turn becomes a (sum, difference) pair of its even and odd samples; the bands
    go to the channel axis, band-major: (B, C, ...) -> (B, 2^len(dims) * C, ...), band index
    bits in the order of `dims` (first axis = most significant). This is the published
    transform (orthonormal Haar rescaled by 2 in 2-D and 2 sqrt 2 in 3-D), so the first band is
    the plain sum over each 2x2 or 2x2x2 block.
    """
    bands = [x]
    for d in dims:
        split = []
        for b in bands:
            even, odd = b.unflatten(d, (-1, 2)).unbind(d + 1)
            split += [even + odd, even - odd]
        bands = split
    return torch.cat(bands, dim=1)


def haar_idwt(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Exact inverse of `haar_dwt(., dims)`."""
    return _haar_merge(x, dims, 0.5)


def haar_dwt_adjoint(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The transpose of `haar_dwt(., dims)`: 2^len(dims) times its inverse (the unnormalized
    Haar matrix is symmetric per axis and 2^n times orthogonal)."""
    return _haar_merge(x, dims, 1.0)


def _haar_merge(x: torch.Tensor, dims: tuple[int, ...], scale: float) -> torch.Tensor:
    bands = list(x.chunk(2 ** len(dims), dim=1))
    for d in reversed(dims):
        merged = []
        for lo, hi in zip(bands[0::2], bands[1::2]):
            even, odd = lo + hi, lo - hi
            if scale != 1.0:
                even, odd = even * scale, odd * scale
            merged.append(torch.stack([even, odd], dim=d + 1).flatten(d, d + 1))
        bands = merged
    return bands[0]


# axes of (B, C, T, H, W) in the published order: frame 0 goes W then H, the rest T, H, W
DWT_IMAGE = (4, 3)
DWT_VIDEO = (2, 3, 4)


def patchify(x: torch.Tensor, pt: int, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T/pt, H/p, W/p, C*pt*p*p), channel-major as published."""
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // pt, pt, H // p, p, W // p, p)                 # (B, C, t, pt, h, p, w, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)                                    # (B, t, h, w, C, pt, p, p)
    return x.reshape(B, T // pt, H // p, W // p, C * pt * p * p)            # (B, t, h, w, C*pt*p*p)


def unpatchify_into(out: torch.Tensor, x: torch.Tensor, pt: int, p: int):
    """Inverse of `patchify`, written into `out` (B, C, t*pt, h*p, w*p), which may be a slice."""
    B, t, h, w, _ = x.shape
    C = out.shape[1]
    out.view(B, C, t, pt, h, p, w, p).copy_(
        x.view(B, t, h, w, C, pt, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7))  # (B, C, t, pt, h, p, w, p)


HEAD_TOKENS = 256   # tokens per chunk of the decoder's pixel head at inference


class WaveletPatch(nn.Module):
    """The published front end (Haar DWT, then one linear patch embedding for the low band and
    one for the high bands) or back end (the transposed linears, then the inverse Haar) of one
    frame kind: the image frame (2-D Haar, patch 1 x p x p) or video frames (3-D, pt x p x p).

    Both the wavelet and the patch maps are linear, so each end is applied as ONE linear map on
    (C, tp, 2p, 2p) pixel patches, folded from the parameters at every call: the wavelet costs no
    pass over the pixels, and the parameters keep the published layout (`low`, `high`).
    """

    def __init__(self, in_channels: int, patch_t: int, patch_hw: int, dim_low: int, dim_high: int,
                 video: bool, head: bool):
        super().__init__()
        self.p = patch_hw                                         # band patch: (pt, p, p)
        self.pt = patch_t if video else 1
        self.dims = DWT_VIDEO if video else DWT_IMAGE
        self.tp, self.sp = (2 * self.pt if video else 1), 2 * patch_hw  # pixel patch: (tp, sp, sp)
        n_low = in_channels * self.pt * patch_hw ** 2             # the low band's coefficients
        n_high = (2 ** len(self.dims) - 1) * n_low                # the high bands' (3 or 7 bands)
        self.low = nn.Linear(dim_low, n_low) if head else nn.Linear(n_low, dim_low)
        self.high = nn.Linear(dim_high, n_high) if head else nn.Linear(n_high, dim_high)

    def _bands(self, w_low: torch.Tensor, w_high: torch.Tensor) -> torch.Tensor:
        """Rows over band coefficients -> (Dl + Dh, nb*C, pt, p, p), low band first."""
        p = self.p
        w_low = w_low.unflatten(1, (-1, self.pt, p, p))                      # (Dl, C, pt, p, p)
        w_high = w_high.unflatten(1, (-1, self.pt, p, p))                    # (Dh, (nb-1)C, pt, p, p)
        return torch.cat([F.pad(w_low, (0, 0, 0, 0, 0, 0, 0, w_high.shape[1])),
                          F.pad(w_high, (0, 0, 0, 0, 0, 0, w_low.shape[1], 0))], dim=0)

    def embed_weights(self, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b), W: (Dl + Dh, C*tp*sp*sp), for pixels multiplied by `scale` first."""
        w = self._bands(self.low.weight, self.high.weight)                   # (D, nb*C, pt, p, p)
        w = haar_dwt_adjoint(w, self.dims) * scale                           # (D, C, tp, sp, sp)
        return w.flatten(1), torch.cat([self.low.bias, self.high.bias])

    def head_weights(self, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b), W: (C*tp*sp*sp, Dl + Dh), for pixels divided by `scale` after."""
        w = self._bands(self.low.weight.t(), self.high.weight.t())           # (D, nb*C, pt, p, p)
        b = torch.cat([self.low.bias, self.high.bias]).view(1, *w.shape[1:]) # (1, nb*C, pt, p, p)
        wb = haar_idwt(torch.cat([w, b]), self.dims) / scale                 # (D+1, C, tp, sp, sp)
        return wb[:-1].flatten(1).t(), wb[-1].flatten()

    def embed(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, T, H, W) pixels -> low (B, t, h, w, Dl), high (B, t, h, w, Dh)."""
        w, b = self.embed_weights(scale)
        x = patchify(x, self.tp, self.sp)                                    # (B, t, h, w, C*tp*sp*sp)
        Dl = self.low.out_features
        return F.linear(x, w[:Dl], b[:Dl]), F.linear(x, w[Dl:], b[Dl:])

    def unembed_into(self, out: torch.Tensor, h: torch.Tensor, scale: float, bias: bool = True):
        """h: (B, t, h, w, Dl + Dh) -> pixels written into out: (B, C, t*tp, H, W); without
        `bias`, the linear part alone (what maps a difference of features).

        At inference, a few token rows at a time: each chunk's pixels are still in cache
        when they are scattered into `out`."""
        w, b = self.head_weights(scale)
        b = b if bias else None
        rows = h.shape[2] if torch.is_grad_enabled() else max(1, HEAD_TOKENS // (h.shape[0] * h.shape[1] * h.shape[3]))
        for i in range(0, h.shape[2], rows):
            unpatchify_into(out[..., i * self.sp:(i + rows) * self.sp, :], F.linear(h[:, :, i:i + rows], w, b),
                            self.tp, self.sp)
