"""The three stages: what each builds, how one optimizer step goes, what it leaves behind.

    VAEStage        LeanVAE <- L1 + wavelet-band L1 + KL; ends by folding the latent scale
    TeacherStage    DiT (bidirectional) <- flow matching on latents of clean windows
    ODEStage        (optional, `distill/ode.py`) the causal student <- regression on teacher ODE pairs
    StudentStage    one per task: CausalStudent.from_teacher <- measurement + DMD (+ GT);
                    critic (a DiT initialized from the teacher) <- flow matching on sg(z_hat)

`trainer.run_stage` drives them, in the order `trainer.stages_for` gives: it owns the step
counter, resume, logging and validation cadence; a stage owns its models (`trained`),
`train_step(step, micro)` over the micro-batches of one optimizer step, `validate()` and
`finish()` (its output file).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from instantvir_cli.config import Optim, dit_model_config, vae_model_config
from instantvir_cli.decoding import decode_student
from instantvir_cli.distill import export as X
from instantvir_cli.distill.data import WindowDataset, sample_seed
from instantvir_cli.distill.dist import (
    EMA,
    enable_grad_checkpointing,
    full_state_dict,
    no_sync,
    wrap,
)
from instantvir_cli.distill.losses import (
    DMD,
    STREAM_MASK,
    STREAM_CRITIC,
    STREAM_VAE,
    BatchOperator,
    FlowMatching,
    Measurement,
    VAELoss,
    conditioned,
    generators,
    guided,
    per_sample_mean,
    randn_like,
)
from instantvir_cli.distill.weights import load_any_vae, resolve_path
from instantvir_cli.distill.validate import (
    StudentValidator,
    quantize_8bit,
    validate_flow,
    validate_vae,
)
from instantvir_cli.errors import ConfigError
from instantvir_cli.estimate import InitialEstimate
from instantvir_cli.models.checkpoint import make_header, save_checkpoint
from instantvir_cli.models.dit import DiT
from instantvir_cli.models.student import CausalStudent
from instantvir_cli.models.vae import LeanVAE

STUDENT_FILE = "student.safetensors"     # one task's student, in its stage folder


@dataclass
class Trained:
    """A module being trained: its (wrapped) module, optimizer, EMA and base learning rate."""

    module: nn.Module
    optim: torch.optim.Optimizer
    ema: EMA | None
    lr: float


def adamw(module: nn.Module, o: Optim, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                             betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def lr_factor(o: Optim, step: int) -> float:
    """Linear warm-up over `warmup` steps, then constant or cosine to 0 at `steps`."""
    f = min(1.0, (step + 1) / o.warmup) if o.warmup else 1.0
    if o.schedule == "cosine" and o.steps > o.warmup:
        f *= 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, step - o.warmup) / (o.steps - o.warmup))))
    return f


ENCODER_PARAMS = ("encoder", "bottleneck.phi", "logvar")  # what LeanVAE.encode uses (phi also feeds the decoder's ISTA steps)


def frozen(m: nn.Module) -> nn.Module:
    m.eval().requires_grad_(False)
    return m


def check_text(dit: DiT, text, where: str) -> DiT:
    """`dit`, if the run can give it what it takes: a text DiT needs [text] encoder of its width."""
    if dit.config.text_dim and text is None:
        raise ConfigError(f"{where}: a text-conditioned DiT (text_dim {dit.config.text_dim}) needs a text "
                          "encoder: set [text] encoder")
    if dit.config.text_dim and text.dim != dit.config.text_dim:
        raise ConfigError(f"{where}: the DiT takes text of width {dit.config.text_dim}, the text encoder "
                          f"makes {text.dim}")
    return dit


def seed_models(seed: int, name: str) -> None:
    torch.manual_seed(sample_seed(seed, "init:" + name, 0))


class Stage:
    """Base: optimizer steps with accumulation, clipping and EMA; model loading helpers."""

    name = ""
    validate_at_start = False

    def __init__(self, ctx, ocfg: Optim):
        self.ctx, self.o = ctx, ocfg
        self.trained: dict[str, Trained] = {}

    # --------------------------------------------------------------- interface
    def dataset(self) -> WindowDataset:
        s = self.ctx.sources
        return WindowDataset(s.train_videos, s.train_images, self.ctx.cfg.data, self.ctx.cfg.run.seed, self.name,
                             self.ctx.captions)

    def train_step(self, step: int, micro: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def validate(self) -> dict:
        return {}

    def finish(self, steps: int) -> Path | None:
        raise NotImplementedError

    # --------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        return self.ctx.env.device

    def add(self, key: str, module: nn.Module, lr: float, ema: float, shard: bool = False) -> nn.Module:
        """Register `module` for training: wrap it (DDP / FSDP2), give it AdamW and an EMA."""
        if self.ctx.cfg.run.grad_checkpointing and hasattr(module, "blocks"):
            enable_grad_checkpointing(module)
        wrapped = wrap(module, self.ctx.env, shard=shard and self.ctx.cfg.run.parallel == "fsdp")
        self.trained[key] = Trained(wrapped, adamw(wrapped, self.o, lr), EMA(wrapped, ema) if ema > 0 else None, lr)
        return wrapped

    def averaged_state(self, key: str) -> dict[str, Tensor]:
        """The weights to validate / export: the EMA's if there is one (a collective under FSDP)."""
        tr = self.trained[key]
        return tr.ema.full_state_dict(tr.module) if tr.ema else full_state_dict(tr.module)

    def optimize(self, key: str, micro: list, loss_fn, also: tuple[str, ...] = ()) -> dict[str, float]:
        """One optimizer step of `key` (and of the modules in `also`, on the same loss) over the
        micro-batches: mean loss, clip (per module), step, EMA. grad_norm is `key`'s."""
        trs, n = [self.trained[k] for k in (key, *also)], len(micro)
        tr = trs[0]
        for t in trs:
            t.optim.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for i, mb in enumerate(micro):
            with no_sync(tr.module, i < n - 1):
                with self.ctx.autocast():
                    terms = loss_fn(mb)
                (terms["loss"].mean() / n).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach().float().mean()) / n
        clip = self.ctx.cfg.run.grad_clip
        norms = []
        for t in trs:
            params = [p for p in t.module.parameters() if p.grad is not None]
            norms.append(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf")))
            t.optim.step()
            if t.ema:
                t.ema.update(t.module)
        norm = norms[0]
        sums["grad_norm"] = float(norm.full_tensor() if type(norm).__name__ == "DTensor" else norm)
        return sums

    def load_vae(self) -> tuple[LeanVAE, str]:
        vae, preset = X.load_vae(self.ctx.vae_path())
        return frozen(vae.to(self.device)), preset

    def load_teacher_vae(self):
        """The teacher's own VAE ([teacher] vae: a LeanVAE or Wan's), or None."""
        path = self.ctx.cfg.teacher.vae
        return frozen(load_any_vae(resolve_path(path, "teacher.vae"))[0].to(self.device)) if path else None

    def caption_contexts(self, mb: dict, dropout: float = 0.0, stream: int = STREAM_MASK):
        """(B, Lc, D) contexts of the micro-batch's captions ("" for a share `dropout` of the samples,
        drawn from each sample's seed), or None for a run without text."""
        text = self.ctx.text
        if text is None:
            return None
        caps = list(mb["caption"])
        if dropout > 0:
            draws = [float(torch.rand((), generator=g)) for g in generators(mb["seed"], stream + 16)]
            caps = ["" if u < dropout else c for u, c in zip(draws, caps)]
        return text.contexts(caps)


#################################################################################
#                                   Stage 1: VAE                                #
#################################################################################


class _VAEForward(nn.Module):
    """encode -> sample z = mean + sigma eps (eps given: per-sample noise) -> decode."""

    def __init__(self, vae: LeanVAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, eps: Tensor):
        mean, logvar = self.vae.encode_dist(x)
        return self.vae.decode(mean + torch.exp(0.5 * logvar) * eps), mean, logvar


class VAEStage(Stage):
    name = "vae"

    def __init__(self, ctx):
        c = ctx.cfg.vae
        super().__init__(ctx, c)
        self.preset = c.preset
        if c.init:
            self.vae, self.preset = X.load_vae(c.init)
        else:
            seed_models(ctx.cfg.run.seed, self.name)
            self.vae = LeanVAE(vae_model_config(c))
        self.vae.to(self.device).train()
        self.net = self.add("vae", _VAEForward(self.vae), c.lr, c.ema)
        self.loss = VAELoss(c.l1, c.wavelet_low, c.wavelet_high, c.kl)

    def train_step(self, step, micro):
        def loss_fn(mb):
            x = mb["x"].to(self.device)
            d, Tl, h, w = self.vae.cfg.latent_shape(*x.shape[2:])
            eps = randn_like(x.new_empty(x.shape[0], d, Tl, h, w), generators(mb["seed"], STREAM_VAE))
            return self.loss(x, *self.net(x, eps))
        return self.optimize("vae", micro, loss_fn)

    def final_vae(self) -> LeanVAE:
        sd = self.averaged_state("vae")
        vae = LeanVAE(self.vae.cfg)
        vae.load_state_dict({k[len("vae."):]: v for k, v in sd.items()})
        return vae.eval()

    def validate(self):
        return validate_vae(self.final_vae().to(self.device), self.ctx.val_clips) if self.ctx.env.main else {}

    @torch.no_grad()
    def latent_std(self, vae: LeanVAE, samples: int = 16) -> float:
        """Std of the latents of `samples` training windows (a stream of their own)."""
        ds = WindowDataset(self.ctx.sources.train_videos, self.ctx.sources.train_images, self.ctx.cfg.data,
                           self.ctx.cfg.run.seed, "latent-scale")
        zs = [vae.encode(ds[i]["x"][None].to(self.device)) for i in range(samples)]
        return float(torch.cat([z.flatten() for z in zs]).std())

    def finish(self, steps):
        vae = self.final_vae().to(self.device)
        scale = 1.0
        if self.ctx.cfg.vae.normalize:
            scale = self.latent_std(vae)
            X.fold_latent_scale(vae, scale)
        if not self.ctx.env.main:
            return None
        return X.save_vae(self.ctx.out / X.VAE_FILE, vae, self.preset, scale, self.ctx.provenance(self.name, steps))


#################################################################################
#                                 Stage 2: teacher                              #
#################################################################################


class TeacherStage(Stage):
    name = "teacher"

    def __init__(self, ctx):
        c = ctx.cfg.teacher
        super().__init__(ctx, c)
        vae, _ = self.load_vae()
        self.space = self.load_teacher_vae() or vae           # the teacher's latent space
        self.preset = c.preset
        if c.init:
            dit, self.preset = X.load_teacher(resolve_path(c.init, "teacher.init"))
        else:
            seed_models(ctx.cfg.run.seed, self.name)
            dit = DiT(dit_model_config(c, self.space.cfg.latent_channels))
        check_text(dit, ctx.text, "teacher")
        if dit.config.in_channels != self.space.cfg.latent_channels:
            raise ConfigError(f"teacher: the DiT takes {dit.config.in_channels} latent channels, its VAE "
                              f"makes {self.space.cfg.latent_channels}")
        self.config = dit.config
        self.net = self.add("teacher", dit.to(self.device).train(), c.lr, c.ema, shard=True)
        self.loss = FlowMatching(c.shift, 0.0, 1.0)
        self._val_latents: list[Tensor] | None = None

    def train_step(self, step, micro):
        def loss_fn(mb):
            with torch.no_grad():
                z0 = self.space.encode(mb["x"].to(self.device))
            net = conditioned(self.net, self.caption_contexts(mb, self.ctx.cfg.teacher.caption_dropout))
            return {"loss": self.loss(net, z0, mb["seed"])}
        return self.optimize("teacher", micro, loss_fn)

    def final_state(self) -> dict[str, Tensor]:
        return self.averaged_state("teacher")

    def validate(self):
        sd = self.final_state()
        if not self.ctx.env.main:
            return {}
        if self._val_latents is None:
            with torch.no_grad():
                self._val_latents = [self.space.encode(x.to(self.device)) for x in self.ctx.val_clips.values()]
        net = DiT(self.config).to(self.device)
        net.load_state_dict(sd)
        if self.ctx.text is not None:       # validated on the empty prompt
            net = _WithContext(net.eval(), self.ctx.text.empty())
        return validate_flow(net.eval(), self._val_latents)

    def finish(self, steps):
        sd = self.final_state()
        if not self.ctx.env.main:
            return None
        return X.save_teacher(self.ctx.out / X.TEACHER_FILE, sd, self.config, self.preset, self.space.cfg,
                              self.ctx.provenance(self.name, steps))


class _WithContext(nn.Module):
    """A text DiT called as net(z, t), with one context (1, Lc, D) broadcast over the batch."""

    def __init__(self, net: DiT, context: Tensor):
        super().__init__()
        self.net, self.context = net, context

    def forward(self, z: Tensor, t, *args, **kwargs) -> Tensor:
        return self.net(z, t, self.context.expand(z.shape[0], -1, -1), *args, **kwargs)


#################################################################################
#                                 Stage 3: students                             #
#################################################################################


class StudentStage(Stage):
    """One task's student and critic (see StudentStageConfig for the objective)."""

    validate_at_start = True

    def __init__(self, ctx, task: str):
        c = ctx.cfg.student
        super().__init__(ctx, c)
        self.task, self.c = task, c
        self.name = f"student_{task}"
        self.vae, self.vae_preset = self.load_vae()
        self.tvae = self.load_teacher_vae()
        teacher, self.dit_preset = X.load_teacher(self.ctx.teacher_path())
        self.teacher = frozen(check_text(teacher, ctx.text, "teacher").to(self.device))
        if self.teacher.config.in_channels != self.vae.cfg.latent_channels:
            raise ConfigError(f"student: the teacher takes {self.teacher.config.in_channels} latent channels, the "
                              f"student's VAE makes {self.vae.cfg.latent_channels}: initializing the student "
                              "from the teacher needs the same latent channels")
        self.student_config = c.causal.to_student_config()
        student = CausalStudent.from_teacher(self.initial("weights", "student"), self.student_config).train()
        if c.zero_head:    # the teacher's body, a silent head: training starts from z_hat = z_in
            nn.init.zeros_(student.final.linear.weight)
            nn.init.zeros_(student.final.linear.bias)
        self.student = self.add("student", student, c.lr, c.ema, shard=True)
        self.codec = self.vae                                   # the VAE this task encodes and decodes with
        if c.train_vae != "none":
            if ctx.env.world > 1:
                raise ConfigError("student.train_vae: fine-tuning the VAE runs in one process (no torchrun)")
            own = LeanVAE(self.vae.cfg).to(self.device)
            own.load_state_dict(self.vae.state_dict())
            own.train().requires_grad_(True)
            if c.train_vae == "decoder":
                for name, prm in own.named_parameters():
                    prm.requires_grad_(not name.startswith(ENCODER_PARAMS))
            self.codec = self.add("vae", own, c.vae_lr or c.lr, c.ema)
        self.prior = c.dmd_weight > 0          # without a prior there is no critic to train
        if self.prior:
            critic = DiT(self.teacher.config).to(self.device)
            critic.load_state_dict(self.initial("critic_weights", "critic").state_dict())
            self.critic = self.add("critic", critic.train(), c.critic_lr or c.lr, 0.0, shard=True)
        self.negative = ctx.text.negative() if ctx.text is not None else None      # (1, Lc, D)
        if self.tvae is not None and self.tvae.cfg.latent_channels != self.teacher.config.in_channels:
            raise ConfigError(f"teacher.vae: the teacher takes {self.teacher.config.in_channels} latent channels, "
                              f"its VAE makes {self.tvae.cfg.latent_channels}")
        self.options = dataclasses.asdict(getattr(c, task))
        self.measurement = Measurement(c.meas_space)
        self.dmd = DMD(c.shift, c.s_min, c.s_max)
        self.critic_loss = FlowMatching(c.shift, c.s_min, c.s_max)
        self.spec = c.decode_spec(task)
        self.estimate = InitialEstimate(self.spec.init)
        self.validator = (StudentValidator(task, self.options, ctx.val_clips, self.spec, task in c.quantize)
                          if ctx.env.main else None)
        self.operator_record: dict | None = None

    # ------------------------------------------------------------------ pieces
    def initial(self, key: str, what: str) -> DiT:
        """The starting weights of the student or critic: [student] weights / critic_weights, the
        student's also the ode stage's output (ode.safetensors), else the teacher."""
        path = getattr(self.c, key)
        ode = self.ctx.ode_path() if key == "weights" else None
        if not path and ode is None:
            return self.teacher
        dit, _ = X.load_teacher(ode if ode is not None else resolve_path(path, f"student.{key}"))
        if dit.config != self.teacher.config:
            raise ConfigError(f"student.{key}: the {what}'s architecture differs from the teacher's "
                              f"({dit.config} vs {self.teacher.config})")
        return dit.to(self.device)

    def restore(self, z_in: Tensor, context: Tensor | None = None) -> Tensor:
        """z_hat = z_in - s* v(z_in, t*, text) through the wrapped student (DDP hooks see the call)."""
        sc = self.student_config
        v = self.student(z_in, sc.t_star) if context is None else self.student(z_in, sc.t_star, context)
        return z_in - sc.s_star * v

    @property
    def noisy_conversion(self) -> bool:
        return self.tvae is not None and self.c.teacher_space == "noisy"

    def prior_space(self, z_hat: Tensor, x_hat: Tensor | None = None) -> Tensor:
        """z in the space the prior is evaluated in: E_T(D_S(z_hat)) with a teacher VAE (the paper's
        form, gradients through both VAEs), else z_hat (also with the release's noisy conversion)."""
        if self.tvae is None or self.noisy_conversion:
            return z_hat
        return self.tvae.encode(self.vae.decode(z_hat) if x_hat is None else x_hat)

    def scores(self, context: Tensor | None):
        """(real, fake, convert) nets of the DMD term for a micro-batch's text contexts."""
        real = (conditioned(self.teacher, None) if context is None
                else guided(self.teacher, context, self.negative, self.c.real_guidance))
        convert = None
        if self.noisy_conversion:      # z_t -> E_T(D_S(z_t)); x0_T -> E_S(D_T(x0_T)), without gradients
            convert = (lambda z: self.tvae.encode(self.vae.decode(z)), lambda z: self.vae.encode(self.tvae.decode(z)))
        return real, conditioned(self.critic, context), convert

    @torch.no_grad()
    def prepare(self, mb: dict) -> dict:
        x = mb["x"].to(self.device)
        op = BatchOperator.build(self.task, self.options, x.shape[-2], x.shape[-1], mb["seed"])
        if self.operator_record is None:
            self.operator_record = op.op.to_dict()
        y = op.measure(x, mb["seed"])
        if self.task in self.c.quantize:
            y = quantize_8bit(y)
        x0 = op.map(self.estimate, y)
        p = {"x": x, "y": y, "op": op, "seeds": mb["seed"], "x0": x0, "z_in": self.codec.encode(x0),
             "context": self.caption_contexts(mb)}
        if self.c.gt_weight > 0 and self.c.gt_space == "latent":
            p["z_gt"] = self.codec.encode(x)
        return p

    def decode(self, z_hat: Tensor, p: dict) -> Tensor:
        """x_hat by the task's decode spec (`decoding.decode_student`), as `vir restore` decodes it:
        the whole window at once, the change's EMA starting at the window's first frame."""
        def zero() -> Tensor:                  # D(0) of one sample, broadcast over the batch
            return self.codec.decode(torch.zeros_like(p["z_in"][:1]))

        return decode_student(self.spec, self.codec.decode, z_hat, p["z_in"], p["x0"], zero)[0]

    def student_loss(self, p: dict, w_dmd: float) -> dict[str, Tensor]:
        c = self.c
        if c.train_vae == "all":                   # the encoder trains too: encode with gradients
            p = {**p, "z_in": self.codec.encode(p["x0"])}
        z_hat = self.restore(p["z_in"], p["context"])
        p["z_hat"] = z_hat.detach()
        pixel = (c.meas_space == "pixel" or self.tvae is not None or (c.gt_weight > 0 and c.gt_space == "pixel")
                 or c.temporal_weight > 0)
        x_hat = self.decode(z_hat, p) if pixel else None
        terms = {"meas": self.measurement(z_hat, p["y"], p["z_in"], p["op"], self.codec, x_hat)}
        loss = c.meas_weight * terms["meas"]
        if w_dmd > 0:
            z_p = self.prior_space(z_hat, x_hat)
            weight = p["op"].missing(z_p) if c.prior_mask == "missing" else None
            real, fake, convert = self.scores(p["context"])
            terms["dmd"], _ = self.dmd(z_p, real, fake, p["seeds"], weight, convert)
            loss = loss + w_dmd * terms["dmd"]
        if c.gt_weight > 0:
            terms["gt"] = per_sample_mean((z_hat - p["z_gt"]) ** 2 if c.gt_space == "latent" else (x_hat - p["x"]) ** 2)
            loss = loss + c.gt_weight * terms["gt"]
        if c.temporal_weight > 0:
            e = x_hat - p["x"]                                       # (B, C, T, H, W)
            de2 = (e[:, :, 1:] - e[:, :, :-1]) ** 2                  # pair t: frames t, t + 1
            if c.temporal_boundary != 1.0:   # frames 4k and 4k + 1 come from different latent frames
                tf = self.codec.cfg.time_factor
                w = torch.ones(de2.shape[2], device=de2.device)
                w[::tf] = c.temporal_boundary
                de2 = de2 * (w / w.mean()).view(1, 1, -1, 1, 1)
            terms["temporal"] = per_sample_mean(de2)
            loss = loss + c.temporal_weight * terms["temporal"]
        terms["loss"] = loss
        return terms

    def critic_step_loss(self, p: dict) -> dict[str, Tensor]:
        with torch.no_grad():
            z_hat = p["z_hat"] if "z_hat" in p else self.restore(p["z_in"], p["context"])
            z_p = self.prior_space(z_hat)
        return {"loss": self.critic_loss(conditioned(self.critic, p["context"]), z_p, p["seeds"], STREAM_CRITIC)}

    # -------------------------------------------------------------- the step
    def train_step(self, step, micro):
        """Without a prior (dmd_weight = 0) there is no critic: the student steps every iteration."""
        c = self.c
        prepared = [self.prepare(mb) for mb in micro]
        out: dict[str, float] = {}
        if step % c.student_every == 0 or not self.prior:
            w = c.dmd_weight if step // c.student_every >= c.dmd_warmup else 0.0
            also = ("vae",) if "vae" in self.trained else ()
            out.update({f"student_{k}" if k in ("loss", "grad_norm") else k: v
                        for k, v in self.optimize("student", prepared, lambda p: self.student_loss(p, w), also).items()})
            out["dmd_on"] = float(w > 0)
        if self.prior:
            out.update({f"critic_{k}": v for k, v in self.optimize("critic", prepared, self.critic_step_loss).items()})
        return out

    def eval_student(self) -> CausalStudent | None:
        sd = self.averaged_state("student")
        if not self.ctx.env.main:
            return None
        s = CausalStudent(self.teacher.config, self.student_config).to(self.device)
        s.load_state_dict(sd)
        return s.eval()

    def eval_vae(self) -> LeanVAE:
        """The VAE this task restores with: the shared one, or its fine-tuned copy (averaged)."""
        if "vae" not in self.trained:
            return self.vae
        vae = LeanVAE(self.vae.cfg).to(self.device)
        vae.load_state_dict(self.averaged_state("vae"))
        return frozen(vae)

    def validate(self):
        s = self.eval_student()
        if s is None:
            return {}
        context = self.ctx.text.contexts([self.c.prompt]) if self.ctx.text is not None else None
        return self.validator(self.eval_vae(), s, context)

    def finish(self, steps):
        sd = self.averaged_state("student")
        if not self.ctx.env.main:
            return None
        if self.operator_record is None:   # no step ran (steps = 0): record the operator's spec
            H, W = self.ctx.cfg.data.crop_size
            self.operator_record = BatchOperator.build(self.task, self.options, H, W, torch.zeros(1)).op.to_dict()
        header = {"student": dataclasses.asdict(self.student_config), "operator": self.operator_record,
                  **self.spec.to_entry(), "dit": dataclasses.asdict(self.teacher.config),
                  "dit_preset": self.dit_preset, "provenance": self.ctx.provenance(self.name, steps)}
        modules = {"student": sd}
        if self.ctx.text is not None:       # the prompt vir restore uses without --prompt, and its context
            header["text"] = self.ctx.text_record(self.c.prompt)
            modules["text"] = {"prompt": self.ctx.text.contexts([self.c.prompt])[0].cpu()}
        if "vae" in self.trained:
            modules["vae"] = self.averaged_state("vae")
        path = save_checkpoint(self.ctx.out / self.name / STUDENT_FILE, modules, make_header(**header))
        self.ctx.export_students()
        return path


__all__ = ["Stage", "StudentStage", "TeacherStage", "Trained", "VAEStage", "lr_factor"]
