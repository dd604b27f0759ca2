"""The InstantViR restorer: measurement -> VAE encode -> ONE student pass per block -> VAE decode.

    y-block -> x0 = init(y) -> pad -> VAE.encode_stream -> CausalStudent.step (KV cache)
            -> VAE.decode_stream -> crop -> data consistency -> x-block

init is `estimate.InitialEstimate` (the operator's pseudo-inverse, or a classical restorer);
how the student's latent becomes pixels (plain, residual or delta decoding, the change's EMA,
data consistency) is the checkpoint's `decoding.DecodeSpec`. In a stream, the residual path
decodes [z_hat, z_in] as one batch of two streams sharing one state; delta decoding's D(0) is
computed once per block form and size; the EMA's last frame is carried between blocks.

Frames are held until a whole student block of latent frames can be formed: with a 4x
temporal VAE and 3 latent frames a block, the first block is 1 + 4*2 = 9 frames and every
later one 12. The tail of a video is padded (last frame repeated) to the VAE's chunk size,
restored as a short block and cropped back, so every frame count works. Memory is bounded by
one block plus the student's rolling KV cache and the VAE's two-frame causal state.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from instantvir_cli.decoding import ChangeState, DecodeSpec, decode_student
from instantvir_cli.errors import CheckpointError, UsageError, VirError
from instantvir_cli.estimate import InitialEstimate
from instantvir_cli.models.checkpoint import load_checkpoint
from instantvir_cli.models.dit import DiTConfig
from instantvir_cli.models.int8 import int8_available, int8_pays, is_quantized, quantize_linears
from instantvir_cli.models.lookup import find_checkpoint
from instantvir_cli.models.presets import config_from_dict, dit_config
from instantvir_cli.models.strict import check_state_dict, load_module_state
from instantvir_cli.models.student import CausalStudent, StudentConfig
from instantvir_cli.models.vae import LeanVAE, VAEConfig, VAEStreamState, vae_config
from instantvir_cli.ops import Operator
from instantvir_cli.ops.base import check_video

STAGES = ("init", "vae_encode", "student", "vae_decode", "consistency")
PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The reduced float precision for the student and the decoder, or None for fp32.

    auto: bf16 on CUDA, fp32 on CPU (with the student's linears in int8, `student_int8`). The
    encoder always runs in fp32: bf16 encoding of the degraded input hurts causal rollouts
    (research/components.md §5).
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose one of: {', '.join(PRECISIONS)})")
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise UsageError(f"{precision} on the CPU is hundreds of times slower than fp32 here: use fp32 (or auto)")
        return None
    if precision == "int8":
        raise UsageError("int8 runs on the CPU only: on CUDA use bf16 (or auto)")
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def student_int8(precision: str, device: str | torch.device, config: DiTConfig | None = None) -> bool:
    """Whether the student's block linears run in dynamic int8 (`models.int8`): with int8; with
    auto on a CPU whose torch has a quantized engine and where int8 measured faster than fp32 for
    a student of this `config`'s widths (`int8_pays`; without a config, no int8). The rest stays fp32."""
    device = torch.device(device)
    autocast_dtype(precision, device)                   # validates the name and the device
    if precision == "int8":
        if not int8_available():
            raise UsageError("this torch build has no quantized CPU engine for int8: use fp32")
        return True
    if precision != "auto" or device.type != "cpu" or config is None or not int8_available():
        return False
    return int8_pays(config.dim, config.ffn_dim).faster


