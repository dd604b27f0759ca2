"""`vir bench`: timings of the restore path and quality of a restored video, as dataclasses.

Speed: a synthetic clip of the requested size is generated, degraded with the task's operator,
and restored through the same `restore_video` path users run, with per-stage times; a plain
decode + encode of the clean clip with the same encoder settings is the I/O baseline.
Quality: PSNR / SSIM / flicker of a test video against a reference, streamed block by block.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from instantvir_cli.cpu import cpu_info
from instantvir_cli.degrade import DegradeOptions, degrade_video
from instantvir_cli.dps import dps_restore
from instantvir_cli.errors import UsageError
from instantvir_cli.learned import learned_restorer, random_restorer
from instantvir_cli.metrics import Quality, QualityMeter
from instantvir_cli.models.checkpoint import read_header
from instantvir_cli.models.dit import DiT
from instantvir_cli.models.lookup import find_checkpoint
from instantvir_cli.paths import check_input_path
from instantvir_cli.restore import RestoreOptions, resolve_operator, restore_video
from instantvir_cli.restorer import restore_tensor
from instantvir_cli.sidecar import Sidecar
from instantvir_cli.video import (
    EncodeOptions,
    VideoReader,
    VideoWriter,
    probe,
    write_synthetic_clip,
)
from instantvir_cli.vmaf import vmaf_score, vmaf_unavailable


@dataclass
class SpeedReport:
    """End-to-end timing of one restore run at a given size (JSON-ready via `as_dict`).

    e2e_fps: frames / wall time of the whole restore (decode, restore, encode).
    model_fps: frames / time inside the restorer (for InstantViR: init, VAE encode, student,
        VAE decode, consistency; `stages` has each).
    passthrough_fps: a plain decode + encode of the clean clip with the same encoder settings, the
        fastest of PASSTHROUGH_RUNS (a busy machine slows the short pass most; the ratio errs high).
    model: what was timed: "classical", "checkpoint:<path>" or "random:<dit>+<vae>".
    precision: how the model ran: "fp32", "fp32, student linears int8" (the CPU's auto), ...
    """

    task: str
    model: str
    device: str
    width: int
    height: int
    frames: int
    e2e_fps: float
    model_fps: float
    seconds: float
    first_frame_s: float | None
    peak_rss_mb: float
    stages: dict[str, float]
    passthrough_fps: float
    threads: int = field(default_factory=torch.get_num_threads)
    compare: dict[str, float | str] = field(default_factory=dict)
    precision: str = "fp32"
    cpu: str = field(default_factory=lambda: cpu_info().describe())
    kernels: str = ""

    @property
    def time_ratio(self) -> float:
        """Restore time over the same clip's plain decode + encode time: passthrough / e2e fps."""
        return self.passthrough_fps / self.e2e_fps if self.e2e_fps > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "time_ratio": self.time_ratio}


@dataclass
class QualityReport(Quality):
    """`metrics.Quality` of a test video against its reference, with both paths, and VMAF
    (model vmaf_v0.6.1, mean over frames; None with `vmaf_note` saying why where unavailable)."""

    reference: str = ""
    test: str = ""
    vmaf: float | None = None
    vmaf_note: str = ""


