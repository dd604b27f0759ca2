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

from instantvir_cli.classical import classical_restorer
from instantvir_cli.decoding import DecodeSpec
from instantvir_cli.estimate import InitialEstimate
from instantvir_cli.learned import InstantViRRestorer
from instantvir_cli.metrics import QualityMeter, to_levels
from instantvir_cli.models.flow import add_noise, timestep, v_target
from instantvir_cli.ops import Operator, build_operator
from instantvir_cli.restorer import restore_tensor

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


@torch.no_grad()
def restore_clip(op: Operator, vae, student, y: Tensor, spec: DecodeSpec, context: Tensor | None = None) -> Tensor:
    """The student's restoration of y, streamed through `vir restore`'s restorer (with a text
    student's context (1, Lc, D))."""
    return restore_tensor(InstantViRRestorer(op, vae, student, spec, context=context), y)


class StudentValidator:
    """Scores one task's student on every validation clip; the baselines are computed once."""

    def __init__(self, task: str, options: dict, clips: dict[str, Tensor], spec: DecodeSpec, quantize: bool = False):
        self.task, self.options, self.spec = task, options, spec
        self.cases = {name: val_operator(task, options, x, quantize) + (x,) for name, x in clips.items()}
        self._baselines: dict[str, float] | None = None

    def baselines(self) -> dict[str, float]:
        if self._baselines is None:
            out: dict[str, list[float]] = {}
            for op, y, x in self.cases.values():
                for k, v in {**quality(x, restore_tensor(classical_restorer(op), y), "classical_"),
                             **quality(x, InitialEstimate(self.spec.init)(op, y), "init_")}.items():
                    out.setdefault(k, []).append(v)
            self._baselines = {k: sum(v) / len(v) for k, v in out.items()}
        return self._baselines

    @torch.no_grad()
    def __call__(self, vae, student, context: Tensor | None = None) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for op, y, x in self.cases.values():
            scores = quality(x, restore_clip(op, vae, student, y, self.spec, context), "")
            if self.spec.consistency:
                scores.update(quality(x, restore_clip(op, vae, student, y, self.spec.replace(consistency=0), context),
                                      "raw_"))
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
