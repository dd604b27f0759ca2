"""Validation on the clips set aside by `data.val_clips`, through the inference path.

The student is scored exactly as `vir restore` runs it: `learned.InstantViRRestorer` (init ->
streaming encode -> one step per latent block with a KV cache -> streaming decode -> data
consistency), the clip pushed in blocks of frames and then flushed. Next to it, on the same
measurement: the classical restorer of the task and the student's initial estimate. Metrics
are `metrics.QualityMeter`'s PSNR / SSIM / flicker.

With data consistency on (the export's default), the network's own output is scored too
(`raw_*`: the same path with consistency off).
"""

from __future__ import annotations

import torch
from torch import Tensor

from instantvir_cli.estimate import InitialEstimate
from instantvir_cli.metrics import QualityMeter, to_levels
from instantvir_cli.models.flow import add_noise, timestep, v_target
from instantvir_cli.ops import Operator, build_operator

PUSH_FRAMES = 4          # frames per push when streaming a validation clip
CONSISTENCY_STEPS = 1  # as `vir restore` does by default
VAL_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def quality(ref: Tensor, test: Tensor, prefix: str) -> dict[str, float]:
    meter = QualityMeter(ssim=True)
    meter.update(ref, test.clamp(-1, 1))
    q = meter.result()
    return {f"{prefix}psnr": q.psnr, f"{prefix}ssim": q.ssim, f"{prefix}flicker": q.flicker}


def quantize_8bit(y: Tensor) -> Tensor:
    """y in [-1, 1] rounded to the 256 levels of an 8-bit video file (what `vir degrade` writes)."""
    return torch.round(to_levels(y)) / 127.5 - 1


def val_operator(task: str, options: dict, x: Tensor, quantize: bool = False) -> tuple[Operator, Tensor]:
    """The task's operator for a validation clip (fixed mask seed 0) and its measurement."""
    H, W = x.shape[-2:]
    op = build_operator(task, H, W, **options, **({"seed": 0} if task == "inpaint" else {}))
    y = op.measure(x, torch.Generator().manual_seed(0))
    return op, quantize_8bit(y) if quantize else y


def _stream(restorer, y: Tensor) -> Tensor:
    outs = [restorer.push(y[:, :, i:i + PUSH_FRAMES]) for i in range(0, y.shape[2], PUSH_FRAMES)]
    outs.append(restorer.flush())
    return torch.cat([o for o in outs if o.shape[2] > 0], dim=2)


@torch.no_grad()
def restore_clip(op: Operator, vae, student, y: Tensor, consistency: bool, init: str = "operator",
                 residual: bool = False, delta: bool = False, correction_ema: float = 0.0) -> Tensor:
    """The student's restoration of y, streamed through `vir restore`'s restorer."""
    from instantvir_cli.learned import InstantViRRestorer

    steps = CONSISTENCY_STEPS if consistency else 0
    return _stream(InstantViRRestorer(op, vae, student, consistency_steps=steps, init=init, residual=residual,
                                       delta=delta, correction_ema=correction_ema), y)


class StudentValidator:
    """Scores one task's student on every validation clip; the baselines are computed once."""

    def __init__(self, task: str, options: dict, clips: dict[str, Tensor], consistency: bool,
                 init: str = "operator", residual: bool = False, quantize: bool = False, delta: bool = False,
                 correction_ema: float = 0.0):
        self.task, self.options, self.consistency = task, options, consistency
        self.init, self.residual, self.delta, self.correction_ema = init, residual, delta, correction_ema
        self.cases = {name: val_operator(task, options, x, quantize) + (x,) for name, x in clips.items()}
        self._baselines: dict[str, float] | None = None

    def baselines(self) -> dict[str, float]:
        if self._baselines is None:
            from instantvir_cli.classical import classical_restorer

            out: dict[str, list[float]] = {}
            for op, y, x in self.cases.values():
                for k, v in {**quality(x, _stream(classical_restorer(op), y), "classical_"),
                             **quality(x, InitialEstimate(self.init)(op, y), "init_")}.items():
                    out.setdefault(k, []).append(v)
            self._baselines = {k: sum(v) / len(v) for k, v in out.items()}
        return self._baselines

    @torch.no_grad()
    def __call__(self, vae, student) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for op, y, x in self.cases.values():
            run = lambda dc: restore_clip(op, vae, student, y, dc, self.init, self.residual, self.delta,
                                           self.correction_ema)  # noqa: E731
            scores = quality(x, run(self.consistency), "")
            if self.consistency:
                scores.update(quality(x, run(False), "raw_"))
            for k, v in scores.items():
                out.setdefault(k, []).append(v)
        res = {k: sum(v) / len(v) for k, v in out.items()}
        res.update(self.baselines())
        return res


@torch.no_grad()
def validate_vae(vae, clips: dict[str, Tensor]) -> dict[str, float]:
    """Reconstruction quality E -> D of the validation clips (the student's ceiling)."""
    scores: dict[str, list[float]] = {}
    for x in clips.values():
        for k, v in quality(x, vae.decode(vae.encode(x)), "").items():
            scores.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in scores.items()}


@torch.no_grad()
def validate_flow(net, latents: list[Tensor]) -> dict[str, float]:
    """Flow-matching loss of a DiT at fixed flow times and fixed noise (lower is better)."""
    total = {s: 0.0 for s in VAL_SIGMAS}
    for z0 in latents:
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)).to(z0)
        for s in VAL_SIGMAS:
            v = net(add_noise(z0, eps, s), torch.full((z0.shape[0],), timestep(s), device=z0.device))
            total[s] += float(((v.float() - v_target(z0, eps)) ** 2).mean())
    out = {f"fm_s{s:.1f}": t / len(latents) for s, t in total.items()}
    out["fm"] = sum(out.values()) / len(VAL_SIGMAS)
    return out


__all__ = ["StudentValidator", "quantize_8bit", "restore_clip", "val_operator", "validate_flow", "validate_vae"]
