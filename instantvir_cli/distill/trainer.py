"""`vir distill`: run the stages of one config, with resumable checkpoints and logs.

    python -m instantvir_cli distill --config configs/tiny.toml --out runs/tiny --max-steps 5
    torchrun --nproc-per-node 2 -m instantvir_cli distill --config configs/tiny.toml --out runs/tiny2

The run folder:

    config.toml                     the effective config (also inside every checkpoint)
    log.jsonl                       one JSON object per line: train steps (losses, learning rates,
                                    grad norms, steps/s), validations, stage boundaries
    text.pt                         a text run's contexts of every prompt, encoded at start-up
                                    (captions.RunText: the encoder is freed before training)
    <stage>/state.pt                resumable state: models, critic, optimizers, EMA, step, data
                                    position and RNG state, upstream artifact ids, config
    vae.safetensors, teacher.safetensors, ode.safetensors, student_<task>/student.safetensors   stage outputs
    instantvir.safetensors          the export `vir restore --checkpoint` loads (see export.py)

Stages run in order: vae, teacher, ode (when named: the causal student's ODE-regression start),
then one student stage per task. With `run.max_minutes` (`--max-minutes`) each stage gets the
time still left divided in proportion to the planned steps of the stages still to run
(`stage_budget`), stops after the step that passes it, and ends as at its last step (validation,
state, its file, the export). `--resume` continues each stage from its last state (exactly, on
the CPU: data and noise are functions of the step), skips stages already finished, and restarts
a stage whose inputs (the VAE, teacher or ode files) changed since its state was written. The
core reports progress through `on_event(Event)` on
rank 0; the CLI renders it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from instantvir_cli.config import (
    DistillConfig,
    dit_model_config,
    load_config,
    to_dict,
    to_toml,
    vae_model_config,
    with_overrides,
)
from instantvir_cli.decoding import DecodeSpec
from instantvir_cli.distill import export as X
from instantvir_cli.distill.data import (
    Sources,
    StepSampler,
    find_sources,
    load_val_clip,
    make_loader,
)
from instantvir_cli.distill.captions import TEXT_FILE, RunText, caption_files, find_captions, run_prompts
from instantvir_cli.distill.plan import check_weight_files
from instantvir_cli.distill.weights import artifact_identity, check_weight_paths, config_value, resolve_path
from instantvir_cli.distill.dist import (
    DistEnv,
    full_state_dict,
    init_distributed,
    load_full_state_dict,
    load_optimizer_state,
    optimizer_state,
    shutdown,
)
from instantvir_cli.distill.ode import ODEStage
from instantvir_cli.distill.stages import STUDENT_FILE, StudentStage, TeacherStage, VAEStage, lr_factor
from instantvir_cli.atomic import TargetLock, atomic_write, remove_stale
from instantvir_cli.errors import ConfigError, OutputRefused
from instantvir_cli.models.checkpoint import load_checkpoint, read_header
from instantvir_cli.models.dit import DiTConfig
from instantvir_cli.models.presets import config_from_dict
from instantvir_cli.models.student import StudentConfig

STATE_FILE, CONFIG_FILE, LOG_FILE = "state.pt", "config.toml", "log.jsonl"
STATE_FORMAT = "vir-distill-state/1"


@dataclass
class Event:
    """Progress of a run, for the CLI (rank 0 only)."""

    kind: str                                   # info | stage | step | val | done | export
    stage: str = ""
    step: int = 0
    total: int = 0
    metrics: dict = field(default_factory=dict)
    message: str = ""
    rate: float | None = None                   # optimizer steps per second
    eta: float | None = None                    # seconds left in the stage


@dataclass
class RunResult:
    out: Path
    export: Path | None
    rates: dict[str, float]                     # steps per second per stage (this invocation)
    validation: dict[str, dict]                 # last validation per stage


class JsonlLog:
    """log.jsonl: each record one whole line, appended with one write; a write the disk refuses
    is cut back off (no half line) and is OutputRefused (exit 6)."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        line = (json.dumps({"time": round(time.time(), 3), **record}, default=float) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputRefused(f"can't write {self.path}: {e.strerror or e}") from None
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as e:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise OutputRefused(f"can't write {self.path}: {e.strerror or e}") from None
        finally:
            os.close(fd)


