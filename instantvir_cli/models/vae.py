"""LeanVAE: a light causal video VAE with a compressed-sensing bottleneck.

Cheng & Yuan, "LeanVAE: An Ultra-Efficient Reconstruction VAE for Video Diffusion Models"
(arXiv 2503.14325, MIT). Written for this project from the paper and the documented design;
`leanvae_state_dict_from_published` maps the released checkpoints onto it.

    x (B, C, T, H, W) --Haar DWT (2-D on frame 0, 3-D on frames 1..)--> low band, high bands
      --linear patchify--> tokens (B, T', h, w, D_low), (B, T', h, w, D_high)
      --NAF blocks per band, concat, NAF blocks--> features (B, T', h, w, D)
      --phi (one linear measurement)--> z (B, d, T', h, w)
    z --Q, then unrolled ISTA (step, transform, soft-threshold, transform)--> features
      --NAF blocks, split, NAF blocks per band, linear unpatchify, inverse Haar--> x

With the published sizes (wavelet 2x2x2, patch 2x4x4) T' = 1 + (T - 1) / 4, h = H / 8,
w = W / 8. Every temporal operation is a depthwise 3x3x3 convolution that looks only at the
current and the two previous token frames, so a 2-frame state per convolution (`VAEStreamState`)
lets `encode_stream` (1 + 4k frames, then 4k frames per call) and `decode_stream` (any number
of latent frames per call) reproduce the whole-clip pass bit for bit: the network runs one latent
frame at a time in both, so every kernel sees the same sizes.

Pixels enter and leave in [-1, 1]. `VAEConfig.pixel_scale` is the one place where they are
scaled to the range the network was trained on (0.5 for the published weights, which expect
[-0.5, 0.5]); it is folded into the first and the last linear map (see `wavelet.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from instantvir_cli.models.wavelet import WaveletPatch, haar_dwt, haar_idwt

__all__ = [
    "VAEConfig",
    "VAE_PRESETS",
    "vae_config",
    "VAEStreamState",
    "LeanVAE",
    "haar_dwt",
    "haar_idwt",
    "kl_divergence",
]


#################################################################################
#                                    Config                                     #
#################################################################################

@dataclass(frozen=True)
class VAEConfig:
    latent_channels: int = 16   # d: channels of z
    dim_low: int = 128          # width of the low-band (LL / LLL) branch
    dim_high: int = 384         # width of the high-band branch; trunk width D = dim_low + dim_high
    depth_band: int = 2         # NAF blocks per band branch, in the encoder and in the decoder
    depth_fusion: int = 4       # NAF blocks in the fused trunk, in the encoder and in the decoder
    ista_iters: int = 2         # unrolled ISTA iterations in the decoder's bottleneck
    ista_depth: int = 2         # NAF layers per ISTA transform (analysis and synthesis each)
    ffn_mult: float = 4.0       # GEGLU hidden width = int(ffn_mult * 2/3 * dim), the published rounding
    patch_t: int = 2            # temporal patch after the wavelet: time factor = 2 * patch_t
    patch_hw: int = 4           # spatial patch after the wavelet: space factor = 2 * patch_hw
    pixel_scale: float = 1.0    # the network sees pixel_scale * x for x in [-1, 1]; published: 0.5
    in_channels: int = 3        # C

    def __post_init__(self):
        for name in ("latent_channels", "dim_low", "dim_high", "ista_iters", "ista_depth",
                     "patch_t", "patch_hw", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"VAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("depth_band", "depth_fusion"):
            if getattr(self, name) < 0:
                raise ValueError(f"VAEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.ffn_mult > 0 or not self.pixel_scale > 0:
            raise ValueError(f"VAEConfig ffn_mult and pixel_scale must be > 0, "
                             f"got {self.ffn_mult} and {self.pixel_scale}")

    @property
    def dim(self) -> int:
        """Trunk width D."""
        return self.dim_low + self.dim_high

    @property
    def time_factor(self) -> int:
        return 2 * self.patch_t

    @property
    def space_factor(self) -> int:
        return 2 * self.patch_hw

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int, int]:
        """(d, T', h, w) of the latent of a (C, T, H, W) clip, T = 1 + k * time_factor."""
        return (self.latent_channels, 1 + (T - 1) // self.time_factor,
                H // self.space_factor, W // self.space_factor)


VAE_PRESETS: dict[str, VAEConfig] = {
    # the published checkpoints (LeanVAE-dim16.ckpt / -dim4.ckpt): 4x8x8, [-0.5, 0.5] pixels
    "lean16": VAEConfig(latent_channels=16, pixel_scale=0.5),
    "lean4": VAEConfig(latent_channels=4, pixel_scale=0.5),
    # the project's own CPU models, trained on [-1, 1] pixels, a small fraction of lean16's
    # per-frame cost (small, the default's, the smallest useful one)
    "base": VAEConfig(latent_channels=16, dim_low=64, dim_high=128, depth_band=1,
                      depth_fusion=2, ista_iters=1, ista_depth=1),
    "small": VAEConfig(latent_channels=16, dim_low=32, dim_high=64, depth_band=1,
                       depth_fusion=1, ista_iters=1, ista_depth=1),
    # the frontier below small: half its widths
    "xsmall": VAEConfig(latent_channels=16, dim_low=16, dim_high=32, depth_band=1,
                        depth_fusion=1, ista_iters=1, ista_depth=1),
    # lighter compression, same widths: 4x the latent tokens, or 2x the latent frames
    "small-4x4x4": VAEConfig(latent_channels=16, dim_low=32, dim_high=64, depth_band=1,
                             depth_fusion=1, ista_iters=1, ista_depth=1, patch_hw=2),
    "small-2x8x8": VAEConfig(latent_channels=16, dim_low=32, dim_high=64, depth_band=1,
                             depth_fusion=1, ista_iters=1, ista_depth=1, patch_t=1),
    # unit tests
    "tiny": VAEConfig(latent_channels=4, dim_low=8, dim_high=16, depth_band=1, depth_fusion=1,
                      ista_iters=1, ista_depth=1),
}


def vae_config(name: str, **overrides) -> VAEConfig:
    """The preset `name`, with fields replaced by `overrides`."""
    if name not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; known: {', '.join(VAE_PRESETS)}")
    return dataclasses.replace(VAE_PRESETS[name], **overrides)


#################################################################################
#                         Streaming state and NAF blocks                        #
#################################################################################

@dataclass
class VAEStreamState:
    """The causal state of one encode stream or one decode stream (use one of each).

    Start a stream with `VAEStreamState()`; `LeanVAE.encode_stream` / `decode_stream` update it
    in place. Memory is bounded: two token frames per temporal convolution.
    """

    first: bool = True          # the next chunk starts the clip: its frame 0 takes the image path
    frames: int = 0             # frames consumed: pixel frames (encode) or latent frames (decode)
    direction: str = ""         # "encode" or "decode", fixed by the first call
    grid: tuple[int, ...] = ()  # (B, h, w) of the token frames, fixed by the first call
    cache: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> (B, 2 or 3, h, w, D) input frames
    ring: dict[str, int] = field(default_factory=dict)  # conv name -> slot of its newest frame, where a ring of 3

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.cache.values())


class CausalConv3d(nn.Module):
    """Depthwise 3x3x3 convolution on channels-last tokens, causal in time.

    Zero padding of 1 in space; in time, the two frames before the chunk: zeros at the start of
    a clip, the cached last two input frames otherwise.

    With gradients the cached frames and the chunk are concatenated. Without them, one frame at
    a time, the cache is a ring of three frame slots: each frame is written into the slot of
    the oldest, and the kernel's time taps are rotated to the slots' order instead, so a frame
    is copied once rather than three times (the same sums in another order: equal to rounding).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, padding=(0, 1, 1), groups=dim)
        self.name = ""  # key of this layer's frames in VAEStreamState.cache, set by LeanVAE

    def forward(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        if x.shape[1] == 1 and not torch.is_grad_enabled():
            return self._ring_step(x, state)
        B, T, h, w, D = x.shape
        head = x.new_zeros(B, 2, h, w, D) if state.first else self._last_two(state)
        x = torch.cat([head, x], dim=1)                                       # (B, 2+T, h, w, D)
        state.cache[self.name] = x[:, -2:]  # a view: keeps this small buffer, saves a copy
        state.ring.pop(self.name, None)
        # channels-last in memory is channels_last_3d for the conv: no layout copies
        return self.conv(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)    # (B, T, h, w, D)

    def _last_two(self, state: VAEStreamState) -> torch.Tensor:
        """The cached two frames before the chunk, oldest first: (B, 2, h, w, D)."""
        frames = state.cache[self.name]
        if self.name in state.ring:                                           # a ring: slots 0..2
            newest = state.ring[self.name]
            frames = frames[:, [(newest + 2) % 3, newest]]
        return frames

    def _ring_step(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        """One frame x: (B, 1, h, w, D) through the ring cache -> (B, 1, h, w, D)."""
        B, _, h, w, D = x.shape
        ring = state.cache.get(self.name)
        if state.first or self.name not in state.ring:
            head = x.new_zeros(B, 2, h, w, D) if state.first else self._last_two(state)
            ring, slot = torch.cat([head, x], dim=1), 2                       # (B, 3, h, w, D)
        else:
            slot = (state.ring[self.name] + 1) % 3
            ring[:, slot] = x[:, 0]
        state.cache[self.name], state.ring[self.name] = ring, slot
        # slot s holds the frame at time tap 2 - (slot - s) mod 3 (tap 2: the newest)
        taps = [2 - (slot - s) % 3 for s in range(3)]
        weight = self.conv.weight if taps == [0, 1, 2] else self.conv.weight[:, :, taps]
        out = F.conv3d(ring.permute(0, 4, 1, 2, 3), weight, self.conv.bias, padding=(0, 1, 1), groups=D)
        return out.permute(0, 2, 3, 4, 1)                                     # (B, 1, h, w, D)


# token rows per feed-forward chunk at inference: a chunk's (rows, 2 Dh) hidden layer (8 MB at
# D = 96) stays in the CPU's cache instead of a whole frame's going out to memory; 4096 rows
# measured best (docs/results.md)
FFN_ROWS = 4096


class NAFBlock(nn.Module):
    """Causal depthwise conv, then LayerNorm + GEGLU feed-forward; residual or plain."""

    def __init__(self, dim: int, ffn_mult: float, residual: bool):
        super().__init__()
        hidden = int(ffn_mult * (2 / 3) * dim)
        self.residual = residual
        self.conv = CausalConv3d(dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def ffn(self, x: torch.Tensor, residual: bool = False) -> torch.Tensor:
        """The feed-forward of x (..., D), plus x itself with `residual`."""
        if torch.is_grad_enabled() or x.numel() <= FFN_ROWS * x.shape[-1]:
            return x + self._ffn(x) if residual else self._ffn(x)
        # inference on many tokens: rows in chunks, so the wide hidden layer stays in cache,
        # each chunk's residual sum written straight into the output
        flat = x.reshape(-1, x.shape[-1])                                     # (N, D)
        out = torch.empty_like(flat)
        for i in range(0, flat.shape[0], FFN_ROWS):
            rows = flat[i:i + FFN_ROWS]
            if residual:
                torch.add(rows, self._ffn(rows), out=out[i:i + FFN_ROWS])
            else:
                out[i:i + FFN_ROWS] = self._ffn(rows)
        return out.view(x.shape)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.fc1(self.norm(x)).chunk(2, dim=-1)                     # (..., Dh) x2
        if torch.is_grad_enabled():
            return self.fc2(F.gelu(gate) * x)                                 # (..., D)
        return self.fc2(F.gelu(gate).mul_(x))                                 # the same, one temporary fewer

    def forward(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        if not self.residual:
            return self.ffn(self.conv(x, state))
        if torch.is_grad_enabled():
            x = x + self.conv(x, state)
        else:
            x = self.conv(x, state).add_(x)                                   # x + conv(x), in place
        return self.ffn(x, residual=True)


class NAFStack(nn.Module):
    def __init__(self, dim: int, depth: int, ffn_mult: float, residual: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(NAFBlock(dim, ffn_mult, residual) for _ in range(depth))

    def forward(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, state)
        return x


#################################################################################
#                         Encoder, bottleneck, decoder                          #
#################################################################################

def _cat_time(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


class Encoder(nn.Module):
    """Pixels -> Haar bands -> patch tokens -> NAF per band -> fused NAF trunk."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        patch = (cfg.in_channels, cfg.patch_t, cfg.patch_hw, cfg.dim_low, cfg.dim_high)
        self.embed_image = WaveletPatch(*patch, video=False, head=False)
        self.embed_video = WaveletPatch(*patch, video=True, head=False)
        self.low = NAFStack(cfg.dim_low, cfg.depth_band, cfg.ffn_mult)
        self.high = NAFStack(cfg.dim_high, cfg.depth_band, cfg.ffn_mult)
        self.fusion = NAFStack(cfg.dim, cfg.depth_fusion, cfg.ffn_mult)

    def forward(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        """x: (B, C, T, H, W) pixels in [-1, 1]; frame 0 is the image frame when the stream
        starts. Returns (B, T', h, w, D)."""
        scale, low, high = self.cfg.pixel_scale, [], []
        if state.first:
            lo, hi = self.embed_image.embed(x[:, :, :1], scale)              # (B, 1, h, w, Dl|Dh)
            low.append(lo), high.append(hi)
            x = x[:, :, 1:]
        if x.shape[2] > 0:
            lo, hi = self.embed_video.embed(x, scale)                        # (B, t, h, w, Dl|Dh)
            low.append(lo), high.append(hi)
        low = self.low(_cat_time(low), state)                                 # (B, T', h, w, Dl)
        high = self.high(_cat_time(high), state)                              # (B, T', h, w, Dh)
        return self.fusion(torch.cat([low, high], dim=-1), state)             # (B, T', h, w, D)


class ISTAStep(nn.Module):
    """One unrolled ISTA-Net+ iteration: gradient step, analysis, soft threshold, synthesis."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.step_size = nn.Parameter(torch.tensor(1.0))
        self.threshold = nn.Parameter(torch.tensor([0.01]))
        self.analysis = NAFStack(cfg.dim, cfg.ista_depth, cfg.ffn_mult, residual=False)
        self.synthesis = NAFStack(cfg.dim, cfg.ista_depth, cfg.ffn_mult, residual=False)

    def forward(self, h: torch.Tensor, z: torch.Tensor, phi: torch.Tensor,
                state: VAEStreamState) -> torch.Tensor:
        r = h - self.step_size * F.linear(F.linear(h, phi) - z, phi.t())      # (B, T', h, w, D)
        u = self.analysis(r, state)
        u = torch.sign(u) * F.relu(u.abs() - self.threshold)
        return r + self.synthesis(u, state)                                   # (B, T', h, w, D)


class ISTABottleneck(nn.Module):
    """Compressed sensing: measure z = phi h; recover h from z by Q z then unrolled ISTA."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.phi = nn.Parameter(torch.empty(cfg.latent_channels, cfg.dim))   # (d, D)
        self.Q = nn.Parameter(torch.empty(cfg.dim, cfg.latent_channels))     # (D, d)
        self.steps = nn.ModuleList(ISTAStep(cfg) for _ in range(cfg.ista_iters))

    def measure(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.phi)                                          # (B, T', h, w, d)

    def reconstruct(self, z: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        h = F.linear(z, self.Q)                                               # (B, T', h, w, D)
        for step in self.steps:
            h = step(h, z, self.phi, state)
        return h


class Decoder(nn.Module):
    """Fused NAF trunk -> split -> NAF per band -> linear unpatchify -> inverse Haar."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.fusion = NAFStack(cfg.dim, cfg.depth_fusion, cfg.ffn_mult)
        self.low = NAFStack(cfg.dim_low, cfg.depth_band, cfg.ffn_mult)
        self.high = NAFStack(cfg.dim_high, cfg.depth_band, cfg.ffn_mult)
        patch = (cfg.in_channels, cfg.patch_t, cfg.patch_hw, cfg.dim_low, cfg.dim_high)
        self.head_image = WaveletPatch(*patch, video=False, head=True)
        self.head_video = WaveletPatch(*patch, video=True, head=True)

    def forward(self, h: torch.Tensor, state: VAEStreamState, out: torch.Tensor, difference: bool = False):
        """h: (B, T', h, w, D) -> pixels in [-1, 1] written into out: (B, C, T, H, W).

        With `difference`, h holds two streams (2B, ...) and out gets D(first) - D(second),
        (B, C, T, H, W): the pixel head is linear, so it maps the difference of the two streams'
        features once, without its bias, instead of each stream's features."""
        cfg, Dl = self.cfg, self.cfg.dim_low
        h = self.fusion(h, state)
        h = torch.cat([self.low(h[..., :Dl], state),
                       self.high(h[..., Dl:], state)], dim=-1)               # (B, T', h, w, D)
        if difference:
            a, b = h.chunk(2)
            h = a.sub_(b) if not torch.is_grad_enabled() else a - b          # (B/2, T', h, w, D)
        if state.first:
            self.head_image.unembed_into(out[:, :, :1], h[:, :1], cfg.pixel_scale, bias=not difference)
            out, h = out[:, :, 1:], h[:, 1:]
        if h.shape[1] > 0:
            self.head_video.unembed_into(out, h, cfg.pixel_scale, bias=not difference)


#################################################################################
#                                    LeanVAE                                    #
#################################################################################

def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over all but the batch axis: (B,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class LeanVAE(nn.Module):
    """Causal video VAE: x (B, C, T, H, W) in [-1, 1] <-> z (B, d, T', h, w)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.bottleneck = ISTABottleneck(cfg)
        self.logvar = nn.Linear(cfg.dim, cfg.latent_channels)
        self.decoder = Decoder(cfg)
        for name, m in self.named_modules():
            if isinstance(m, CausalConv3d):
                m.name = name
        self.initialize_weights()

    def initialize_weights(self):
        # the published training init: truncated-normal linears, Xavier convs, Gaussian phi, Q = phi^T
        if self.bottleneck.phi.is_meta:   # shapes only (a header check): the meta kernel of
            return                        # normal_ imports torch._dynamo, 1.5 s
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.bottleneck.phi.normal_(0.0, self.cfg.dim ** -0.5)
            self.bottleneck.Q.copy_(self.bottleneck.phi.t())

    # Everything runs one latent frame at a time, and a whole clip is a stream of one chunk.
    # GEMM kernels and vectorized loops choose their blocking and tails by tensor size, so
    # equal sizes are what make any chunking give the same bits as the whole-clip pass.

    def _check_pixels(self, x: torch.Tensor, state: VAEStreamState):
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"expected pixels (B, {cfg.in_channels}, T, H, W), got {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if H % cfg.space_factor or W % cfg.space_factor:
            raise ValueError(f"height and width must be multiples of {cfg.space_factor} "
                             f"(pad the frames), got {H}x{W}")
        tf = cfg.time_factor
        if state.first and T % tf != 1 % tf:
            raise ValueError(f"a clip (or the first chunk of a stream) needs 1 + {tf}k frames, got {T}")
        if not state.first and (T == 0 or T % tf):
            raise ValueError(f"stream chunks after the first need a positive multiple of {tf} frames, got {T}")

    @staticmethod
    def _begin(state: VAEStreamState, direction: str, grid: tuple[int, ...]):
        # checked before anything runs, so a refused chunk leaves the state as it was
        if state.direction not in ("", direction):
            raise ValueError(f"this VAEStreamState belongs to a {state.direction} stream, not {direction}")
        if not state.first and grid != state.grid:
            raise ValueError(f"a chunk with (batch, latent height, latent width) {grid} does not "
                             f"continue a stream of {state.grid}")
        state.direction, state.grid = direction, grid

    def _encode(self, x: torch.Tensor, state: VAEStreamState, logvar: bool = False):
        """Posterior mean (and log-variance) of the next chunk, each (B, d, T', h, w)."""
        self._check_pixels(x, state)
        sf = self.cfg.space_factor
        self._begin(state, "encode", (x.shape[0], x.shape[3] // sf, x.shape[4] // sf))
        means, logvars, t = [], [], 0
        while t < x.shape[2]:
            n = 1 if state.first else self.cfg.time_factor                   # pixel frames of this latent frame
            h = self.encoder(x[:, :, t:t + n], state)                         # (B, 1, h, w, D)
            state.first, state.frames, t = False, state.frames + n, t + n
            means.append(self.bottleneck.measure(h).permute(0, 4, 1, 2, 3))   # (B, d, 1, h, w)
            if logvar:
                logvars.append(self.logvar(h).clamp(-30.0, 20.0).permute(0, 4, 1, 2, 3))
        return torch.cat(means, dim=2), (torch.cat(logvars, dim=2) if logvar else None)

    def _decode(self, z: torch.Tensor, state: VAEStreamState, difference: bool = False) -> torch.Tensor:
        """Pixels (B, C, T, H, W) of the next latent frames z: (B, d, n, h, w); with `difference`
        (B even) D(z[:B/2]) - D(z[B/2:]), (B/2, C, T, H, W)."""
        cfg = self.cfg
        if z.ndim != 5 or z.shape[1] != cfg.latent_channels or z.shape[2] == 0:
            raise ValueError(f"expected latents (B, {cfg.latent_channels}, T', h, w) with T' >= 1, "
                             f"got {tuple(z.shape)}")
        B, _, n, h, w = z.shape
        if difference and B % 2:
            raise ValueError(f"a difference of two streams needs an even batch, got {B}")
        self._begin(state, "decode", (B, h, w))
        T = n * cfg.time_factor - (cfg.time_factor - 1 if state.first else 0)
        x = z.new_empty(B // 2 if difference else B, cfg.in_channels, T, h * cfg.space_factor, w * cfg.space_factor)
        t = 0
        for j in range(n):
            nt = 1 if state.first else cfg.time_factor                        # pixel frames of latent j
            zj = z[:, :, j:j + 1].permute(0, 2, 3, 4, 1).contiguous()        # (B, 1, h, w, d)
            self.decoder(self.bottleneck.reconstruct(zj, state), state, out=x[:, :, t:t + nt],
                         difference=difference)
            state.first, state.frames, t = False, state.frames + 1, t + nt
        return x

    # ---------------------------------------------------------------- public API

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of a whole clip.

        Args:
            x: (B, C, T, H, W) pixels in [-1, 1]; T = 1 + 4k, H and W multiples of 8 (with the
               published factors; in general `cfg.time_factor`, `cfg.space_factor`).
        Returns:
            z: (B, d, T', h, w), T' = 1 + k, h = H / 8, w = W / 8.
        """
        return self._encode(x, VAEStreamState())[0]

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (clamped to [-30, 20]) of a whole clip, each (B, d, T', h, w)."""
        return self._encode(x, VAEStreamState(), logvar=True)

    def encode_stream(self, x: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        """The posterior mean of the next chunk of a clip; updates `state` in place.

        Args:
            x: (B, C, T, H, W) in [-1, 1]: 1 + 4k frames for the first chunk, 4k after.
            state: this stream's `VAEStreamState` (a fresh one to start a clip).
        Returns:
            z: (B, d, T', h, w), T' = 1 + k first, then k; concatenated over chunks it equals
            `encode` of the whole clip bit for bit.
        """
        return self._encode(x, state)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels (B, C, T, H, W), T = 1 + 4 (T' - 1), of a whole clip's latents z: (B, d, T', h, w).
        Not clamped: [-1, 1] is the trained range."""
        return self._decode(z, VAEStreamState())

    def decode_stream(self, z: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        """Pixels of the next block of latent frames; updates `state` in place.

        Args:
            z: (B, d, n, h, w), any n >= 1.
            state: this stream's `VAEStreamState` (a fresh one to start a clip).
        Returns:
            (B, C, T, H, W): T = 1 + 4 (n - 1) for the first block, 4 n after; concatenated
            over blocks it equals `decode` of the whole latent bit for bit.
        """
        return self._decode(z, state)

    def decode_difference_stream(self, z_a: torch.Tensor, z_b: torch.Tensor, state: VAEStreamState) -> torch.Tensor:
        """D(z_a) - D(z_b) of the next block of two streams decoded as one batch; updates `state`.

        z_a, z_b: (B, d, n, h, w). The state is that of `decode_stream(torch.cat([z_a, z_b]), state)`,
        and the result equals its two halves' difference to rounding: the pixel head, which is
        linear, maps the difference of the features once. Returns (B, C, T, H, W).
        """
        return self._decode(torch.cat([z_a, z_b]), state, difference=True)

    # ---------------------------------------------------------------- training

    def forward(self, x: torch.Tensor, sample: bool = True,
                generator: torch.Generator | None = None):
        """Reconstruct a whole clip through the posterior.

        Returns (x_rec, mean, logvar): x_rec (B, C, T, H, W); mean and logvar (B, d, T', h, w).
        With `sample`, z = mean + exp(logvar / 2) * eps; otherwise z = mean.
        """
        mean, logvar = self.encode_dist(x)
        z = mean
        if sample:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar
