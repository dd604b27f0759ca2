"""The streaming restore path that `vir restore`, `vir bench` and the trainer's validation share.

    in.mp4 -> decode (thread) -> y-blocks -> Restorer.push -> x-blocks -> encode (thread) -> out.mp4

The operator comes from the input's sidecar (what `vir degrade` recorded) or from the
task/mask the user names. Memory is bounded by the block size: nothing holds the video.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from instantvir_cli.classical import classical_restorer
from instantvir_cli.decoding import DecodeSpec
from instantvir_cli.errors import InputCorrupt, UsageError
from instantvir_cli.fit import check_fit
from instantvir_cli.learned import learned_restorer, random_restorer, with_init, with_still_ema
from instantvir_cli.masks import inpaint_operator_from_mask, load_mask
from instantvir_cli.models.checkpoint import read_header
from instantvir_cli.models.lookup import find_checkpoint
from instantvir_cli.ops import TASKS, Operator, build_operator, operator_from_dict
from instantvir_cli.ops.options import OperatorOptions
from instantvir_cli.paths import check_input_path, check_output_path
from instantvir_cli.restorer import Restorer
from instantvir_cli.sidecar import Sidecar
from instantvir_cli.threads import torch_threads
from instantvir_cli.video import EncodeOptions, VideoInfo, VideoReader, VideoWriter
from instantvir_cli.video.background import BackgroundWriter
from instantvir_cli.video.endpoint import Sink, Source

MODELS = ("classical", "instantvir")

ProgressFn = Callable[[int, "int | None"], None]
WarnFn = Callable[[str], None]


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: which operator to undo, with which model, on which device."""

    task: str | None = None          # None: take it from the sidecar
    model: str = "instantvir"        # instantvir | classical
    mask: Path | None = None         # inpainting keep-mask (image or video); overrides the sidecar
    seed: int = 0                    # seed of the default random inpainting mask (no sidecar/mask)
    sigma_y: float | None = None     # measurement noise std on [-1, 1]; None: sidecar or 0
    operator: OperatorOptions = OperatorOptions()  # blur sigma and size, keep fraction, sr kernel (None: sidecar)
    block_frames: int = 12           # frames per block pushed through the restorer
    device: str = "cpu"
    checkpoint: Path | None = None   # learned model weights (instantvir)
    arch: str | None = None          # instantvir with RANDOM weights of this DiT preset (timing only)
    vae: str | None = None           # ... and of this VAE preset
    decode: DecodeSpec = DecodeSpec()  # ... decoded this way (a checkpoint names its own)
    consistency_steps: int | None = None  # data-consistency steps (None: the checkpoint's or decode's choice)
    init: str | None = None          # instantvir: the initial estimate (estimate.INITS; None: the checkpoint's)
    still_ema: float | None = None   # instantvir: the change's smoothing on still pixels (0 = off; None: the checkpoint's)
    precision: str = "auto"          # instantvir: auto (bf16 on CUDA; CPU: fp32, student linears int8) | fp32 | int8 | bf16 | fp16
    prompt: str | None = None        # instantvir, a text student: its prompt (None: the one its checkpoint recorded)
    any_operator: bool = False       # instantvir: run a student on an operator it does not fit (fit.py; measuring only)
    tolerate_damage: bool = False    # restore what decodes from a damaged input (video/damage.py)
    realtime: bool = False           # drop input blocks while behind a live source (video/reader.py)


@dataclass
class RestoreReport:
    """What a restore run did and how fast."""

    output: Path | str               # a file's path, `-` (stdout) or a URL
    frames: int
    seconds: float
    first_frame_s: float | None
    stages: dict[str, float]         # seconds: decode, restore (= the restorer's own stages), encode
    operator: dict
    model: str
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    precision: str = "fp32"          # how the restorer computed (`Restorer.precision`)
    dropped: int = 0                 # input frames dropped while behind (`RestoreOptions.realtime`)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def resolve_operator(
    input_path: Path | None, info: VideoInfo, opts: RestoreOptions, sidecar: Sidecar | None,
    warn: WarnFn | None = None,
) -> tuple[Operator, "object | None"]:
    """The operator to undo on `input_path` and, for a per-frame mask video, its mask source.

    Order: the `--task`/`--mask` and operator options the user gave, then the sidecar
    `IN.vir.json` as the caller read it (`Sidecar.read`; None for a stream or a file without one), then defaults.
    The operator acts on full-resolution frames, so for sr4x it is sized 4x the input.
    """
    spec = dict(sidecar.operator) if sidecar else None
    task = opts.task or (spec or {}).get("task")
    if task is None:
        raise UsageError("no task given and no sidecar found" + (" (a stream has none)" if input_path is None else "")
                         + ": pass --task inpaint|deblur|sr4x")
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r} (choose one of: {', '.join(TASKS)})")
    if spec is not None and spec.get("task") != task:
        if warn:
            warn(f"--task {task} differs from the sidecar's task {spec.get('task')}: ignoring the sidecar")
        spec = None
    opts.operator.check_task(task)
    if task == "inpaint" and opts.mask is not None and opts.operator.keep_fraction is not None:
        raise UsageError("--keep-fraction sets vir's random mask: it does not apply with --mask")
    if spec is not None and not (task == "inpaint" and opts.mask is not None):
        spec, changes = opts.operator.override(spec)
        for line in changes if warn else ():
            warn(line)

    mask_source = None
    if task == "inpaint" and opts.mask is not None:
        op, mask_source = inpaint_operator_from_mask(opts.mask, info.height, info.width)
    elif spec is not None:
        mask = None
        if task == "inpaint" and spec.get("mask_file"):
            mask_source = load_mask(sidecar.mask_path(input_path), info.height, info.width)   # confined, hash checked
            mask = mask_source.static_mask()
        op = operator_from_dict(spec, mask=mask) if mask is not None else operator_from_dict(spec)
    else:
        height, width = info.height, info.width
        if task == "sr4x":
            height, width = 4 * height, 4 * width
        if task == "inpaint" and warn:
            keep = opts.operator.keep_fraction or 0.5
            warn(f"no sidecar and no --mask: assuming vir's random mask keeping {keep:.0%} of pixels, seed {opts.seed}")
        options = opts.operator.for_task(task)
        if task == "inpaint":
            options["seed"] = opts.seed
        op = build_operator(task, height, width, **options)
    if opts.sigma_y is not None:
        op.sigma_y = float(opts.sigma_y)
    if mask_source is not None and not mask_source.is_video:
        mask_source = None
    return op, mask_source


def make_restorer(op: Operator, opts: RestoreOptions, warn: WarnFn | None = None) -> Restorer:
    """The restorer named by `opts.model` for operator `op`.

    A checkpoint's student runs on the operator it was trained for (`fit.check_fit`): on
    another, a UsageError, or a warning where it was measured to hold.
    """
    if opts.prompt is not None and (opts.model != "instantvir" or opts.arch or opts.vae):
        raise UsageError("--prompt needs a learned instantvir model with a text student")
    if opts.init is not None and opts.model != "instantvir":
        raise UsageError("--init is the learned model's initial estimate: the classical restorer has none")
    if opts.still_ema is not None and opts.model != "instantvir":
        raise UsageError("--still-ema smooths the learned model's change: the classical restorer has none")
    if opts.model == "classical":
        return classical_restorer(op)
    if opts.model == "instantvir":
        if opts.arch or opts.vae:
            spec = opts.decode if opts.init is None else with_init(opts.decode, opts.init)
            if opts.consistency_steps is not None:
                spec = spec.replace(consistency=opts.consistency_steps)
            if opts.still_ema is not None:
                spec = with_still_ema(spec, opts.still_ema)
            return random_restorer(op, opts.arch or "small-p4", opts.vae or "small", device=opts.device,
                                   spec=spec, precision=opts.precision)
        checkpoint = find_checkpoint(opts.checkpoint)
        entry = (read_header(checkpoint).get("tasks") or {}).get(op.task)
        if entry is not None and not opts.any_operator:
            note = check_fit(entry.get("operator"), op, checkpoint)
            if note and warn:
                warn(note)
        return learned_restorer(op, checkpoint=checkpoint, device=opts.device,
                                consistency_steps=opts.consistency_steps, precision=opts.precision,
                                prompt=opts.prompt, init=opts.init, still_ema=opts.still_ema)
    raise UsageError(f"unknown model {opts.model!r} (choose one of: {', '.join(MODELS)})")


@torch.inference_mode()
def restore_video(
    input_path: Path | Source,
    output_path: Path | Sink,
    opts: RestoreOptions,
    encode: EncodeOptions,
    overwrite: bool = False,
    on_progress: ProgressFn | None = None,
    warn: WarnFn | None = None,
) -> RestoreReport:
    """Restore `input_path` into `output_path` block by block; see the module docstring.

    Either end may be a stream (`video.endpoint`: stdin/stdout, a URL, a device). A file output is
    written to a temporary beside the target and renamed on success, and has exactly the input's
    frames and timestamps (less those `opts.realtime` dropped). Ctrl-C (KeyboardInterrupt) stops a
    restore whose input or output is a stream cleanly: the output is finished with the frames
    restored so far (a file output is then renamed into place), and KeyboardInterrupt is raised
    again with a message saying so; from a file into a file it leaves nothing.
    """
    source = input_path if isinstance(input_path, Source) else Source.parse(input_path)
    sink = output_path if isinstance(output_path, Sink) else Sink.parse(output_path)
    if source.is_file:
        check_input_path(source.path)
    if sink.is_file:
        inputs = ([source.path] if source.is_file else []) + ([opts.mask] if opts.mask else [])
        check_output_path(sink.path, inputs, overwrite)
    stages = {"decode": 0.0, "restore": 0.0, "encode": 0.0}
    device = torch.device(opts.device)
    frames_out = 0
    first_frame_s = None
    pending_pts: deque = deque()
    interrupted = False
    t_start = time.perf_counter()

    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source, block_size=opts.block_frames,
                                                 tolerate_damage=opts.tolerate_damage, realtime=opts.realtime))
        info = reader.info
        sidecar = Sidecar.read(source.path, info) if source.is_file else None   # values checked (sidecar.py)
        if sidecar is not None:                       # the count vir degrade wrote: its gaps are the source's
            reader.declared_frames = sidecar.source.get("frames")
        op, mask_source = resolve_operator(source.path if source.is_file else None, info, opts, sidecar, warn)
        out_h, out_w = op.signal_size(info.height, info.width)
        restorer = make_restorer(op, opts, warn)
        stack.enter_context(torch_threads(restorer.threads))
        writer = stack.enter_context(VideoWriter(sink, out_w, out_h, source=reader, options=encode,
                                                 overwrite=overwrite, warn=warn))
        stops = reader.live or writer.stream_out     # Ctrl-C ends the stream, keeping what was restored

        def written(frames: int) -> None:            # in the encoding thread, after each block
            nonlocal first_frame_s
            if first_frame_s is None:
                first_frame_s = time.perf_counter() - t_start

        # the encoder runs in a thread beside the restorer (closed before the writer: LIFO)
        encoder = stack.enter_context(BackgroundWriter(writer, on_written=written, keep_on_error=writer.stream_out))

        def emit(x: torch.Tensor) -> None:
            nonlocal frames_out
            if x.shape[2] == 0:
                return
            pts = [pending_pts.popleft() for _ in range(x.shape[2])]
            encoder.write(x.float().cpu(), pts)
            frames_out += x.shape[2]
            if on_progress:
                on_progress(frames_out, info.frames)

        blocks = iter(reader)
        try:
            while True:
                t0 = time.perf_counter()
                block = next(blocks, None)
                stages["decode"] += time.perf_counter() - t0
                if block is None:
                    break
                pending_pts.extend(block.pts)
                t0 = time.perf_counter()
                y = block.x.to(device)
                if mask_source is not None:
                    restorer.op = op.with_mask(mask_source.block(block.index, y.shape[2]).to(device))
                x = restorer.push(y)
                stages["restore"] += time.perf_counter() - t0
                emit(x)
        except KeyboardInterrupt:
            if stops:
                encoder.finish()                     # what was restored goes into the output
            if not stops or writer.frames_written == 0:
                raise KeyboardInterrupt("nothing was restored before it" if stops else "") from None
            interrupted = True
        if not interrupted:
            t0 = time.perf_counter()
            x = restorer.flush()
            stages["restore"] += time.perf_counter() - t0
            emit(x)
            if frames_out == 0:
                raise InputCorrupt(f"no frames could be restored from {source.name}")
            if pending_pts:
                raise InputCorrupt(f"{len(pending_pts)} frames were decoded but not restored")
            encoder.finish()
        stages["encode"] = encoder.seconds
        if reader.damage and warn:
            warn(f"{reader.damage.summary(source.name)}; restored the {frames_out} frames that decode")
        if reader.ended and warn:
            warn(reader.ended)
        frames_out = writer.frames_written
    if interrupted:
        raise KeyboardInterrupt(f"{sink.name} holds the {frames_out} frames restored before it"
                                + (f" ({reader.dropped} dropped)" if reader.dropped else ""))
    seconds = time.perf_counter() - t_start
    stages.update(restorer.timings)
    return RestoreReport(
        output=sink.path if sink.is_file else sink.spec,
        frames=frames_out,
        seconds=seconds,
        first_frame_s=first_frame_s,
        stages=stages,
        operator=op.to_dict(),
        model=opts.model,
        size_in=(info.width, info.height),
        size_out=(out_w, out_h),
        precision=restorer.precision,
        dropped=reader.dropped,
    )
