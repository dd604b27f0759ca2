"""Stage `ode`: the causal student's start by ODE regression (CausVid, Sec. 4.3; the public
release's first causal stage, before DMD).

    points = ode_points(net, eps, (1.0, 0.757, 0.522), steps=50, shift=8.0)   # (B, K + 1, C, T', h, w)
    ODEStage(ctx)     one step: pairs from the teacher -> a point per causal block -> x0 regression

Pairs: noise eps ~ N(0, I) drawn from each sample's seed, solved to x0 by the frozen teacher's
Euler sampler (`[ode] sample_steps` steps over the shifted schedule, classifier-free guided on
the clip's caption against the run's negative prompt, g = `[ode] guidance`); the states at the
flow times s_k = timesteps_k / 1000 are kept (the sampler's schedule with those points inserted).
Regression: each causal block of each sample draws one k; the student (`[student.causal]`, the
block-causal attention of the student stage) gets x_{s_k} in that block's frames at t = 1000 s_k
(per-frame timesteps) and predicts x0 in one step, x0_hat = x_t - s_k v; the loss is
||x0_hat - x0||^2, the mean over the latent. The stage writes `ode.safetensors` (a DiT file),
where the student stage starts unless `[student] weights` names another start.

Simplified against the release, on purpose: pairs are made on the fly each step as a function
of the sample's seed (resume stays exact; each sample costs 2 x sample_steps teacher passes a
step), where the release generates them once into an LMDB; the sampler is Euler, not Wan's
UniPC; with a teacher VAE (`[teacher] vae`) every point is converted to the student's latent
space as E_S(D_T(.)) without gradients (the release converts its ODE LMDB from Wan to LeanVAE
latents). The clips give their captions and seeds only; their pixels are not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from instantvir_cli.distill import export as X
from instantvir_cli.distill.losses import conditioned, generators, guided, per_sample_mean, randn_like
from instantvir_cli.distill.stages import Stage, check_text, frozen
from instantvir_cli.errors import ConfigError
from instantvir_cli.models.flow import sigma_schedule, timestep
from instantvir_cli.models.student import CausalStudent

STREAM_ODE_NOISE, STREAM_ODE_POINT = 7, 8      # per-sample random streams (losses.py has 1-6)


@torch.no_grad()
def ode_points(net: Callable[[Tensor, Tensor], Tensor], noise: Tensor, s_points: Sequence[float],
               steps: int, shift: float) -> Tensor:
    """The Euler solution of dx/ds = net(x, 1000 s) from `noise` at s = 1 to s = 0, kept at `s_points`.

    Args:
        net: velocity `net(x, t) -> v`, t (B,) (bind text and guidance with a closure).
        noise: (B, C, T', h, w) the state at s = 1.
        s_points: K flow times in (0, 1], descending, inserted into the schedule.
        steps: Euler steps of the schedule before the insertions (`flow.sigma_schedule`).
    Returns:
        (B, K + 1, C, T', h, w): the states at s_points, then x0.
    """
    grid = {float(s) for s in sigma_schedule(steps, shift).tolist()} | {float(s) for s in s_points}
    sched = sorted(grid, reverse=True)                                  # 1.0 ... 0.0
    wanted, kept, x = {float(s) for s in s_points}, {}, noise
    for s, s_next in zip(sched, sched[1:]):
        if s in wanted:
            kept[s] = x
        v = net(x, torch.full((x.shape[0],), timestep(s), device=x.device, dtype=x.dtype))
        x = x + (s_next - s) * v
    return torch.stack([kept[float(s)] for s in s_points] + [x], dim=1)


def block_points(points: Tensor, s_points: Sequence[float], block_frames: int, seeds) -> tuple[Tensor, Tensor]:
    """One trajectory point per causal block of each sample, drawn from its seed.

    Args:
        points: (B, K + 1, C, T', h, w) from `ode_points`.
    Returns:
        x_t (B, C, T', h, w) and s (B, T') its flow time per frame.
    """
    B, K1, C, T = points.shape[:4]
    blocks = -(-T // block_frames)
    k = torch.stack([torch.randint(K1 - 1, (blocks,), generator=g) for g in generators(seeds, STREAM_ODE_POINT)])
    k = k.repeat_interleave(block_frames, dim=1)[:, :T].to(points.device)           # (B, T')
    idx = k.view(B, 1, 1, T, 1, 1).expand(B, 1, C, T, *points.shape[4:])
    x_t = points.gather(1, idx).squeeze(1)                                         # (B, C, T', h, w)
    s = torch.tensor([float(v) for v in s_points], device=points.device)[k]        # (B, T')
    return x_t, s


class ODEStage(Stage):
    """The causal student regressed on the teacher's ODE pairs (see the module docstring)."""

    name = "ode"

    def __init__(self, ctx):
        c = ctx.cfg.ode
        super().__init__(ctx, c)
        self.c = c
        self.vae, _ = self.load_vae()
        self.tvae = self.load_teacher_vae()
        teacher, self.dit_preset = X.load_teacher(ctx.teacher_path())
        self.teacher = frozen(check_text(teacher, ctx.text, "teacher").to(self.device))
        for name, vae in (("the student's VAE", self.vae), ("teacher.vae", self.tvae)):
            if vae is not None and vae.cfg.latent_channels != self.teacher.config.in_channels:
                raise ConfigError(f"ode: the teacher takes {self.teacher.config.in_channels} latent channels, "
                                  f"{name} makes {vae.cfg.latent_channels}")
        self.student_config = ctx.cfg.student.causal.to_student_config()
        student = CausalStudent.from_teacher(self.teacher, self.student_config).train()
        self.student = self.add("student", student, c.lr, c.ema, shard=True)
        self.negative = ctx.text.negative() if ctx.text is not None else None       # (1, Lc, D)
        self.s_points = [t / 1000.0 for t in c.timesteps]

    @torch.no_grad()
    def pairs(self, mb: dict) -> dict:
        """x_t (B, C, T', h, w), its s (B, T'), the teacher's x0 and the captions' contexts."""
        d = self.ctx.cfg.data
        seeds = mb["seed"]
        space = self.tvae or self.vae
        shape = space.cfg.latent_shape(d.frames, *d.crop_size)
        eps = randn_like(torch.empty(len(seeds), *shape), generators(seeds, STREAM_ODE_NOISE)).to(self.device)
        context = self.caption_contexts(mb)
        net = (conditioned(self.teacher, None) if context is None
               else guided(self.teacher, context, self.negative, self.c.guidance))
        with self.ctx.autocast():
            points = ode_points(net, eps, self.s_points, self.c.sample_steps, self.c.shift).float()
            if self.tvae is not None:           # into the student's latent space, point by point
                B, K1 = points.shape[:2]
                points = self.vae.encode(self.tvae.decode(points.flatten(0, 1))).unflatten(0, (B, K1)).float()
        x_t, s = block_points(points, self.s_points, self.student_config.block_frames, seeds)
        return {"x_t": x_t, "s": s, "x0": points[:, -1], "context": context}

    def loss(self, p: dict) -> dict[str, Tensor]:
        v = self.student(p["x_t"], timestep(p["s"]), p["context"])                  # (B, C, T', h, w)
        x0_hat = p["x_t"] - p["s"][:, None, :, None, None] * v
        return {"loss": per_sample_mean((x0_hat.float() - p["x0"]) ** 2)}

    def train_step(self, step, micro):
        return self.optimize("student", [self.pairs(mb) for mb in micro], self.loss)

    def finish(self, steps):
        sd = self.averaged_state("student")
        if not self.ctx.env.main:
            return None
        return X.save_teacher(self.ctx.out / X.ODE_FILE, sd, self.teacher.config, self.dit_preset, self.vae.cfg,
                              self.ctx.provenance(self.name, steps))


__all__ = ["ODEStage", "block_points", "ode_points"]
