r"""`vir degrade`: apply an operator y = A(x) + sigma_y n to a video, streaming, and record it.

    in.mp4 -> decode -> crop (sr4x: to a multiple of 4) -> A + noise -> encode (lossless) -> out
                                                          \-> out.vir.json (the exact operator)

The video and its sidecar are one `atomic.AtomicOutput`: both are written to temporaries and
moved into place together, after the last byte of each is stored, so a failure at any point
(a full disk included) leaves neither, and `--overwrite` never pairs a new video with an old
sidecar.

Either end may be a stream (`video.endpoint`): from stdin, a URL or a device the sidecar records
the source by that name; to stdout or a URL no sidecar is written (there is no file beside which
to put it), and `DegradeReport.restore_hint` names the options that make `vir restore` rebuild the
same operator without one.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from instantvir_cli.atomic import AtomicOutput
from instantvir_cli.errors import InputCorrupt, UsageError
from instantvir_cli.ops import TASKS, build_operator
from instantvir_cli.ops.options import OperatorOptions
from instantvir_cli.paths import check_input_path, check_output_path, sidecar_path
from instantvir_cli.sidecar import Sidecar, mask_reference
from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter
from instantvir_cli.video.endpoint import Sink, Source


@dataclass(frozen=True)
class DegradeOptions:
    """Which degradation to apply."""

    task: str
    seed: int = 0                  # inpainting mask seed, and the noise seed
    noise: float = 0.0             # sigma_y on [-1, 1] (0.05 is DPS's setting)
    mask: Path | None = None       # a user keep-mask (image or video) instead of the random one
    operator: OperatorOptions = OperatorOptions()  # blur sigma and size, keep fraction, sr kernel
    block_frames: int = 12
    tolerate_damage: bool = False  # degrade what decodes from a damaged input (video/damage.py)


@dataclass
class DegradeReport:
    output: Path | str               # a file's path, `-` (stdout) or a URL
    sidecar: Path | None             # None for a stream output
    frames: int
    seconds: float
    operator: dict
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    crop: tuple[int, int, int, int]  # x0, y0, width, height taken from the input before A
    damage: str | None = None        # what a damaged input lost (with tolerate_damage)
    restore_hint: str | None = None  # a stream output: the options that rebuild its operator on restore


def center_crop_box(width: int, height: int, multiple: int) -> tuple[int, int, int, int]:
    """The largest centred (x0, y0, w, h) box whose sides are multiples of `multiple`."""
    w, h = width - width % multiple, height - height % multiple
    if w == 0 or h == 0:
        raise UsageError(f"video of {width}x{height} is too small for a {multiple}x operator")
    return (width - w) // 2, (height - h) // 2, w, h


@torch.inference_mode()
def degrade_video(
    input_path: Path,
    output_path: Path,
    opts: DegradeOptions,
    encode: EncodeOptions,
    overwrite: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> DegradeReport:
    """Degrade `input_path` into `output_path` and write the sidecar `output_path.vir.json`."""
    from instantvir_cli.masks import inpaint_operator_from_mask

    if opts.task not in TASKS:
        raise UsageError(f"unknown task {opts.task!r} (choose one of: {', '.join(TASKS)})")
    if opts.noise < 0:
        raise UsageError(f"--noise must be >= 0, got {opts.noise}")
    if opts.mask is not None and opts.task != "inpaint":
        raise UsageError("--mask only applies to --task inpaint")
    options = opts.operator.for_task(opts.task)
    if opts.mask is not None and opts.operator.keep_fraction is not None:
        raise UsageError("--keep-fraction sets vir's random mask: it does not apply with --mask")
    source = input_path if isinstance(input_path, Source) else Source.parse(input_path)
    sink = output_path if isinstance(output_path, Sink) else Sink.parse(output_path)
    if source.is_file:
        check_input_path(source.path)
    if sink.is_file:
        check_output_path(sink.path, ([source.path] if source.is_file else []) + ([opts.mask] if opts.mask else []),
                          overwrite)
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source, block_size=opts.block_frames,
                                                 tolerate_damage=opts.tolerate_damage))
        info = reader.info
        crop = center_crop_box(info.width, info.height, 4) if opts.task == "sr4x" else (0, 0, info.width, info.height)
        x0, y0, w, h = crop
        if opts.task == "sr4x" and (w, h) != (info.width, info.height) and warn:
            warn(f"sr4x needs sizes divisible by 4: cropping {info.width}x{info.height} to {w}x{h} (centred)")

        mask_source = None
        if opts.task == "inpaint":
            if opts.mask is not None:
                op, mask_source = inpaint_operator_from_mask(opts.mask, h, w)
                if mask_source is None:     # an image: the sidecar holds the mask itself
                    op = build_operator("inpaint", h, w, mask=op.mask)
                elif sink.is_file:          # a video: named relative to the output's folder (sidecar.py)
                    op.mask_file = mask_reference(opts.mask, sink.path)
            else:
                op = build_operator("inpaint", h, w, seed=opts.seed, **options)
        else:
            op = build_operator(opts.task, h, w, **options)
        op.sigma_y = float(opts.noise)
        out_h, out_w = op.measurement_size(h, w)
        generator = torch.Generator().manual_seed(opts.seed)
        frames = 0
        damage = None
        t_start = time.perf_counter()
        sidecar_file = sidecar_path(sink.path) if sink.is_file else None
        out = stack.enter_context(AtomicOutput([sink.path, sidecar_file], overwrite)) if sink.is_file else None
        with VideoWriter(sink, out_w, out_h, source=reader, options=encode, overwrite=overwrite, warn=warn,
                         output=out) as writer:
            for block in reader:
                x = block.x[..., y0 : y0 + h, x0 : x0 + w]
                block_op = op
                if mask_source is not None:
                    block_op = op.with_mask(mask_source.block(block.index, x.shape[2]))
                y = block_op.measure(x, generator=generator).clamp(-1, 1)
                writer.write(y, block.pts)
                frames += x.shape[2]
                if on_progress:
                    on_progress(frames, info.frames)
            if frames == 0:
                raise InputCorrupt(f"no frames could be decoded from {source.name}")
        if reader.damage:
            damage = reader.damage.summary(source.name)
            if warn:
                warn(f"{damage}; degraded the {frames} frames that decode")
        if reader.ended and warn:
            warn(reader.ended)
        if out is not None:
            Sidecar(
                operator=op.to_dict(),
                source={
                    "path": str(source.path.resolve()) if source.is_file else source.spec,
                    "width": info.width,
                    "height": info.height,
                    "crop": list(crop),
                    "frames": frames,
                },
                noise_seed=opts.seed,
            ).write(sink.path, out)
    return DegradeReport(
        output=sink.path if sink.is_file else sink.spec,
        sidecar=sidecar_file,
        frames=frames,
        seconds=time.perf_counter() - t_start,
        operator=op.to_dict(),
        size_in=(info.width, info.height),
        size_out=(out_w, out_h),
        crop=crop,
        damage=damage,
        restore_hint=None if sink.is_file else restore_hint(opts),
    )


def restore_hint(opts: DegradeOptions) -> str:
    """The `vir restore` options that rebuild the operator of `opts` without a sidecar."""
    parts = [f"--task {opts.task}"]
    if opts.task == "inpaint":
        parts.append(f"--mask {opts.mask}" if opts.mask is not None else f"--seed {opts.seed}")
    for flag, value in (("--blur-sigma", opts.operator.blur_sigma), ("--blur-size", opts.operator.blur_size),
                        ("--keep-fraction", opts.operator.keep_fraction), ("--sr-kernel", opts.operator.sr_kernel)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if opts.noise:
        parts.append(f"--noise {opts.noise:g}")
    return " ".join(parts)