def parse_resolution(text: str) -> tuple[int, int]:
    """'832x480' -> (832, 480)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"resolution must look like 832x480, got {text!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise UsageError(f"resolution {w}x{h} is out of range (16..8192 per side)")
    return w, h


PASSTHROUGH_RUNS = 3   # plain decode + encode passes per timing; the fastest is kept


def passthrough_fps(path: Path, encode: EncodeOptions, workdir: Path) -> float:
    """Frames per second of a plain decode + encode of `path` with the same encoder settings."""
    info = probe(path)
    t0 = time.perf_counter()
    frames = 0
    with VideoReader(path) as reader, VideoWriter(
        workdir / f"passthrough{path.suffix}", info.width, info.height, source=reader, options=encode, overwrite=True
    ) as writer:
        for block in reader:
            writer.write(block.x, block.pts)
            frames += block.x.shape[2]
    return frames / (time.perf_counter() - t0)


def bench_speed(
    width: int,
    height: int,
    frames: int,
    task: str,
    opts: RestoreOptions,
    encode: EncodeOptions,
    on_progress: Callable[[int, int | None], None] | None = None,
    compare_with: tuple[str, ...] = (),
    dps_steps: int = 50,
) -> SpeedReport:
    """Time `vir restore` end to end on a generated `width` x `height` clip of `frames` frames.

    width/height are the OUTPUT size (for sr4x the input is 4x smaller).
    """
    if task == "sr4x" and (width % 4 or height % 4):
        raise UsageError(f"sr4x needs a resolution divisible by 4, got {width}x{height}")
    model = describe_model(opts)  # fails fast when there is no checkpoint
    with tempfile.TemporaryDirectory(prefix="vir-bench-") as tmp:
        work = Path(tmp)
        clean = work / "clean.mp4"
        write_synthetic_clip(clean, width, height, frames)
        degraded = work / "degraded.mp4"
        degrade_video(clean, degraded, DegradeOptions(task=task), EncodeOptions(crf=12))
        report = restore_video(
            degraded, work / "restored.mp4", dataclasses.replace(opts, task=task), encode,
            on_progress=on_progress,
        )
        peak = peak_rss_mb()
        base = max(passthrough_fps(clean, encode, work) for _ in range(PASSTHROUGH_RUNS))
        compare: dict[str, float | str] = {}
        if "dps" in compare_with:
            compare.update(compare_dps(clean, degraded, task, opts, dps_steps))
        if "wan-vae" in compare_with:
            compare.update(compare_wan_vae(width, height, frames, opts.vae or _vae_of(opts)))
    restore_s = report.stages.get("restore", 0.0)
    return SpeedReport(
        task=task,
        model=model,
        device=opts.device,
        width=width,
        height=height,
        frames=report.frames,
        e2e_fps=report.fps,
        model_fps=report.frames / restore_s if restore_s > 0 else float("nan"),
        seconds=report.seconds,
        first_frame_s=report.first_frame_s,
        peak_rss_mb=peak,
        stages=report.stages,
        passthrough_fps=base,
        compare=compare,
        precision=report.precision,
        kernels=kernels_used(report.precision, opts.device),
    )


def kernels_used(precision: str, device: str) -> str:
    """Which kernels ran, in words: torch's CPU dispatch level, and the int8 engine when used."""
    if torch.device(device).type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(torch.device(device))})"
    words = f"fp32 {cpu_info().torch_capability}"
    if "int8" in precision:
        words += f", int8 {torch.backends.quantized.engine} engine" + (
            " (VNNI)" if {"avx512_vnni", "avx_vnni"} & set(cpu_info().isa) else " (no VNNI)")
    return words


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe_model(opts: RestoreOptions) -> str:
    """What a bench run timed: classical, a checkpoint file, or random weights of presets."""
    if opts.model == "classical":
        return "classical"
    if opts.arch or opts.vae:
        d = opts.decode
        extra = (f" init={d.init}" if d.init != "operator" else "") + (" residual" if d.residual else "") + (
            " delta" if d.delta else "")
        return f"random:{opts.arch or 'small-p4'}+{opts.vae or 'small'}{extra}"
    return f"checkpoint:{find_checkpoint(opts.checkpoint)}"


def _vae_of(opts: RestoreOptions) -> str:
    """The VAE preset name of the checkpoint bench times (for --compare wan-vae)."""
    if opts.model == "classical":
        return "small"
    return read_header(find_checkpoint(opts.checkpoint)).get("vae_preset", "small")


def _load_clip(path: Path) -> torch.Tensor:
    """A whole (short) video as (1, C, T, H, W)."""
    with VideoReader(path, block_size=64) as reader:
        return torch.cat([b.x for b in reader], 2)


