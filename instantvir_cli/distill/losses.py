"""The distillation losses, as callable classes (EDM's split of network, loss and loop).

Every loss returns PER-SAMPLE values, shape (B,); the loop takes their mean. Every random draw
(flow times, Gaussian noise) comes from per-sample generators seeded by the sample's `seed`
(see data.py), so a sample's loss does not depend on which batch or process it landed in.

    VAELoss          L1 + Haar low/high-band L1 + KL                        (stage vae)
    FlowMatching     ||net(z_s, 1000 s) - (eps - z0)||^2, shifted s         (teacher, critic)
    Measurement      ||A(D(z_hat)) - y||^2 in pixels (or the latent shortcut)  (student)
    DMD              0.5 ||z_hat - sg(z_hat - g)||^2, g = (x0_fake - x0_real) / mean|z_hat - x0_real|

References: InstantViR (arXiv 2511.14208) and its code's DMD (CausVid / DMD2's form);
LeanVAE's reconstruction losses (arXiv 2503.14325).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from instantvir_cli.models.flow import add_noise, sample_sigma, timestep, v_target, x0_from_v
from instantvir_cli.models.vae import kl_divergence
from instantvir_cli.models.wavelet import haar_dwt
from instantvir_cli.ops import Operator, build_operator

# distinct random streams of one sample
STREAM_FM, STREAM_DMD, STREAM_CRITIC, STREAM_VAE, STREAM_MEASURE, STREAM_MASK = range(1, 7)

Net = Callable[[Tensor, Tensor], Tensor]   # net(z_t (B, C, T', h, w), t (B,)) -> v


def generators(seeds: Tensor | Sequence[int], stream: int) -> list[torch.Generator]:
    """One CPU generator per sample for random stream `stream`."""
    return [torch.Generator().manual_seed((int(s) * 7919 + stream * 104729) % (2**63 - 1)) for s in seeds]


def randn_like(x: Tensor, gens: list[torch.Generator]) -> Tensor:
    """Standard normal noise shaped like x (B, ...), sample b drawn from gens[b] (on the CPU)."""
    return torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device, x.dtype)


def sigmas(gens: list[torch.Generator], shift: float, lo: float, hi: float, device) -> Tensor:
    """One shifted, clamped flow time per sample: (B,)."""
    return torch.cat([sample_sigma(1, g, shift, lo, hi) for g in gens]).to(device)


def per_sample_mean(x: Tensor) -> Tensor:
    return x.flatten(1).mean(1)


#################################################################################
#                                  Stage 1: VAE                                 #
#################################################################################


@dataclass
class VAELoss:
    """LeanVAE's reconstruction objective without LPIPS and GAN: weighted pixel L1, L1 on the
    per-frame Haar low band and high bands, and the KL of the posterior to N(0, 1)."""

    l1: float = 1.0
    wavelet_low: float = 0.05
    wavelet_high: float = 0.1
    kl: float = 1e-6

    def __call__(self, x: Tensor, x_rec: Tensor, mean: Tensor, logvar: Tensor) -> dict[str, Tensor]:
        """x, x_rec (B, C, T, H, W); mean, logvar (B, d, T', h, w) -> per-sample terms and `loss`."""
        C = x.shape[1]
        bands = haar_dwt(x_rec, (3, 4)) - haar_dwt(x, (3, 4))                # (B, 4C, T, H/2, W/2)
        out = {
            "l1": per_sample_mean((x_rec - x).abs()),
            "wavelet_low": per_sample_mean(bands[:, :C].abs()),
            "wavelet_high": per_sample_mean(bands[:, C:].abs()),
            "kl": kl_divergence(mean, logvar),
        }
        out["loss"] = (self.l1 * out["l1"] + self.wavelet_low * out["wavelet_low"]
                       + self.wavelet_high * out["wavelet_high"] + self.kl * out["kl"])
        return out


#################################################################################
#                              Flow matching (teacher, critic)                  #
#################################################################################


@dataclass
class FlowMatching:
    """Rectified-flow loss: z_s = (1 - s) z0 + s eps, target v = eps - z0, s shifted and clamped."""

    shift: float = 3.0
    s_min: float = 0.0
    s_max: float = 1.0

    def __call__(self, net: Net, z0: Tensor, seeds: Tensor, stream: int = STREAM_FM) -> Tensor:
        """z0 (B, C, T', h, w) clean latents -> per-sample MSE (B,)."""
        gens = generators(seeds, stream)
        s = sigmas(gens, self.shift, self.s_min, self.s_max, z0.device)      # (B,)
        eps = randn_like(z0, gens)
        v = net(add_noise(z0, eps, s), timestep(s))
        return per_sample_mean((v.float() - v_target(z0, eps)) ** 2)


#################################################################################
#                                Stage 3: student                               #
#################################################################################


class BatchOperator:
    """A task's operator over a batch: one operator for all samples (deblur, sr4x), or one per
    sample (inpaint: a fresh random keep-mask each, from the sample's seed)."""

    def __init__(self, ops: list[Operator], shared: bool):
        self.ops, self.shared = ops, shared

    @classmethod
    def build(cls, task: str, options: dict, height: int, width: int, seeds: Tensor) -> BatchOperator:
        if task != "inpaint":
            return cls([build_operator(task, height, width, **options)], shared=True)
        mask_seeds = [int(g.initial_seed() % (2**31)) for g in generators(seeds, STREAM_MASK)]
        return cls([build_operator(task, height, width, **options, seed=s) for s in mask_seeds], shared=False)

    @property
    def op(self) -> Operator:
        """The first sample's operator (the export's record of the training operator)."""
        return self.ops[0]

    def map(self, f: Callable[[Operator, Tensor], Tensor], x: Tensor) -> Tensor:
        """f(op, x) over the batch: once with the shared operator, else per sample."""
        if self.shared:
            return f(self.ops[0], x)
        return torch.cat([f(op, x[i:i + 1]) for i, op in enumerate(self.ops)])

    def A(self, x: Tensor) -> Tensor:
        return self.map(lambda op, xi: op.A(xi), x)

    def init(self, y: Tensor) -> Tensor:
        return self.map(lambda op, yi: op.init(yi), y)

    def measure(self, x: Tensor, seeds: Tensor) -> Tensor:
        """y = A(x) + sigma_y n, the noise of sample b from its own generator."""
        if self.shared and self.ops[0].sigma_y == 0:
            return self.ops[0].A(x)
        gens = generators(seeds, STREAM_MEASURE)
        ops = [self.ops[0]] * x.shape[0] if self.shared else self.ops
        return torch.cat([op.measure(x[i:i + 1], gens[i]) for i, op in enumerate(ops)])

    def missing(self, like: Tensor) -> Tensor | None:
        """Inpainting: 1 where pixels are missing, nearest-downsampled to the latent grid of
        `like` (B, C, T', h, w), as (B, 1, 1, h, w); None for the other tasks."""
        if self.shared:
            return None
        h, w = like.shape[-2:]
        masks = []
        for op in self.ops:
            m = op.mask if op.mask.dim() == 2 else op.mask[0]                    # (H, W) keep-mask
            H, W = m.shape
            rows = (torch.arange(h) * H) // h + H // (2 * h)
            cols = (torch.arange(w) * W) // w + W // (2 * w)
            masks.append((~m[rows][:, cols]).to(like.dtype))
        return torch.stack(masks)[:, None, None].to(like.device)


@dataclass
class Measurement:
    """Data fidelity of the restored latent.

    pixel (the paper's form): ||A(D(z_hat)) - y||^2, differentiated through the decoder D.
    latent (the public code's shortcut): ||F(z_hat) - E(init(y))||^2 with
        F(z) = z + sg(E(init(A(D(z)))) - z), i.e. the operator's gradient taken as identity.
    """

    space: str = "pixel"

    def __call__(self, z_hat: Tensor, y: Tensor, z_in: Tensor, op: BatchOperator, vae,
                 x_hat: Tensor | None = None) -> Tensor:
        """Per-sample loss (B,); `x_hat` = D(z_hat) when the caller has it already."""
        if self.space == "pixel":
            return per_sample_mean((op.A(vae.decode(z_hat) if x_hat is None else x_hat) - y) ** 2)
        with torch.no_grad():
            f = vae.encode(op.init(op.A(vae.decode(z_hat))))
        return per_sample_mean((z_hat + (f - z_hat).detach() - z_in) ** 2)


@dataclass
class DMD:
    """Distribution-matching distillation (DMD / DMD2, as InstantViR's and CausVid's code).

    Noise z_hat to a shifted, clamped flow time s; x0_real from the frozen teacher, x0_fake from
    the critic (both without gradients); g = (x0_fake - x0_real) / mean|z_hat - x0_real| per
    sample; loss 0.5 ||z_hat - sg(z_hat - g)||^2, whose gradient w.r.t. z_hat is g / numel.
    `weight` (B, 1, 1|T', h, w), e.g. inpainting's missing positions, restricts g.

    `real` and `fake` are nets v(z_t, t): a text-conditioned teacher comes in as `guided(...)`.
    `convert` = (to_teacher, from_teacher) evaluates the real score in another latent space on the
    NOISY latent (the public release's conversion): x0_real = from_teacher(x0 of the teacher at
    to_teacher(z_t)); the fake score and g stay in z_hat's space.
    """

    shift: float = 8.0
    s_min: float = 0.02
    s_max: float = 0.98

    def __call__(self, z_hat: Tensor, real: Net, fake: Net, seeds: Tensor,
                 weight: Tensor | None = None,
                 convert: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None = None,
                 ) -> tuple[Tensor, dict[str, float]]:
        gens = generators(seeds, STREAM_DMD)
        s = sigmas(gens, self.shift, self.s_min, self.s_max, z_hat.device)   # (B,)
        with torch.no_grad():
            z0 = z_hat.detach()
            z_t = add_noise(z0, randn_like(z0, gens), s)
            t = timestep(s)
            if convert is None:
                x0_real = x0_from_v(z_t, real(z_t, t).float(), s)
            else:
                zT_t = convert[0](z_t)                                       # the noisy latent, teacher space
                x0_real = convert[1](x0_from_v(zT_t, real(zT_t, t).float(), s))
            x0_fake = x0_from_v(z_t, fake(z_t, t).float(), s)
            scale = (z0 - x0_real).abs().flatten(1).mean(1).clamp_min(1e-8).view(-1, 1, 1, 1, 1)
            g = (x0_fake - x0_real) / scale
            if weight is not None:
                g = g * weight
            target = z0 - g
        loss = 0.5 * per_sample_mean((z_hat - target) ** 2)
        return loss, {"dmd_grad_norm": float(g.flatten(1).norm(dim=1).mean()),
                      "dmd_scale": float(scale.mean())}


def guided(net, context: Tensor, negative: Tensor, g: float) -> Net:
    """The guided velocity of a text DiT, the DMD real score: v_u + g (v_c - v_u) (classifier-free
    guidance at scale g, `DiT.forward_with_cfg`), v_c given `context` (B, Lc, text_dim), v_u the
    negative prompt's (1, Lc, text_dim). The public release's v_c + s (v_c - v_u) is g = s + 1."""
    return lambda z, t: net.forward_with_cfg(z, t, context, negative, g)


def conditioned(net, context: Tensor | None) -> Net:
    """net(z, t) with a fixed text context (or none)."""
    return (lambda z, t: net(z, t)) if context is None else (lambda z, t: net(z, t, context))


__all__ = ["DMD", "BatchOperator", "conditioned", "guided", "FlowMatching", "Measurement", "VAELoss", "generators", "per_sample_mean",
           "randn_like", "sigmas"]
