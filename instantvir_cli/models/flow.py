"""Rectified-flow (flow matching) schedule of Wan2.1, as pure functions.

    x_t = (1 - s) x0 + s eps          s in [0, 1] ("sigma"), t = 1000 s
    v   = eps - x0                    the network's target
    x0  = x_t - s v,  eps = x_t + (1 - s) v
    shift:  s' = k s / (1 + (k - 1) s)   (k = 8 here, as in CausVid / InstantViR; Wan's
                                          generate.py uses 5, its README 8-12 for 1.3B)

`s` may be a number, (B,) (one per sample) or (B, T') (one per latent frame); it broadcasts
against latents (B, C, T', h, w). The sampler needs only `net(x, t) -> v` (EDM's split of
network, schedule and sampler).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

SHIFT = 8.0                                            # timestep shift k
T_SCALE = 1000.0                                       # t = 1000 s
S_MIN, S_MAX = 0.02, 0.98                              # training clamp of the shifted s


def _bcast(s: Tensor | float, x: Tensor) -> Tensor:
    """s: number, (B,) or (B, T') -> broadcastable to x (B, C, T', h, w)."""
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if s.dim() == 1:
        return s.view(-1, 1, 1, 1, 1)
    if s.dim() == 2:
        return s.view(s.shape[0], 1, s.shape[1], 1, 1)
    return s


def shift_sigma(s: Tensor | float, shift: float = SHIFT) -> Tensor | float:
    """Timestep shift s' = k s / (1 + (k - 1) s); k = 1 is the identity."""
    return shift * s / (1 + (shift - 1) * s)


def timestep(s: Tensor | float) -> Tensor | float:
    """The network's timestep t = 1000 s."""
    return T_SCALE * s


def add_noise(x0: Tensor, eps: Tensor, s: Tensor | float) -> Tensor:
    """x_t = (1 - s) x0 + s eps."""
    s = _bcast(s, x0)
    return (1 - s) * x0 + s * eps


def v_target(x0: Tensor, eps: Tensor) -> Tensor:
    """The flow-matching target v = eps - x0."""
    return eps - x0


def x0_from_v(x_t: Tensor, v: Tensor, s: Tensor | float) -> Tensor:
    """Clean estimate x0 = x_t - s v."""
    return x_t - _bcast(s, x_t) * v


def eps_from_v(x_t: Tensor, v: Tensor, s: Tensor | float) -> Tensor:
    """Noise estimate eps = x_t + (1 - s) v."""
    return x_t + (1 - _bcast(s, x_t)) * v


def sample_sigma(
    shape: int | tuple[int, ...],
    generator: torch.Generator | None = None,
    shift: float = SHIFT,
    lo: float = S_MIN,
    hi: float = S_MAX,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training flow times: u ~ U[0, 1), shifted, clamped to [lo, hi] (CausVid / InstantViR's DMD).

    `shape` (B,) for one s per sample, (B, T') for one per frame. Drawn on the CPU
    generator and moved, so a seed gives the same values on any device.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return shift_sigma(u, shift).clamp(lo, hi).float().to(device)


def sigma_schedule(steps: int, shift: float = SHIFT) -> Tensor:
    """steps + 1 flow times from 1 down to 0, uniform in s before the shift; (steps + 1,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@torch.no_grad()
def euler_sample(
    net: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,
    steps: int = 50,
    shift: float = SHIFT,
    s_start: float = 1.0,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Euler ODE solve of dx/ds = v from s_start to 0.

    Args:
        net: `net(x, t) -> v` with t (B,) in [0, 1000] (bind text/guidance with a closure).
        noise: (B, C, T', h, w) the start point: pure noise for s_start = 1, or a noised
            latent x_{s_start}.
        steps: number of network evaluations.
        shift: timestep shift k of the schedule.
        s_start: flow time of `noise` (the schedule is cut to [s_start, 0]).
        callback: called as callback(i, x) after each step.
    Returns:
        x0 estimate, (B, C, T', h, w).
    """
    sig = sigma_schedule(steps, shift) * s_start
    x = noise
    B = x.shape[0]
    for i in range(steps):
        s, s_next = float(sig[i]), float(sig[i + 1])
        v = net(x, torch.full((B,), timestep(s), device=x.device, dtype=x.dtype))
        x = x + (s_next - s) * v
        if callback is not None:
            callback(i, x)
    return x


__all__ = [
    "SHIFT",
    "S_MAX",
    "S_MIN",
    "T_SCALE",
    "add_noise",
    "eps_from_v",
    "euler_sample",
    "sample_sigma",
    "shift_sigma",
    "sigma_schedule",
    "timestep",
    "v_target",
    "x0_from_v",
]
