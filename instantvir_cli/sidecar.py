"""The `OUT.vir.json` sidecar: the exact operator `vir degrade` applied, so `vir restore` can undo it.

    {"format": 1, "vir_version": "0.1.0", "noise_seed": 0,
     "operator": {"task": "deblur", "height": 96, "width": 160, "kernel_size": 61, "sigma": 3.0, "sigma_y": 0.0},
     "source": {"path": "/clips/in.mp4", "width": 160, "height": 96, "crop": [0, 0, 160, 96], "frames": 12}}

Every value is checked when the sidecar is read, before any work (`Sidecar.read`), against the
ranges of `limits.py`; a bad one is ConfigError (exit 9) naming the key and the allowed range:

    task         inpaint | deblur | sr4x
    height/width integers >= 1, the video's frame size (sr4x: 4 times it), at most VIR_MAX_PIXELS pixels
    sigma_y      [0, 1]
    deblur       kernel_size: an odd integer in [1, 1023]; sigma: [0.05, 100]
    sr4x         kernel: area | bicubic; scale: 4
    inpaint      one of: ratio [0, 1] + seed [0, 2^63 - 1] (the random mask);
                 mask_shape [H, W] or [T, H, W] + mask_bits (the mask inline, base64 of its bits);
                 mask_file + mask_sha256 (+ mask_frames): a mask video beside the degraded one
    noise_seed   [0, 2^63 - 1]

The mask_file rule: `mask_file` is a path relative to the sidecar's folder that stays inside it (no
absolute path, no `..`, no symlink out of it), and `mask_sha256` is the SHA-256 of that file. A
sidecar that breaks the rule is refused (exit 9) without the named path being touched; a mask
file that is missing or whose hash differs is a mask error (exit 7). `vir degrade --mask` writes an
image mask inline and a mask video as a mask_file, which must then lie in (or below) the output's
folder.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from instantvir_cli import __version__
from instantvir_cli import limits as L
from instantvir_cli.atomic import AtomicOutput, atomic_write
from instantvir_cli.errors import ConfigError, MaskInvalid, OutputRefused, UsageError
from instantvir_cli.paths import sidecar_path

SIDECAR_FORMAT = 1
TOP_KEYS = {"format", "vir_version", "noise_seed", "operator", "source"}
SOURCE_KEYS = {"path", "width", "height", "crop", "frames"}
COMMON_KEYS = {"task", "height", "width", "sigma_y"}
TASK_KEYS = {"inpaint": {"ratio", "seed", "mask_shape", "mask_bits", "mask_file", "mask_sha256", "mask_frames"},
             "deblur": {"kernel_size", "sigma"}, "sr4x": {"kernel", "scale"}}
SIDE_MAX = 1 << 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Sidecar:
    """What a degraded video came from and which operator made it.

    operator: the operator's `to_dict()` (task, sizes, seed or mask, sigma_y, ...).
    source: facts about the clean input (path, width, height, crop applied before A, frames).
    noise_seed: seed of the measurement noise (only meaningful when sigma_y > 0).
    """

    operator: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    noise_seed: int = 0
    vir_version: str = __version__
    format: int = SIDECAR_FORMAT

    def text(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, video: Path, output: AtomicOutput | None = None) -> Path:
        """Write the sidecar of `video`: into `output` (committed by its owner, with the video), or
        on its own, atomically. Returns the sidecar path."""
        path = sidecar_path(video)
        if output is not None:
            tmp = output.temp(path)
            try:
                tmp.write_text(self.text(), encoding="utf-8")
            except OSError as e:
                raise OutputRefused(f"can't write {path}: {e.strerror or e}") from None
            return path
        return atomic_write(path, lambda tmp: tmp.write_text(self.text(), encoding="utf-8"))

    @classmethod
    def read(cls, video: Path, info=None) -> "Sidecar | None":
        """The sidecar of `video` (None when there is none), every value checked (module docstring).

        info: the video's `VideoInfo`: the operator's size must match its frames.
        Raises ConfigError (exit 9) naming the key and the allowed range.
        """
        path = sidecar_path(Path(video))
        if not path.is_file():
            return None
        where = f"sidecar {path.name}"
        try:
            size = path.stat().st_size
            if size > L.SIDECAR_BYTES_MAX:
                raise ConfigError(f"{where} is {size} bytes, more than the {L.SIDECAR_BYTES_MAX} a sidecar may have")
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else " ".join(str(exc).split())[:160]
            raise ConfigError(f"{where} is not readable JSON: {reason}") from None
        sidecar = cls._from_data(data, where)
        if info is not None:
            sidecar.check_video(info, where)
        return sidecar

    @classmethod
    def _from_data(cls, data: Any, where: str) -> "Sidecar":
        L.table("the file", data, ConfigError, where)
        unknown = sorted(map(str, set(data) - TOP_KEYS))
        if unknown:
            raise ConfigError(f"{where}: {L.key_name(unknown[0])}: unknown key (known: {', '.join(sorted(TOP_KEYS))})")
        if "operator" not in data:
            raise ConfigError(f"{where}: operator: missing (the operator vir degrade applied)")
        fmt = L.integer("format", data.get("format", 1), 1, 1 << 30, ConfigError, where)
        if fmt > SIDECAR_FORMAT:
            raise ConfigError(f"{where}: format: {fmt} is newer than this vir reads ({SIDECAR_FORMAT})")
        version = L.string("vir_version", data.get("vir_version", "?"), ConfigError, where, max_len=64)
        noise_seed = L.integer("noise_seed", data.get("noise_seed", 0), 0, L.SEED_MAX, ConfigError, where)
        operator = check_operator(data["operator"], where)
        source = check_source(data.get("source", {}), where)
        return cls(operator=dict(operator), source=dict(source), noise_seed=noise_seed, vir_version=version,
                   format=fmt)

    def check_video(self, info, where: str) -> None:
        """The operator's frame size must be the video's (4x for sr4x): ConfigError otherwise."""
        op = self.operator
        scale = op.get("scale", 4) if op["task"] == "sr4x" else 1
        want = (info.width * scale, info.height * scale)
        if (op["width"], op["height"]) != want:
            what = f"{scale} times the video's {info.width}x{info.height}" if scale > 1 else \
                f"the video's {info.width}x{info.height}"
            raise ConfigError(f"{where}: operator.width/height: {op['width']}x{op['height']} does not match "
                              f"{what}: the sidecar belongs to another video")

    def mask_path(self, video: Path) -> Path:
        """The mask file the operator names, confined to the sidecar's folder, its hash checked.

        Raises ConfigError (the path leaves the folder), MaskInvalid (missing, or another file
        than the one recorded: its sha256 differs).
        """
        name = self.operator.get("mask_file")
        folder = Path(video).parent
        where = f"sidecar {sidecar_path(Path(video)).name}"
        path = confined(name, folder, where)
        if not path.is_file():
            raise MaskInvalid(f"mask not found: {name} (named by {sidecar_path(Path(video)).name}, beside the video)")
        from instantvir_cli.hashing import file_sha256

        try:
            digest = file_sha256(path)
        except OSError as e:
            raise MaskInvalid(f"mask unreadable: {name}: {e.strerror or e}") from None
        if digest != self.operator.get("mask_sha256"):
            raise MaskInvalid(f"mask {name} is not the file the sidecar recorded: its sha256 differs "
                              f"(pass --mask to use it anyway)")
        return path


RULE = "a path relative to the sidecar's folder that stays inside it"


def check_mask_name(name: Any, where: str) -> str:
    """`name` if it has the form the mask_file rule allows: relative, no `..` (module docstring)."""
    if not isinstance(name, str) or not name or len(name) > 4096 or "\0" in name:
        raise ConfigError(f"{where}: operator.mask_file: expected {RULE}, got {name!r}"[:300])
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise ConfigError(f"{where}: operator.mask_file: expected {RULE}, got {name!r} (pass --mask to use "
                          f"another file)"[:300])
    return name


def confined(name: Any, folder: Path, where: str) -> Path:
    """`folder / name` when `name` is a relative path that stays inside `folder` (symlinks resolved)."""
    check_mask_name(name, where)
    base = folder.resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise ConfigError(f"{where}: operator.mask_file: {name!r} leads out of the sidecar's folder (a symlink); "
                          f"expected {RULE}"[:300])
    return path


def mask_reference(mask: Path, video: Path) -> str:
    """How a sidecar beside `video` names the mask video `mask`: its path relative to the video's
    folder. UsageError when the mask is not in (or below) that folder."""
    base = Path(video).resolve().parent
    path = Path(mask).resolve()
    if base not in path.parents:
        raise UsageError(f"the mask video {mask} must be in the output's folder {base} (or below it): the sidecar "
                         f"names it relative to that folder; copy it there")
    return path.relative_to(base).as_posix()


# ----------------------------------------------------------------------------- value checks
def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def check_source(src: Any, where: str) -> dict[str, Any]:
    L.table("source", src, ConfigError, where)
    unknown = sorted(set(src) - SOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: source.{L.key_name(unknown[0])}: unknown key (known: "
                          f"{', '.join(sorted(SOURCE_KEYS))})")
    if "path" in src:
        L.string("source.path", src["path"], ConfigError, where)
    for k in ("width", "height"):
        if k in src:
            L.integer(f"source.{k}", src[k], 1, SIDE_MAX, ConfigError, where)
    if "frames" in src:
        L.integer("source.frames", src["frames"], 0, 1 << 40, ConfigError, where)
    if "crop" in src:
        crop = src["crop"]
        if not isinstance(crop, list) or len(crop) != 4:
            raise ConfigError(f"{where}: source.crop: expected [x0, y0, width, height], got {crop!r}"[:200])
        for i, v in enumerate(crop):
            L.integer(f"source.crop[{i}]", v, 0, SIDE_MAX, ConfigError, where)
    return src


def check_operator(op: Any, where: str) -> dict[str, Any]:
    """Check an operator spec (`Operator.to_dict()`); returns it. ConfigError naming the key."""
    from instantvir_cli.ops import TASKS

    L.table("operator", op, ConfigError, where)
    task = L.string("operator.task", op.get("task"), ConfigError, where, choices=TASKS)
    unknown = sorted(set(op) - COMMON_KEYS - TASK_KEYS[task])
    if unknown:
        raise ConfigError(f"{where}: operator.{L.key_name(unknown[0])}: unknown key for {task} "
                          f"(known: {', '.join(sorted(COMMON_KEYS | TASK_KEYS[task]))})")
    for k in ("height", "width"):
        if k not in op:
            raise ConfigError(f"{where}: operator.{k}: missing (the frame size the operator was built for)")
        L.integer(f"operator.{k}", op[k], 1, SIDE_MAX, ConfigError, where)
    L.check_frame_size(op["width"], op["height"], f"{where}: the operator", ConfigError)
    L.number("operator.sigma_y", op.get("sigma_y", 0.0), 0.0, L.SIGMA_Y_MAX, ConfigError, where)
    if task == "deblur":
        L.integer("operator.kernel_size", op.get("kernel_size", 61), 1, L.KERNEL_SIZE_MAX, ConfigError, where,
                  odd=True)
        L.number("operator.sigma", op.get("sigma", 3.0), *L.SIGMA_RANGE, ConfigError, where)
    elif task == "sr4x":
        L.string("operator.kernel", op.get("kernel", "area"), ConfigError, where, choices=("area", "bicubic"))
        scale = op.get("scale", 4)
        if isinstance(scale, bool) or scale not in L.SR_SCALES or not isinstance(scale, int):
            raise ConfigError(f"{where}: operator.scale: expected {', '.join(map(str, L.SR_SCALES))} (the sr4x "
                              f"task is 4x), got {scale!r}"[:200])
        for k in ("height", "width"):
            if op[k] % scale:
                raise ConfigError(f"{where}: operator.{k}: {op[k]} is not a multiple of the scale {scale}")
    else:
        _check_inpaint(op, where)
    return op


def _check_inpaint(op: dict[str, Any], where: str) -> None:
    kinds = [k for k, keys in (("random", ("ratio", "seed")), ("inline", ("mask_shape", "mask_bits")),
                               ("file", ("mask_file", "mask_sha256", "mask_frames"))) if any(key in op for key in keys)]
    if len(kinds) > 1:
        raise ConfigError(f"{where}: operator: a mask is either random (ratio, seed), inline (mask_shape, "
                          f"mask_bits) or a file (mask_file, mask_sha256), not {' and '.join(kinds)}")
    kind = kinds[0] if kinds else "random"
    if kind == "random":
        L.number("operator.ratio", op.get("ratio", 0.5), 0.0, 1.0, ConfigError, where)
        L.integer("operator.seed", op.get("seed", 0), 0, L.SEED_MAX, ConfigError, where)
    elif kind == "inline":
        shape = op.get("mask_shape")
        ok = isinstance(shape, list) and len(shape) in (2, 3) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in shape)
        if not ok or list(shape[-2:]) != [op["height"], op["width"]]:
            raise ConfigError(f"{where}: operator.mask_shape: expected [{op['height']}, {op['width']}] or "
                              f"[T, {op['height']}, {op['width']}], got {shape!r}"[:200])
        if len(shape) == 3:
            L.integer("operator.mask_shape[0]", shape[0], 1, L.MASK_FRAMES_MAX, ConfigError, where)
        bits = op.get("mask_bits")
        need = math.ceil(math.prod(shape) / 8)
        if not isinstance(bits, str) or len(bits) > 4 * math.ceil(need / 3) + 4:
            raise ConfigError(f"{where}: operator.mask_bits: expected the base64 of {need} bytes")
        try:
            n = len(base64.b64decode(bits, validate=True))
        except (binascii.Error, ValueError):
            n = -1
        if n != need:
            raise ConfigError(f"{where}: operator.mask_bits: expected the base64 of {need} bytes (the mask's "
                              f"{math.prod(shape)} bits), got {'invalid base64' if n < 0 else f'{n} bytes'}")
    else:
        check_mask_name(op.get("mask_file"), where)     # (resolved against the video's folder at use)
        digest = op.get("mask_sha256")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ConfigError(f"{where}: operator.mask_sha256: expected the 64 hex digits of the mask file's "
                              f"SHA-256, got {digest!r}"[:200])
        if op.get("mask_frames") is not None:
            L.integer("operator.mask_frames", op["mask_frames"], 1, L.MASK_FRAMES_MAX, ConfigError, where)


__all__ = ["SIDECAR_FORMAT", "Sidecar", "check_mask_name", "check_operator", "confined", "mask_reference"]
