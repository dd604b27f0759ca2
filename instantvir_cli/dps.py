"""Diffusion posterior sampling (DPS, Chung et al. 2023) over a DiT, the iterative baseline for comparison.

The iterative baseline the one-step student replaces: start from noise, and at each of `steps`
flow-matching Euler steps predict x0 with the teacher, decode it, and step against the gradient
of the measurement residual ||y - A(D(x0_hat))|| through the teacher and the decoder:

    z_{i+1} = z_i + (s_{i+1} - s_i) v(z_i, t_i) - zeta * grad_{z_i} ||y - A(D(z_i - s_i v))|| / ||...||

The clip is processed whole (the teacher is bidirectional), so memory grows with its length:
use short clips. Pure function; the caller times it.
"""

from __future__ import annotations

from typing import Callable

import torch

from instantvir_cli.models.dit import DiT
from instantvir_cli.models.flow import shift_sigma
from instantvir_cli.models.vae import LeanVAE
from instantvir_cli.ops import Operator


def dps_restore(
    op: Operator,
    y: torch.Tensor,
    vae: LeanVAE,
    teacher: DiT,
    steps: int = 50,
    shift: float = 8.0,
    zeta: float = 1.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Restore a whole clip by DPS.

    Args:
        op: the operator; y: (B, C, T, h, w) measurement, T = 1 + 4k (the VAE's clip length).
        vae, teacher: frozen models (latent channels must match).
        steps: Euler steps from s = 1 to 0 on the shifted schedule.
    Returns:
        x: (B, C, T, H, W) in [-1, 1].
    """
    x_init = op.init(y)
    with torch.no_grad():
        shape = vae.encode(x_init).shape                                  # (B, d, T', h, w)
    noise = torch.randn(shape, generator=generator or torch.Generator().manual_seed(0))
    z = noise.to(y.device, y.dtype)
    s = shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).tolist()
    for i in range(steps):
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            v = teacher(z, 1000.0 * s[i])
            x0 = z - s[i] * v
            residual = (op.A(vae.decode(x0)) - y).flatten(1).norm(dim=1).sum()
            (grad,) = torch.autograd.grad(residual, z)
        with torch.no_grad():
            z = z + (s[i + 1] - s[i]) * v - zeta * grad / residual.clamp_min(1e-8)
        if on_step:
            on_step(i + 1, steps)
    with torch.no_grad():
        return vae.decode(z.detach()).clamp(-1, 1)