def operator_norm_sq(op: Operator, shape: tuple[int, ...], device: torch.device, iters: int = 20) -> float:
    """Largest eigenvalue of AT A on frames of `shape` (B, C, 1, H, W), by power iteration."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device)
    lam = 1.0
    for _ in range(iters):
        x = op.AT(op.A(x))
        lam = float(x.norm())
        x = x / max(lam, 1e-12)
    return lam


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The (B, C, T, H, W) blocks of `parts` joined in time; a lone block as it is (no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, 2)


class DataConsistency:
    """Pull a restored block towards the measurement: exact for inpainting, gradient steps otherwise.

    inpaint (noiseless): x <- M y + (1 - M) x, observed pixels exactly kept.
    sr4x / deblur: `steps` steps of x <- x - (1/L) AT(A x - y), L = ||AT A|| (for the block
    average one step is the exact projection onto {A x = y}), one frame at a time, which keeps
    the blur's intermediates in cache.
    """

    def __init__(self, steps: int = 1):
        self.steps = steps
        self._lipschitz: dict[tuple, float] = {}

    def __call__(self, op: Operator, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T, H, W) restored, y: the measurement of those frames, mask: (1, 1, T, H, W)
        bool keep-mask of those frames (inpainting)."""
        if self.steps <= 0:
            return x
        if op.task == "inpaint":
            # with noise the observed pixels are not the truth: keep the model's estimate
            if op.sigma_y > 0:
                return x
            keep = mask.to(x.dtype)   # x (1 - M) + M y, exact where M is 0 or 1, in two passes over
            return x.mul(1 - keep).addcmul_(y, keep)   # memory instead of a broadcast torch.where
        key = (op.task, x.shape[-2], x.shape[-1], x.device.type)
        if key not in self._lipschitz:
            self._lipschitz[key] = operator_norm_sq(op, (1, 1, 1, *x.shape[-2:]), x.device)
        step = 1.0 / self._lipschitz[key]
        out = torch.empty_like(x)        # each frame's last step is written into its slot: no join
        for t in range(x.shape[2]):
            xt, yt = x[:, :, t:t + 1], y[:, :, t:t + 1]
            for i in range(self.steps):
                g = step * op.AT(op.A(xt) - yt)
                xt = torch.sub(xt, g, out=out[:, :, t:t + 1]) if i == self.steps - 1 else xt - g
        return out


