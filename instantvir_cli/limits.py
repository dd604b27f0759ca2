"""The documented limits of what vir reads, and the checks that enforce them before any work.

Values come from sidecars (`sidecar.py`), checkpoint headers (`models/checkpoint.py`), distill
configs (`config.py`) and video headers (`video/info.py`). Each check names the key, the allowed
range and the value it got, in one line, and raises the error class of the source: ConfigError
for a sidecar or a config (exit 9), CheckpointError for a checkpoint (exit 8), UsageError for a
command-line value (exit 2), InputUnreadable for a video (exit 4).

    integer("operator.kernel_size", 1000001, 1, KERNEL_SIZE_MAX, ConfigError, where="sidecar x.vir.json")
    -> ConfigError("sidecar x.vir.json: operator.kernel_size: expected an integer in [1, 1023], got 1000001")

Frames: at most `max_pixels()` pixels (8192 x 4320 by default; `VIR_MAX_PIXELS=N` changes it),
checked on the video's header before a frame is decoded, and on every output size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from instantvir_cli.errors import InputUnreadable, UsageError, VirError

ENV_MAX_PIXELS = "VIR_MAX_PIXELS"
MAX_PIXELS_DEFAULT = 8192 * 4320        # 35.4 MP: 8K UHD (7680 x 4320) fits

# operators (sidecar values, distill configs, flags)
KERNEL_SIZE_MAX = 1023                  # deblur kernel side (odd); the default is 61
SIGMA_RANGE = (0.05, 100.0)             # deblur Gaussian sigma in pixels; below 0.05 the kernel underflows to 0/0
SIGMA_Y_MAX = 1.0                       # measurement noise std on [-1, 1]
SR_SCALES = (4,)                        # the sr4x task is 4x
SEED_MAX = 2**63 - 1
MASK_FRAMES_MAX = 1 << 20               # frames of a per-frame mask recorded in a sidecar
SIDECAR_BYTES_MAX = 64 << 20            # a sidecar is JSON of an operator (an inline mask at most)

# models (checkpoint headers, [vae.model] / [teacher.model] of a config); Wan2.1-14B fits
DIT_INTS = {"dim": (8, 8192), "depth": (1, 128), "heads": (1, 128), "ffn_dim": (1, 65536),
            "in_channels": (1, 1024), "out_channels": (1, 1024), "freq_dim": (2, 4096), "text_dim": (0, 16384)}
DIT_FLOATS = {"eps": (1e-12, 0.1), "rope_theta": (1.0, 1e9)}
DIT_PATCH = (1, 16)
DIT_BOOLS = ("cross_attn_norm", "qk_norm")
VAE_INTS = {"latent_channels": (1, 256), "dim_low": (1, 4096), "dim_high": (1, 4096), "depth_band": (0, 64),
            "depth_fusion": (0, 64), "ista_iters": (1, 64), "ista_depth": (1, 64), "patch_t": (1, 8),
            "patch_hw": (1, 16), "in_channels": (1, 16)}
VAE_FLOATS = {"ffn_mult": (1e-3, 16.0), "pixel_scale": (1e-3, 100.0)}
BLOCK_FRAMES = (1, 64)                  # latent frames per causal block
CACHE_BLOCKS_MAX = 4096                 # earlier blocks a student attends (None / -1: all)

# distill configs
CROP_MAX = 2048                         # training crop and validation size, pixels a side
WINDOW_FRAMES_MAX = 1025                # frames of a training window / validation clip (1 + 4k)
THREADS_MAX = 1024
WORKERS_MAX = 256
STEPS_MAX = 10**9
BATCH_MAX = 1 << 16
NETWORK_TIMEOUT_S = 10.0                # --timeout's default: seconds a URL may stay silent
MINUTES_MAX = 1e6                       # run.max_minutes, --max-minutes (about two years)
SAMPLE_STEPS_MAX = 1000                 # teacher sampler steps of an ODE pair ([ode] sample_steps)
ODE_POINTS_MAX = 16                     # trajectory points an ODE pair keeps ([ode] timesteps)


def _where(where: str, key: str) -> str:
    return f"{where}: {key}" if where else key


def max_pixels() -> int:
    """Pixels a frame may have: `$VIR_MAX_PIXELS` or MAX_PIXELS_DEFAULT. UsageError on a bad value."""
    raw = os.environ.get(ENV_MAX_PIXELS)
    if raw is None or raw == "":
        return MAX_PIXELS_DEFAULT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{ENV_MAX_PIXELS} must be a positive integer (pixels per frame), got {raw!r}")
    return value


def check_frame_size(width: int, height: int, what: str, error: type[VirError] = InputUnreadable) -> None:
    """Refuse frames of more than `max_pixels()` pixels, or with a side < 1, before they are allocated."""
    if width < 1 or height < 1:
        raise error(f"{what} has an empty frame size {width}x{height}")
    limit = max_pixels()
    if width * height > limit:
        raise error(f"{what} has {width}x{height} frames ({width * height / 1e6:.1f} MP), over vir's limit of "
                    f"{limit / 1e6:.1f} MP a frame (set {ENV_MAX_PIXELS} to change it)")


def integer(key: str, value: Any, lo: int, hi: int, error: type[VirError], where: str = "",
            odd: bool = False) -> int:
    """`value` if it is an integer (not a bool) in [lo, hi] (and odd, with `odd`); else `error`."""
    kind = "an odd integer" if odd else "an integer"
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi or (odd and value % 2 == 0):
        raise error(f"{_where(where, key)}: expected {kind} in [{lo}, {hi}], got {_show(value)}")
    return value


def number(key: str, value: Any, lo: float, hi: float, error: type[VirError], where: str = "",
           lo_open: bool = False) -> float:
    """`value` as a float if it is a finite number in [lo, hi] ((lo, hi] with `lo_open`); else `error`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        raise error(f"{_where(where, key)}: expected a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                    f"got {_show(value)}")
    return float(value)


def boolean(key: str, value: Any, error: type[VirError], where: str = "") -> bool:
    if not isinstance(value, bool):
        raise error(f"{_where(where, key)}: expected true or false, got {_show(value)}")
    return value


def string(key: str, value: Any, error: type[VirError], where: str = "", choices: tuple[str, ...] = (),
           max_len: int = 4096) -> str:
    """`value` if it is a string (one of `choices` when given) of at most `max_len` characters."""
    if not isinstance(value, str) or len(value) > max_len or (choices and value not in choices):
        want = f"one of {', '.join(choices)}" if choices else "a string"
        raise error(f"{_where(where, key)}: expected {want}, got {_show(value)}")
    return value


def table(key: str, value: Any, error: type[VirError], where: str = "") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise error(f"{_where(where, key)}: expected a table (JSON object), got {_show(value)}")
    return value


def model_fields(d: Any, ints: Mapping[str, tuple[int, int]], floats: Mapping[str, tuple[float, float]],
                 error: type[VirError], where: str, prefix: str, bools: tuple[str, ...] = ()) -> None:
    """Check the ranged fields of a model config dict (DIT_* / VAE_*); other keys are left to the
    dataclass, which rejects unknown ones."""
    table(prefix, d, error, where)
    for k in d:          # the dataclass names unknown fields raw: a key must be one it could have
        if not (isinstance(k, str) and k.isidentifier()):
            raise error(f"{_where(where, prefix + '.' + key_name(k))}: not a field name")
    for k, (lo, hi) in ints.items():
        if k in d and not (k == "text_dim" and d[k] is None):
            integer(f"{prefix}.{k}", d[k], lo, hi, error, where)
    for k, (lo, hi) in floats.items():
        if k in d:
            number(f"{prefix}.{k}", d[k], lo, hi, error, where)
    if "patch" in d and ints is DIT_INTS:
        p = d["patch"]
        if not isinstance(p, (list, tuple)) or len(p) != 3:
            raise error(f"{_where(where, prefix + '.patch')}: expected 3 integers in [{DIT_PATCH[0]}, "
                        f"{DIT_PATCH[1]}], got {_show(p)}")
        for i, v in enumerate(p):
            integer(f"{prefix}.patch[{i}]", v, *DIT_PATCH, error, where)
    for k in bools:
        if k in d:
            boolean(f"{prefix}.{k}", d[k], error, where)


def student_fields(d: Any, error: type[VirError], where: str, prefix: str) -> None:
    """Check a StudentConfig dict (block_frames, cache_blocks, s_star)."""
    table(prefix, d, error, where)
    for k in d:
        if not (isinstance(k, str) and k.isidentifier()):
            raise error(f"{_where(where, prefix + '.' + key_name(k))}: not a field name")
    if "block_frames" in d:
        integer(f"{prefix}.block_frames", d["block_frames"], *BLOCK_FRAMES, error, where)
    if d.get("cache_blocks") is not None:
        integer(f"{prefix}.cache_blocks", d["cache_blocks"], 0, CACHE_BLOCKS_MAX, error, where)
    if "s_star" in d:
        number(f"{prefix}.s_star", d["s_star"], 0.0, 1.0, error, where, lo_open=True)


def available_memory() -> int | None:
    """Bytes the kernel can hand out now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, hint: str, error: type[VirError] = InputUnreadable) -> None:
    """Refuse an allocation of `nbytes` (estimated before it is made) that the machine can't hold."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise error(f"{what} needs {nbytes / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of memory "
                    f"available: {hint}")


def key_name(key: Any) -> str:
    """A key as a message may show it: itself when it is a plain name, else its repr (one line)."""
    text = str(key)
    if text and text.isprintable() and " " not in text and len(text) <= 40:
        return text
    return repr(key)[:40]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["BATCH_MAX", "BLOCK_FRAMES", "CACHE_BLOCKS_MAX", "CROP_MAX", "DIT_FLOATS", "DIT_INTS", "DIT_BOOLS", "DIT_PATCH",
           "ENV_MAX_PIXELS", "KERNEL_SIZE_MAX", "MASK_FRAMES_MAX", "MAX_PIXELS_DEFAULT", "MINUTES_MAX", "SEED_MAX",
           "SIDECAR_BYTES_MAX", "SIGMA_RANGE", "SIGMA_Y_MAX", "SR_SCALES", "STEPS_MAX", "THREADS_MAX",
           "VAE_FLOATS", "VAE_INTS", "WINDOW_FRAMES_MAX", "WORKERS_MAX", "available_memory", "boolean",
           "check_frame_size", "check_memory", "integer", "key_name", "max_pixels", "model_fields", "number",
           "student_fields", "string", "table"]