def compare_dps(clean: Path, degraded: Path, task: str, opts: RestoreOptions, steps: int) -> dict:
    """The one-step student against DPS with `steps` steps over the same architecture, on one clip.

    DPS runs the student's own architecture and weights as a bidirectional DiT (for random
    weights: the same random weights); both sides run in fp32 (DPS differentiates through the
    network, which int8 linears cannot) on the same measurement, timed on the model alone (no
    file decoding or encoding), and both are scored against the clean clip.
    """
    y = _load_clip(degraded)
    T = 1 + 4 * ((y.shape[2] - 1) // 4)                      # DPS works on whole VAE clips
    y = y[:, :, :T].to(opts.device)
    x = _load_clip(clean)[:, :, :T].to(opts.device)
    info = probe(degraded)
    op, _ = resolve_operator(degraded, info, RestoreOptions(task=task), Sidecar.read(degraded, info))
    if opts.arch or opts.vae:
        r = random_restorer(op, opts.arch or "small-p4", opts.vae or "small", device=opts.device,
                            spec=opts.decode, precision="fp32")
        weights = "random"
    else:
        r = learned_restorer(op, opts.checkpoint, device=opts.device, precision="fp32")
        weights = "the student's, bidirectional"
    student = r.student

    def bidirectional(z: torch.Tensor, t: float) -> torch.Tensor:   # the DiT's mask-free forward
        return DiT.forward(student, z, t)

    t0 = time.perf_counter()
    x_student = restore_tensor(r, y)
    student_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_dps = dps_restore(op, y, r.vae, bidirectional, steps=steps)
    dps_s = time.perf_counter() - t0
    scores = {}
    for name, out in (("student", x_student), ("dps", x_dps)):
        meter = QualityMeter()
        meter.update(x, out)
        scores[f"{name}_psnr"] = meter.result().psnr
    return {"dps_steps": steps, "dps_frames": T, "dps_weights": weights, "dps_precision": "fp32",
            "student_fps_fp32": T / student_s, "dps_fps": T / dps_s, "speedup_vs_dps": dps_s / student_s,
            **scores}


def compare_wan_vae(width: int, height: int, frames: int, vae_preset: str) -> dict:
    """Encode + decode time of Wan2.1's VAE (diffusers, random weights, full-size config) vs ours."""
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise UsageError("--compare wan-vae needs diffusers: pip install 'instantvir-cli[ref]'") from None
    from instantvir_cli.models.vae import LeanVAE, vae_config

    T = 1 + 4 * ((frames - 1) // 4)
    x = torch.rand(1, 3, T, height - height % 8, width - width % 8) * 2 - 1
    ours = LeanVAE(vae_config(vae_preset)).eval()
    wan = AutoencoderKLWan().eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        ours.decode(ours.encode(x))
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        wan.decode(wan.encode(x).latent_dist.mode()).sample
        t_wan = time.perf_counter() - t0
    return {"vae": vae_preset, "vae_s": t_ours, "wan_vae_s": t_wan, "vae_frames": T, "vae_speedup": t_wan / t_ours}


@torch.inference_mode()
def bench_quality(
    reference: Path, test: Path, on_progress: Callable[[int, int | None], None] | None = None,
    with_vmaf: bool = True,
) -> QualityReport:
    """PSNR / SSIM / flicker of `test` against `reference`, frame by frame, streamed; then VMAF
    (`vmaf.vmaf_score`, a second pass through ffmpeg) unless `with_vmaf` is False."""
    for p in (reference, test):
        check_input_path(p)
    ref_info, test_info = probe(reference), probe(test)
    if (ref_info.width, ref_info.height) != (test_info.width, test_info.height):
        raise UsageError(
            f"sizes differ: reference {ref_info.width}x{ref_info.height}, test {test_info.width}x{test_info.height}"
        )
    meter = QualityMeter()
    done = 0
    with VideoReader(reference) as ref_reader, VideoReader(test) as test_reader:
        ref_iter, test_iter = _frames(ref_reader), _frames(test_reader)
        while True:
            a, b = next(ref_iter, None), next(test_iter, None)
            if a is None or b is None:
                if (a is None) != (b is None):
                    raise UsageError(f"frame counts differ: the {'test' if b is None else 'reference'} ends at frame {done}")
                break
            meter.update(a, b)
            done += 1
            if on_progress and done % 8 == 0:
                on_progress(done, ref_info.frames)
    r = meter.result()
    vmaf, note = None, vmaf_unavailable() or ""
    if with_vmaf and not note:
        try:
            vmaf = vmaf_score(reference, test, threads=torch.get_num_threads())
        except RuntimeError as err:
            note = str(err)
    return QualityReport(psnr=r.psnr, ssim=r.ssim, flicker=r.flicker, frames=r.frames,
                         reference=str(reference), test=str(test), vmaf=vmaf,
                         vmaf_note=note if with_vmaf else "not asked for")


def _frames(reader: VideoReader):
    """Yield single frames (1, C, 1, H, W) from a reader's blocks (block sizes may differ)."""
    for block in reader:
        for t in range(block.x.shape[2]):
            yield block.x[:, :, t : t + 1]