class InstantViRRestorer:
    """Streaming InstantViR restorer (implements `instantvir_cli.restorer.Restorer`).

    Args:
        op: the operator to undo (its `op` attribute may be swapped per block for mask videos).
        vae: the student-side LeanVAE (eval mode).
        student: the causal one-step student.
        spec: how the student's latent is decoded (`decoding.DecodeSpec`: initial estimate,
            residual / delta decoding, the change's EMA, data-consistency steps).
        context: optional text embeddings (B, Lc, text_dim) for a text-conditioned student.
        precision: auto | fp32 | int8 | bf16 | fp16, the float autocast of the student and the
            decoder (`autocast_dtype`); int8 (and auto on the CPU) is applied to the student's
            linears by the builders (`learned_restorer`, `random_restorer`), here it runs as fp32.
    """

    name = "instantvir"
    threads: int | None = None      # torch's own thread count
    precision: str                  # how it runs, in words (`precision_label`)

    def __init__(self, op: Operator, vae: LeanVAE, student: CausalStudent, spec: DecodeSpec = DecodeSpec(),
                 context: torch.Tensor | None = None, precision: str = "auto"):
        self.spec = spec
        self.op = op
        self.estimate = InitialEstimate(spec.init)
        self._zero_out: dict[tuple, torch.Tensor] = {}   # D(0) per block form and size (delta)
        self.device = next(student.parameters()).device
        self.half = autocast_dtype(precision, self.device)
        self.precision = precision_label(precision, self.device, is_quantized(student))
        self.vae, self.student = vae, student
        self.context = context
        self.consistency = DataConsistency(spec.consistency)
        vc, sc = vae.cfg, student.student_config
        self.tf = vc.time_factor
        self.multiple = vc.space_factor * max(student.config.patch[1], student.config.patch[2])
        self.first_frames = 1 + self.tf * (sc.block_frames - 1)   # pixel frames of the first block
        self.next_frames = self.tf * sc.block_frames              # ... of every later block
        self.timings = {k: 0.0 for k in STAGES}
        self.reset()

    def reset(self) -> None:
        """Start a new video: empty buffers, fresh VAE states and KV cache."""
        self._y: list[torch.Tensor] = []
        self._x0: list[torch.Tensor] = []
        self._m: list[torch.Tensor] = []      # inpainting keep-masks of the held frames
        self._held = 0
        self._enc = VAEStreamState()
        self._dec = VAEStreamState()
        self._cache = self.student.new_cache()
        self._last_change: ChangeState | None = None    # the change's EMA after the last block (correction_ema)
        self._started = False
        self._out_shape: tuple[int, int] | None = None

    # ------------------------------------------------------------------ helpers
    def _tick(self, stage: str, t0: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels are asynchronous: time them where they end
        t1 = time.perf_counter()
        self.timings[stage] += t1 - t0
        return t1

    def _take(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The first n held frames: y, x0 and the keep-mask (None unless inpainting)."""
        y, x0 = _joined(self._y), _joined(self._x0)
        self._y, self._x0 = [y[:, :, n:]], [x0[:, :, n:]]
        m = None
        if self._m:
            m = _joined(self._m)
            self._m, m = [m[:, :, n:]], m[:, :, :n]
        self._held -= n
        return y[:, :, :n], x0[:, :, :n], m

    def _pad_space(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph == 0 and pw == 0:
            return x
        B, C, T = x.shape[:3]
        flat = x.reshape(B, C * T, H, W)
        flat = F.pad(flat, (0, pw, 0, ph), mode="replicate")
        return flat.reshape(B, C, T, H + ph, W + pw)

    def _run_block(self, y: torch.Tensor, x0: torch.Tensor, m: torch.Tensor | None, frames: int) -> torch.Tensor:
        """Restore `frames` real frames; y, x0 may hold padding frames after them."""
        H, W = x0.shape[-2:]
        t0 = time.perf_counter()
        x_in = self._pad_space(x0)
        z_in = self.vae.encode_stream(x_in, self._enc)                  # (B, d, n, h, w)
        t0 = self._tick("vae_encode", t0)
        with torch.autocast(self.device.type, dtype=self.half, enabled=self.half is not None):
            z_hat = self.student.step(z_in, self._cache, self.context)  # (B, d, n, h, w)
            t0 = self._tick("student", t0)

            def decode(z: torch.Tensor) -> torch.Tensor:                 # (B, C, T, H, W), padding cropped
                return self.vae.decode_stream(z, self._dec)[..., :H, :W].float()

            def difference(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:   # D(z_a) - D(z_b)
                return self.vae.decode_difference_stream(z_a, z_b, self._dec)[..., :H, :W].float()

            def zero() -> torch.Tensor:                                  # D(0) of this block's form
                return self._zero_decode(z_hat)[..., :H, :W]

            x, self._last_change = decode_student(self.spec, decode, z_hat, z_in.to(z_hat.dtype), x0, zero,
                                                  self._last_change, frames, difference)
        t0 = self._tick("vae_decode", t0)
        x, y = x[:, :, :frames], y[:, :, :frames]
        x = self.consistency(self.op, x, y, None if m is None else m[:, :, :frames]).clamp_(-1, 1)
        self._tick("consistency", t0)
        return x

    def _zero_decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(0) for a block shaped like z (1, C, T, H, W), as the stream decodes it here.

        The decoder is causal: a first block's D(0) is the stream's start, and every later block
        of zeros, after a first one, decodes the same (the two-frame states hold constants).
        """
        first = not self._started
        key = (first, *z.shape[1:], z.dtype, z.device)
        out = self._zero_out.get(key)
        if out is None:
            state, zeros = VAEStreamState(), z.new_zeros(1, *z.shape[1:])
            if not first:
                self.vae.decode_stream(z.new_zeros(1, z.shape[1], self.student.student_config.block_frames,
                                                   *z.shape[3:]), state)
            out = self.vae.decode_stream(zeros, state).float()
            if len(self._zero_out) > 8:
                self._zero_out.clear()
            self._zero_out[key] = out
        return out

    # ------------------------------------------------------------------ Restorer
    def _restore_blocks(self) -> list[torch.Tensor]:
        """Restore every whole block among the held frames."""
        out = []
        while True:
            need = self.next_frames if self._started else self.first_frames
            if self._held < need:
                return out
            yb, xb, mb = self._take(need)
            out.append(self._run_block(yb, xb, mb, need))
            self._started = True

    def push(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, C, T, h, w) measurement frames -> restored (B, C, T_out, H, W), T_out >= 0."""
        check_video(y, "y")
        self._out_shape = tuple(self.op.signal_size(*y.shape[-2:]))
        t0 = time.perf_counter()
        self._x0.append(self.estimate(self.op, y))
        self._tick("init", t0)
        self._y.append(y)
        if self.op.task == "inpaint":
            m = self.op.mask_like(y) > 0.5                              # (1, 1, T|1, H, W)
            self._m.append(m.expand(1, 1, y.shape[2], *m.shape[-2:]))
        self._held += y.shape[2]
        out = self._restore_blocks()
        return _joined(out) if out else self._empty(y)

    def flush(self) -> torch.Tensor:
        """Restore the frames still held (padded to the VAE's chunk size, cropped back)."""
        if self._held == 0:         # push restored every whole block: only a tail can be held
            out = self._empty(None)
            self.reset()
            return out
        r = self._held
        yb, xb, mb = self._take(r)
        if self._started:
            total = -(-r // self.tf) * self.tf
        else:
            total = 1 + -(-(r - 1) // self.tf) * self.tf
        if total > r:
            rep = [1] * 5
            rep[2] = total - r
            yb = torch.cat([yb, yb[:, :, -1:].repeat(*rep)], 2)
            xb = torch.cat([xb, xb[:, :, -1:].repeat(*rep)], 2)
        out = self._run_block(yb, xb, mb, r)
        self.reset()
        return out

    def _empty(self, like: torch.Tensor | None) -> torch.Tensor:
        H, W = self._out_shape or (0, 0)
        p = next(self.student.parameters())
        return torch.zeros(1, 3, 0, H, W, device=p.device, dtype=p.dtype)


# ---------------------------------------------------------------------- building restorers

def precision_label(precision: str, device: str | torch.device, int8: bool) -> str:
    """What `precision` runs as on `device`, in words: "fp32", "fp32, student linears int8",
    "bf16 autocast"...; `int8`: whether the student's linears were quantized."""
    dtype = autocast_dtype(precision, torch.device(device))
    if dtype is not None:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + " autocast"
    return "fp32, student linears int8" if int8 else "fp32"


def with_init(spec: DecodeSpec, init: str) -> DecodeSpec:
    """`spec` starting from the initial estimate `init` (`estimate.INITS`; UsageError if unknown)."""
    try:
        return spec.replace(init=init)
    except ValueError as err:
        raise UsageError(f"--init: {err}") from None


def with_still_ema(spec: DecodeSpec, b: float) -> DecodeSpec:
    """`spec` with the still-shot smoothing weight b (0 = off; UsageError where it can't apply)."""
    try:
        return spec.replace(still_ema=float(b))
    except ValueError as err:
        raise UsageError(f"--still-ema: {err}") from None


def _prepare(module: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    return module.to(device).eval().requires_grad_(False)


def _prepare_student(student: CausalStudent, device: str | torch.device, precision: str) -> CausalStudent:
    student = _prepare(student, device)
    if student_int8(precision, device, student.config):
        quantize_linears(student)
    return student


def header_models(h: dict, entry: dict, path, check=None) -> tuple[VAEConfig, DiTConfig, StudentConfig]:
    """The VAE, DiT and student configs a checked header (`check_header`) describes for task entry
    `entry`; the models are built on the meta device (no memory) and passed to `check(vae, student)`
    (e.g. to compare their sizes with the file's tensors). Any failure is a CheckpointError."""
    try:
        vae_cfg = config_from_dict(VAEConfig, h["vae"])
        dit_cfg, student_cfg = dit_config(h["dit"]), config_from_dict(StudentConfig, entry.get("student", {}))
        with torch.device("meta"):
            vae, student = LeanVAE(vae_cfg), CausalStudent(dit_cfg, student_cfg)
            if check is not None:
                check(vae, student)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise CheckpointError(f"{path}: header does not describe the models ({err})") from None
    except VirError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return vae_cfg, dit_cfg, student_cfg


def learned_restorer(op: Operator, checkpoint: Path | str | None = None, device: str = "cpu",
                     consistency_steps: int | None = None, precision: str = "auto",
                     prompt: str | None = None, init: str | None = None,
                     still_ema: float | None = None) -> InstantViRRestorer:
    """The InstantViR restorer for `op.task` from a checkpoint (see `find_checkpoint` for the lookup).

    `precision` (PRECISIONS): auto runs bf16 autocast on CUDA, and on the CPU fp32 with the
    student's block linears in dynamic int8 (`student_int8`); fp32 keeps everything in fp32.
    `prompt`: a text student's prompt (`text_context`); None = the one its checkpoint recorded.
    `init`: the initial estimate (`estimate.INITS`) instead of the checkpoint's; UsageError if unknown.
    `still_ema`: the change's smoothing where the picture stands still instead of the checkpoint's
    (0 = off; `decoding.smooth_change`); UsageError where the checkpoint's decoding can't take it.

    Raises CheckpointError when no checkpoint is found, it is invalid, or it has no student for
    the task.
    """
    path = find_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    h = ckpt.header
    tasks = h.get("tasks") or {}
    if op.task not in tasks:
        raise CheckpointError(f"{path}: no student for task {op.task!r} (it has: {', '.join(tasks) or 'none'})")
    entry = tasks[op.task]
    vae_module = entry.get("vae_module", "vae")        # a task may have fine-tuned its own VAE
    vae_cfg, dit_cfg, student_cfg = header_models(h, entry, path, lambda vae, student: (
        check_state_dict(vae.state_dict(), ckpt.state_dict(vae_module), vae_module),
        check_state_dict(student.state_dict(), ckpt.state_dict(entry["module"]), entry["module"])))
    vae, student = LeanVAE(vae_cfg), CausalStudent(dit_cfg, student_cfg)
    load_module_state(vae, ckpt.state_dict(vae_module), vae_module)
    load_module_state(student, ckpt.state_dict(entry["module"]), entry["module"])
    try:
        spec = DecodeSpec.from_entry(entry)
    except ValueError as err:
        raise CheckpointError(f"{path}: task {op.task!r}: {err}") from None
    if consistency_steps is not None:
        spec = spec.replace(consistency=consistency_steps)
    if init is not None:
        spec = with_init(spec, init)
    if still_ema is not None:
        spec = with_still_ema(spec, still_ema)
    context = text_context(ckpt, student, op.task, prompt, device)
    return InstantViRRestorer(op, _prepare(vae, device), _prepare_student(student, device, precision), spec,
                              context=context, precision=precision)


def text_context(ckpt, student: CausalStudent, task: str, prompt: str | None, device) -> torch.Tensor | None:
    """(1, Lc, D) text context of a text student: `prompt` through its text encoder, or the context of
    the prompt its checkpoint recorded (module `text`); None for a student without text."""
    if not student.config.text_dim:
        if prompt is not None:
            raise UsageError(f"--prompt: the {task} student of {ckpt.path.name} takes no text")
        return None
    if prompt is None:
        if "text" not in ckpt.modules:
            raise CheckpointError(f"{ckpt.path}: a text student without a recorded prompt: pass --prompt")
        ctx = ckpt.state_dict("text")["prompt"]
        if ctx.dim() != 2 or ctx.shape[1] != student.config.text_dim:
            raise CheckpointError(f"{ckpt.path}: text/prompt has shape {tuple(ctx.shape)}, the student takes "
                                  f"(Lc, {student.config.text_dim})")
        return ctx[None].to(device)
    from instantvir_cli.models.text import prompt_context

    return prompt_context(ckpt.header.get("text") or {}, prompt, device)


def random_restorer(op: Operator, arch: str, vae: str, device: str = "cpu", seed: int = 0,
                    block_frames: int = 3, cache_blocks: int | None = 6, spec: DecodeSpec = DecodeSpec(),
                    precision: str = "auto") -> InstantViRRestorer:
    """An InstantViR restorer with random weights of the named presets (for timing only)."""
    torch.manual_seed(seed)
    vcfg = vae_config(vae)
    dcfg = dataclasses.replace(dit_config(arch), in_channels=vcfg.latent_channels, out_channels=vcfg.latent_channels)
    v = LeanVAE(vcfg)
    s = CausalStudent(dcfg, StudentConfig(block_frames=block_frames, cache_blocks=cache_blocks))
    # a text-conditioned preset (wan2.1-1.3b) gets a stand-in context of umT5's 512 tokens
    context = torch.zeros(1, 512, dcfg.text_dim, device=device) if dcfg.text_dim else None
    return InstantViRRestorer(op, _prepare(v, device), _prepare_student(s, device, precision), spec,
                              context=context, precision=precision)