#################################################################################
#                                  Config checks                                #
#################################################################################


def effective_config(path: str | Path, out: str | Path | None = None, max_minutes: float | None = None) -> DistillConfig:
    """The config of `path` with the command-line flags applied, checked (`--dry-run` prints it)."""
    cfg = with_overrides(load_config(path), out=out, max_minutes=max_minutes)
    check_config(cfg)
    return cfg


def check_config(cfg: DistillConfig) -> None:
    """Checks across tables that need no data or weights (ConfigError)."""
    if cfg.vae.init and cfg.vae.model:
        raise ConfigError("vae.model: the architecture comes from vae.init; leave [vae.model] empty")
    if cfg.teacher.init and cfg.teacher.model:
        raise ConfigError("teacher.model: the architecture comes from teacher.init; leave [teacher.model] empty")
    vae = vae_model_config(cfg.vae)
    dit = dit_model_config(cfg.teacher, vae.latent_channels)
    d = cfg.data
    (ch, cw) = d.crop_size
    sides = (("data.crop_height" if d.crop_height else "data.crop", ch),
             ("data.crop_width" if d.crop_width else "data.crop", cw), ("data.val_size", d.val_size))
    for name, side in sides:
        if side % vae.space_factor or (side // vae.space_factor) % dit.patch[1]:
            raise ConfigError(f"{name}: {side} must be a multiple of the VAE's {vae.space_factor} times the "
                              f"DiT's patch {dit.patch[1]}")
    for name, T in (("data.frames", d.frames), ("data.val_frames", d.val_frames)):
        if (T - 1) % vae.time_factor:
            raise ConfigError(f"{name}: {T} frames must be 1 + k * {vae.time_factor} for this VAE")
    if "ode" in cfg.run.stages and cfg.student.weights:
        raise ConfigError("student.weights: the ode stage makes the student's start: leave student.weights "
                          "empty, or take ode out of run.stages")
    for key in ("vae", "teacher", "ode", "student"):
        o = getattr(cfg, key)
        if o.batch % o.accumulate:
            raise ConfigError(f"{key}.batch: {o.batch} is not divisible by {key}.accumulate = {o.accumulate}")
    if dit.text_dim and not cfg.text.encoder and not cfg.teacher.init:
        raise ConfigError(f"teacher.model.text_dim: a text-conditioned teacher ({dit.text_dim}) needs a text "
                          "encoder: set [text] encoder (and captions), or text_dim = 0")


#################################################################################
#                                   Run context                                 #
#################################################################################


@dataclass
class RunContext:
    cfg: DistillConfig
    out: Path
    env: DistEnv
    sources: Sources
    val_clips: dict[str, torch.Tensor]
    log: JsonlLog
    emit: Callable[[Event], None]
    steps_done: dict[str, int] = field(default_factory=dict)
    bf16: bool = False
    text: RunText | None = None                 # the text contexts of a text-conditioned teacher
    captions: dict[str, str] = field(default_factory=dict)

    def text_record(self, prompt: str) -> dict:
        """What an export records of its text student: the prompt and where its encoder was."""
        t = self.text
        return {"prompt": prompt, "negative_prompt": t.negative_prompt, "length": t.length,
                "dim": t.dim, **t.source}

    def autocast(self):
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _model_path(self, stage: str, file: str, init: str) -> Path:
        produced = self.out / file
        if stage in self.cfg.run.stages:
            return produced
        if init:
            return resolve_path(init, f"{stage}.init")
        if produced.is_file():
            return produced
        raise ConfigError(f"run.stages: the later stages need a {stage}: run the {stage} stage, set "
                          f"{stage}.init, or resume a run folder that has {file}")

    def vae_path(self) -> Path:
        return self._model_path("vae", X.VAE_FILE, self.cfg.vae.init)

    def teacher_path(self) -> Path:
        return self._model_path("teacher", X.TEACHER_FILE, self.cfg.teacher.init)

    def ode_path(self) -> Path | None:
        """The student's start made by the ode stage (this run's, or one the folder holds), or None."""
        f = self.out / X.ODE_FILE
        return f if not self.cfg.student.weights and ("ode" in self.cfg.run.stages or f.is_file()) else None

    def provenance(self, stage: str, steps: int) -> dict:
        self.steps_done[stage] = steps
        return X.provenance(to_dict(self.cfg), self.sources.names, self.steps_done)

    def export_students(self) -> Path | None:
        """Write instantvir.safetensors from every task's finished student (rank 0)."""
        students, dit_cfg, dit_preset, text = {}, None, "", None
        for task in self.cfg.student.tasks:
            path = self.out / f"student_{task}" / STUDENT_FILE
            if not path.is_file():
                continue
            ck = load_checkpoint(path)
            h = ck.header
            dit_cfg = config_from_dict(DiTConfig, h["dit"])
            students[task] = {"state": ck.state_dict("student"), "student": config_from_dict(StudentConfig, h["student"]),
                              "operator": h["operator"], "vae": ck.modules.get("vae"),
                              "decode": DecodeSpec.from_entry(h)}
            self.steps_done.setdefault(f"student_{task}", h["provenance"]["steps"].get(f"student_{task}", 0))
            dit_preset = h.get("dit_preset", "")
            if "text" in ck.modules:
                text = {"header": h["text"], "prompt": ck.state_dict("text")["prompt"]}
        if not students:
            return None
        vae_file = self.vae_path()
        vae_steps = (read_header(vae_file).get("provenance", {}).get("steps", {})
                     if vae_file.suffix == ".safetensors" else {})                # a published LeanVAE: none
        self.steps_done.setdefault("vae", vae_steps.get("vae", 0))    # trained in an earlier run: its steps
        vae, vae_preset = X.load_vae(vae_file)
        path = X.save_export(self.out / X.EXPORT_FILE, vae, vae_preset, dit_cfg, dit_preset, students,
                             X.provenance(to_dict(self.cfg), self.sources.names, self.steps_done), text)
        self.emit(Event("export", message=str(path), metrics={"tasks": sorted(students)}))
        return path


def _optim_cfg(cfg: DistillConfig, stage: str):
    return getattr(cfg, "student" if stage.startswith("student_") else stage)


def _artifact(ctx: RunContext, stage: str) -> Path:
    return {"vae": ctx.out / X.VAE_FILE, "teacher": ctx.out / X.TEACHER_FILE, "ode": ctx.out / X.ODE_FILE}.get(
        stage, ctx.out / stage / STUDENT_FILE)


def _upstream(ctx: RunContext, stage: str) -> dict:
    if stage == "vae":
        return {}
    ident = lambda key: artifact_identity(resolve_path(config_value(ctx.cfg, key), key)) if config_value(ctx.cfg, key) else ""
    up = {"vae": artifact_identity(ctx.vae_path()), "teacher_vae": ident("teacher.vae"), "text": ident("text.encoder")}
    if stage == "ode":
        up.update(teacher=artifact_identity(ctx.teacher_path()))
    if stage.startswith("student_"):
        up.update(teacher=artifact_identity(ctx.teacher_path()), weights=ident("student.weights"),
                  critic_weights=ident("student.critic_weights"))
        if ctx.ode_path() is not None:          # starts from the ode stage's file
            up["ode"] = artifact_identity(ctx.ode_path())
    return up


#################################################################################
#                                  The stage loop                               #
#################################################################################


def _save_state(ctx: RunContext, stage, name: str, step: int, upstream: dict) -> None:
    modules = {k: full_state_dict(tr.module) for k, tr in stage.trained.items()}
    optims = {k: optimizer_state(tr.module, tr.optim) for k, tr in stage.trained.items()}
    emas = {k: tr.ema.state(tr.module) for k, tr in stage.trained.items() if tr.ema}
    if ctx.env.main:
        o = _optim_cfg(ctx.cfg, name)
        state = {"format": STATE_FORMAT, "stage": name, "step": step, "config": to_dict(ctx.cfg),
                 "upstream": upstream, "modules": modules, "optim": optims, "ema": emas,
                 "data": {"next_step": step, "samples_seen": step * o.batch, "stream": name},
                 "rng": {"torch": torch.get_rng_state()}}
        path = ctx.out / name / STATE_FILE
        made = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:   # the run folder is locked by this run: no lock per file (atomic_write: temporary, fsync, rename)
            atomic_write(path, lambda tmp: torch.save(state, tmp), lock=False)
        except OutputRefused:
            if made:
                path.parent.rmdir()
            raise
    ctx.env.barrier()


def _load_state(ctx: RunContext, name: str) -> dict | None:
    path = ctx.out / name / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable state
        raise ConfigError(f"cannot resume: {path} is unreadable ({err})") from None
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(f"cannot resume: {path} is not a {STATE_FORMAT} file")
    return state


def _restore(stage, state: dict) -> None:
    for k, tr in stage.trained.items():
        load_full_state_dict(tr.module, state["modules"][k])
        load_optimizer_state(tr.module, tr.optim, state["optim"][k])
        if tr.ema:
            tr.ema.load(state["ema"][k])
    torch.set_rng_state(state["rng"]["torch"])


def _validate(ctx: RunContext, stage, name: str, step: int, results: dict) -> None:
    if not ctx.cfg.data.val_clips:
        return
    t0 = time.perf_counter()
    metrics = stage.validate()
    ctx.env.barrier()
    if ctx.env.main:
        metrics = {**metrics, "seconds": round(time.perf_counter() - t0, 2)}
        ctx.log.write({"kind": "val", "stage": name, "step": step, **metrics})
        ctx.emit(Event("val", name, step, metrics=metrics))
        results[name] = {"step": step, **metrics}


def planned_steps(cfg: DistillConfig, name: str, max_steps: int | None) -> int:
    o = _optim_cfg(cfg, name)
    return o.steps if max_steps is None else min(o.steps, max_steps)


def stage_budget(left_s: float, steps: list[int]) -> float:
    """Seconds the next of the stages still to run may take: the time left, shared in proportion
    to their planned steps (`steps[0]` the next stage's). A stage that ends early leaves its time
    to the later ones, since each share is taken from what is left when the stage starts."""
    total = sum(steps)
    return max(0.0, left_s) * (steps[0] / total if total else 1.0 / len(steps))


def run_stage(ctx: RunContext, name: str, factory, max_steps: int | None, resume: bool,
              rates: dict, results: dict, deadline: float | None = None) -> None:
    """Run one stage to its planned steps, or until `deadline` (time.monotonic()) has passed:
    then it stops after the step in progress, validates, checkpoints and writes its file as at
    its end; `--resume` continues it."""
    cfg, env = ctx.cfg, ctx.env
    o = _optim_cfg(cfg, name)
    target = planned_steps(cfg, name, max_steps)
    upstream = _upstream(ctx, name)
    state = _load_state(ctx, name) if resume else None
    if state is not None and state["upstream"] != upstream:
        ctx.emit(Event("info", name, message=f"{name}: its inputs changed since step {state['step']}; restarting it"))
        state = None
    art = _artifact(ctx, name)
    if state is not None and state["step"] >= target and art.is_file():
        if read_header(art).get("provenance", {}).get("steps", {}).get(name) == state["step"]:
            ctx.steps_done[name] = state["step"]
            ctx.emit(Event("info", name, state["step"], target, message=f"{name}: finished at step {state['step']}"))
            return
    stage = factory()
    start = 0
    if state is not None:
        _restore(stage, state)
        start = state["step"]
        ctx.log.write({"kind": "resume", "stage": name, "step": start})
        ctx.emit(Event("info", name, start, target, message=f"{name}: resuming at step {start}"))
    ctx.emit(Event("stage", name, start, target))
    ctx.log.write({"kind": "stage", "stage": name, "step": start, "total": target})
    rate, final, t_stage = None, max(target, start), time.perf_counter()
    cuda = env.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(env.device)
    if start < target:
        sampler = StepSampler(start, o.batch, env.world, env.rank, o.accumulate)
        loader = make_loader(stage.dataset(), sampler, cfg.data.workers)
        it = iter(loader)
        if start == 0 and stage.validate_at_start:
            _validate(ctx, stage, name, 0, results)
        acc: dict[str, list[float]] = {}
        busy, done_here, t_last = 0.0, 0, time.perf_counter()   # the rate counts steps only
        for step in range(start, target):
            for tr in stage.trained.values():
                for g in tr.optim.param_groups:
                    g["lr"] = tr.lr * lr_factor(o, step)
            micro = [next(it) for _ in range(o.accumulate)]
            for k, v in stage.train_step(step, micro).items():
                acc.setdefault(k, []).append(v)
            now = time.perf_counter()
            busy, done_here, t_last = busy + (now - t_last), done_here + 1, now
            done = step + 1
            over = deadline is not None and done < target and env.any(time.monotonic() >= deadline)
            end = done == target or over
            if done % cfg.run.log_every == 0 or end:
                # means since the last log line (the student's terms exist on its steps only)
                metrics = env.mean({k: sum(v) / len(v) for k, v in acc.items()})
                acc = {}
                rate = done_here / busy if busy > 0 else None
                lrs = {f"lr_{k}": tr.optim.param_groups[0]["lr"] for k, tr in stage.trained.items()}
                ctx.log.write({"kind": "train", "stage": name, "step": done, **metrics, **lrs,
                               "steps_per_s": rate})
                ctx.emit(Event("step", name, done, target, metrics={**metrics, **lrs}, rate=rate,
                               eta=(target - done) / rate if rate else None))
            if (cfg.run.val_every and done % cfg.run.val_every == 0) or end:
                _validate(ctx, stage, name, done, results)
            if (cfg.run.checkpoint_every and done % cfg.run.checkpoint_every == 0) or end:
                _save_state(ctx, stage, name, done, upstream)
            if over:
                final = done
                ctx.log.write({"kind": "budget", "stage": name, "step": done, "total": target})
                ctx.emit(Event("info", name, done, target, message=f"{name}: stopped at step {done} of {target}, "
                               "its share of run.max_minutes spent; --resume continues it"))
                break
            t_last = time.perf_counter()   # validation and checkpoints do not count in the rate
        del it, loader
    path = stage.finish(final)
    env.barrier()
    if rate is not None:
        rates[name] = rate
    done_record = {"kind": "done", "stage": name, "step": final, "total": target, "steps_per_s": rate,
                   "seconds": round(time.perf_counter() - t_stage, 2), "artifact": str(path) if path else None}
    if cuda:
        done_record["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(env.device) / 2**30, 3)
    ctx.log.write(done_record)
    ctx.emit(Event("done", name, final, target, rate=rate, message=str(path) if path else ""))


def stages_for(ctx) -> list:
    """The stage factories in run order: (name, build function)."""
    out = []
    for s in ctx.cfg.run.stages:
        if s == "vae":
            out.append(("vae", lambda: VAEStage(ctx)))
        elif s == "teacher":
            out.append(("teacher", lambda: TeacherStage(ctx)))
        elif s == "ode":
            out.append(("ode", lambda: ODEStage(ctx)))
        else:
            for task in ctx.cfg.student.tasks:
                out.append((f"student_{task}", lambda task=task: StudentStage(ctx, task)))
    return out


#################################################################################
#                                     Entry                                     #
#################################################################################


def holds_run(out: Path) -> bool:
    """Whether `out` holds a run to resume: a stage state or an artifact (a config.toml or a log
    alone is what a start that failed before its first step leaves, and is no run)."""
    return (any(out.glob(f"*/{STATE_FILE}")) or any(out.glob("*.safetensors"))
            or any(out.glob(f"*/{STUDENT_FILE}")))


# what killed runs of older versions left: `.state.pt.<pid>.tmp` (this run's lock says no one writes them)
_OLD_TEMP = re.compile(r"^\.(state\.pt\.\d+|.+\.safetensors\.[a-z0-9_]+)\.tmp$")


def _remove_leftovers(out: Path) -> None:
    """Temporaries of runs that were killed (SIGKILL, a full disk); the caller holds the run's lock."""
    for folder in [out] + [p for p in out.iterdir() if p.is_dir()]:
        remove_stale(folder)
        for p in folder.iterdir():
            if _OLD_TEMP.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)


def _prepare_folder(cfg: DistillConfig, out: Path, resume: bool, emit) -> None:
    if out.is_dir():
        _remove_leftovers(out)
    existing = out.is_dir() and holds_run(out)
    if existing and not resume:
        raise OutputRefused(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and not existing:
        emit(Event("info", message=f"nothing to resume in {out}: starting a new run"))
    if resume and (out / CONFIG_FILE).is_file():
        try:
            old = to_dict(load_config(out / CONFIG_FILE))
        except ConfigError:
            old = None
        new = to_dict(cfg)
        if old is not None and old != new:
            diff = [f"{s}.{k}" for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k]]
            emit(Event("info", message=f"the config differs from the run's ({', '.join(diff)}): using the new one"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputRefused(f"can't create the run folder {out}: {e.strerror or e}") from None
    atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(to_toml(cfg), encoding="utf-8"), lock=False)


def run_distill(
    config: str | Path | DistillConfig,
    out: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
    max_minutes: float | None = None,
) -> RunResult:
    """Run every stage of `config` (a TOML path or a DistillConfig) into the run folder.

    Args:
        out: run folder (replaces run.out).
        max_steps: stop each stage after this many steps (its schedule still spans its `steps`).
        resume: continue the run in the folder (each stage from its last state).
        on_event: progress callback (called on rank 0 only).
        max_minutes: replaces run.max_minutes: this invocation's wall-clock budget (0 = none).
    Returns:
        RunResult with the export's path (None when no student stage ran) and steps/s per stage.
    """
    cfg = (effective_config(config, out, max_minutes) if not isinstance(config, DistillConfig)
           else with_overrides(config, out, max_minutes))
    if isinstance(config, DistillConfig):
        check_config(cfg)
    env = init_distributed(cfg.run.device)
    threads = torch.get_num_threads()
    try:
        return _run(cfg, env, max_steps, resume, on_event)
    finally:
        torch.set_num_threads(threads)
        shutdown(env)


def build_context(cfg: DistillConfig, env: DistEnv, emit=None, sources: Sources | None = None) -> RunContext:
    """Sources, validation clips, log, text contexts and helpers of a run. The text encoder is
    loaded, run over every prompt and freed here (`captions.RunText.prepare`), before any stage
    model exists; its contexts go to the run folder's text.pt when the folder exists."""
    out = Path(cfg.run.out).expanduser()
    torch.manual_seed(cfg.run.seed)
    sources = sources or find_sources(cfg.data)
    captions = find_captions(sources, cfg.data)
    text = RunText.prepare(cfg, run_prompts(cfg, captions), env, out / TEXT_FILE if out.is_dir() else None)
    val = {s.name: load_val_clip(s, cfg.data.val_frames, cfg.data.val_size).to(env.device)
           for s in sources.val} if env.main else {}
    bf16 = env.device.type == "cuda" and cfg.run.precision in ("auto", "bf16")
    return RunContext(cfg, out, env, sources, val, JsonlLog(out / LOG_FILE if env.main else None),
                      emit or (lambda e: None), bf16=bf16, text=text, captions=captions)


def _run(cfg: DistillConfig, env: DistEnv, max_steps, resume: bool, on_event) -> RunResult:
    emit = (on_event or (lambda e: None)) if env.main else (lambda e: None)
    out = Path(cfg.run.out).expanduser()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.precision == "bf16" and env.device.type == "cpu":
        emit(Event("info", message="run.precision = 'bf16' is for CUDA; on the CPU the run stays in fp32"))
    check_weight_paths(cfg)              # a missing weight file stops the run before anything is written,
    sources = find_sources(cfg.data)     # ... and so do bad data (a data pack missing or unlike its manifest),
    check_weight_files(cfg, caption_files(sources) if cfg.text.encoder else None)   # a wrong layout or shape,
                                         # no tokenizer, a long prompt, an empty or long caption file
    made = [p for p in [out, *out.parents] if not p.exists()]      # folders this start creates
    lock = None
    if env.main:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputRefused(f"can't create the run folder {out}: {e.strerror or e}") from None
        lock = TargetLock(out, "running a distill into")           # one run per folder
    fresh = not (out.is_dir() and holds_run(out))
    try:
        return _run_locked(cfg, env, max_steps, resume, emit, out, sources)
    except BaseException:
        undo = env.main and fresh and out.is_dir() and not holds_run(out)
        if lock is not None:
            lock.release()
        if undo:
            _undo_start(out, made)      # a start that failed before its first state leaves nothing behind
        raise
    finally:
        if lock is not None:
            lock.release()


def _undo_start(out: Path, made: list[Path]) -> None:
    """Remove what a failed start wrote: config.toml, log.jsonl, text.pt, and the folders it created (if empty)."""
    for name in (CONFIG_FILE, LOG_FILE, TEXT_FILE):
        (out / name).unlink(missing_ok=True)
    for p in [*sorted(out.glob("*/"), reverse=True), *made]:
        try:
            p.rmdir()          # only empty folders
        except OSError:
            pass


def _run_locked(cfg: DistillConfig, env: DistEnv, max_steps, resume: bool, emit, out: Path,
                sources: Sources) -> RunResult:
    ends_at = time.monotonic() + 60 * cfg.run.max_minutes       # the budget counts from here
    if env.main:
        _prepare_folder(cfg, out, resume, emit)
    env.barrier()
    ctx = build_context(cfg, env, emit, sources)
    sources = ctx.sources
    if env.main:
        ctx.log.write({"kind": "run", "world": env.world, "device": str(env.device), "resume": resume,
                       "max_steps": max_steps, "data": sources.names})
        emit(Event("info", message=f"{env.world} process(es) on {env.device}; data: "
                   f"{len(sources.train_videos)} videos + {len(sources.train_images)} photographs, "
                   f"validation: {', '.join(sources.names['val']) or 'none'}"))
    rates: dict[str, float] = {}
    results: dict[str, dict] = {}
    stages = stages_for(ctx)
    for i, (name, factory) in enumerate(stages):
        deadline = None
        if cfg.run.max_minutes > 0:
            steps = [planned_steps(cfg, n, max_steps) for n, _ in stages[i:]]
            deadline = time.monotonic() + stage_budget(ends_at - time.monotonic(), steps)
        run_stage(ctx, name, factory, max_steps, resume, rates, results, deadline)
    export = out / X.EXPORT_FILE
    if "student" in cfg.run.stages and env.main and _export_is_stale(out, cfg.student.tasks):
        ctx.export_students()
    env.barrier()
    return RunResult(out, export if export.is_file() else None, rates, results)


def _export_is_stale(out: Path, tasks) -> bool:
    """No export yet, or a student file newer than it (e.g. a student trained elsewhere, copied in)."""
    export = out / X.EXPORT_FILE
    if not export.is_file():
        return True
    made = export.stat().st_mtime
    return any(p.is_file() and p.stat().st_mtime > made for p in (out / f"student_{t}" / STUDENT_FILE for t in tasks))


__all__ = ["Event", "RunContext", "RunResult", "build_context", "check_config", "effective_config", "run_distill"]
