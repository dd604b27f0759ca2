"""Properties of vir's parsers under generated values (hypothesis): whatever a sidecar, a checkpoint
header, a distill config or a mask file holds, reading it either succeeds with values inside the
documented ranges, or raises the documented error (one line): never another exception, never a
value that costs more memory than the limits allow.

Each `check_*` takes one generated input and returns the outcome's name ("ok" or "exit-N"); a
broken property raises AssertionError (or the unexpected exception itself). `test_fuzz.py` and
`scripts/fuzz.py` run them with hypothesis.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from instantvir_cli import limits as L
from instantvir_cli.errors import VirError

# ----------------------------------------------------------------------------- values
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 3, 4, 61, 1023, 1024, 2**31, 2**63, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1e-300, 1e300, 0.5, 3.0, -1.0]),
    st.text(max_size=12), st.sampled_from(["abc", "inpaint", "deblur", "sr4x", "area", "bicubic", "", "../x"]),
)
_json = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=4)),
                     max_leaves=12)


def mutated(base: dict, keys: list[str]):
    """Strategy: `base` with some keys set to generated JSON values, some removed, some added."""
    return st.tuples(
        st.dictionaries(st.sampled_from(keys), _json, max_size=3),
        st.lists(st.sampled_from(keys), max_size=2),
        st.dictionaries(st.text(max_size=6), _json, max_size=1),
    ).map(lambda t: {**{k: v for k, v in base.items() if k not in t[1]}, **t[0], **(t[2] if len(t[2]) else {})})


def _one_line(e: BaseException) -> None:
    assert isinstance(e, VirError), f"{type(e).__name__}: {e}"
    assert "\n" not in str(e) and str(e), repr(str(e))


# ----------------------------------------------------------------------------- sidecars
@dataclass
class FakeInfo:
    width: int = 160
    height: int = 96


SIDECAR_OPS = {
    "inpaint": {"task": "inpaint", "height": 96, "width": 160, "sigma_y": 0.0, "ratio": 0.5, "seed": 0},
    "deblur": {"task": "deblur", "height": 96, "width": 160, "kernel_size": 61, "sigma": 3.0, "sigma_y": 0.0},
    "sr4x": {"task": "sr4x", "height": 384, "width": 640, "kernel": "area", "scale": 4, "sigma_y": 0.0},
}
OP_KEYS = sorted({k for op in SIDECAR_OPS.values() for k in op} | {"mask_shape", "mask_bits", "mask_file",
                                                                    "mask_sha256", "mask_frames", "consistency"})


def sidecars():
    """Strategy: sidecar documents (a dict, or now and then raw text) around valid ones."""
    op = st.sampled_from(list(SIDECAR_OPS)).flatmap(lambda t: mutated(SIDECAR_OPS[t], OP_KEYS))
    top = st.builds(lambda o, extra: {"format": 1, "vir_version": "0.1.0", "noise_seed": 0, "operator": o,
                                      "source": {"width": 160, "height": 96, "frames": 24}, **extra},
                    op, st.dictionaries(st.sampled_from(["format", "noise_seed", "source", "operator", "x"]),
                                        _json, max_size=1))
    return st.one_of(top, top, top, st.text(max_size=40), _json)


def check_sidecar(doc: Any) -> str:
    """Read `doc` as the sidecar of a 160x96 video; if it is accepted, build its operator."""
    from instantvir_cli.ops import operator_from_dict
    from instantvir_cli.sidecar import Sidecar

    with tempfile.TemporaryDirectory() as d:
        video = Path(d) / "v.mkv"
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (Path(d) / "v.mkv.vir.json").write_text(text)
        try:
            sc = Sidecar.read(video, FakeInfo())
        except Exception as e:  # noqa: BLE001 - the property: only VirError, in one line
            _one_line(e)
            return f"exit-{e.exit_code}"
    op = sc.operator
    assert op["width"] * op["height"] <= L.max_pixels()
    if op.get("mask_file"):
        return "ok"
    try:
        built = operator_from_dict(op)
    except Exception as e:  # noqa: BLE001
        _one_line(e)
        return f"exit-{e.exit_code}"
    assert math.isfinite(built.sigma_y) and 0 <= built.sigma_y <= L.SIGMA_Y_MAX
    return "ok"


# ----------------------------------------------------------------------------- checkpoint headers
def _base_header() -> dict:
    return {"format": "instantvir-cli/1", "storage": "fp32",
            "modules": {"vae": {"tensors": 10, "params": 100}, "student_deblur": {"tensors": 10, "params": 100}},
            "vae": {"latent_channels": 4, "dim_low": 16, "dim_high": 16, "depth_band": 1, "depth_fusion": 1},
            "dit": {"dim": 48, "depth": 2, "heads": 2, "ffn_dim": 96, "in_channels": 4, "out_channels": 4,
                    "patch": [1, 2, 2]},
            "tasks": {"deblur": {"module": "student_deblur", "student": {"block_frames": 3, "cache_blocks": 6,
                                                                       "s_star": 0.522},
                                 "operator": {"task": "deblur"}, "consistency": True, "init": "operator",
                                 "residual": False, "delta": False, "correction_ema": 0.0}}}


HEADER_KEYS = ["format", "storage", "modules", "vae", "dit", "tasks", "latent_scale", "provenance", "student"]


def headers():
    """Strategy: checkpoint headers, mutated at the top and one level down."""
    base = _base_header()
    inner = st.sampled_from(["vae", "dit", "tasks"]).flatmap(
        lambda k: st.builds(lambda sub: {**base, k: sub}, mutated(base[k], list(base[k]) + ["x"])))
    entry = mutated(base["tasks"]["deblur"], list(base["tasks"]["deblur"]) + ["vae_module"]).map(
        lambda e: {**base, "tasks": {"deblur": e}})
    return st.one_of(mutated(base, HEADER_KEYS), inner, entry, entry)


def check_header(h: Any) -> str:
    """`check_header`, then (if accepted) the models the restorer builds from it (`header_models`,
    on the meta device), as `learned_restorer` does."""
    from instantvir_cli.learned import header_models
    from instantvir_cli.models.checkpoint import check_header as check

    try:
        if not isinstance(h, dict):
            return "exit-8"          # read_header refuses a non-object before check_header
        check(h, "crafted.safetensors")
        entry = h.get("tasks", {}).get("deblur")
        if entry is None or "vae" not in h or "dit" not in h:
            return "ok"
        header_models(h, entry, "crafted.safetensors")
    except Exception as e:  # noqa: BLE001
        _one_line(e)
        return f"exit-{e.exit_code}"
    return "ok"


# ----------------------------------------------------------------------------- distill configs
def _tiny() -> dict:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((Path(__file__).resolve().parents[2] / "configs" / "tiny.toml").read_text())


def configs():
    """Strategy: the tiny config with keys of its tables (and [*.model]) replaced."""
    base = _tiny()
    tables = [k for k, v in base.items() if isinstance(v, dict)] + ["vae.model", "teacher.model",
                                                                  "student.causal", "student.deblur"]

    def put(t, sub):
        out = json.loads(json.dumps(base))
        head, _, tail = t.partition(".")
        target = out.setdefault(head, {})
        if tail:
            target[tail] = sub
        else:
            out[head] = sub
        return out

    keys = {"run": ["threads", "seed", "log_every", "stages", "device"], "data": ["crop", "frames", "workers",
            "val_size", "image_share", "min_scale"], "vae": ["steps", "batch", "lr", "preset", "model"],
            "teacher": ["steps", "shift", "preset", "ema"], "student": ["steps", "tasks", "correction_ema", "init"],
            "vae.model": ["dim_low", "dim_high", "latent_channels", "patch_hw", "ffn_mult"],
            "teacher.model": ["dim", "heads", "depth", "patch", "eps", "text_dim"],
            "student.causal": ["block_frames", "cache_blocks", "s_star"],
            "student.deblur": ["kernel_size", "sigma", "sigma_y"]}
    return st.sampled_from(tables).flatmap(lambda t: mutated(dict(_sub(base, t)), keys.get(t, ["x"])).map(
        lambda sub: put(t, sub)))


def _sub(base: dict, t: str) -> dict:
    head, _, tail = t.partition(".")
    v = base.get(head, {})
    return v.get(tail, {}) if tail else v


def check_config(d: dict) -> str:
    """The config's load and its `--dry-run` checks (no data, no training)."""
    from instantvir_cli.config import DistillConfig, from_dict
    from instantvir_cli.distill.trainer import check_config as cross_check

    try:
        cfg = from_dict(DistillConfig, d)
        cross_check(cfg)
    except Exception as e:  # noqa: BLE001
        _one_line(e)
        return f"exit-{e.exit_code}"
    assert 8 <= cfg.data.crop <= L.CROP_MAX and 0 <= cfg.run.threads <= L.THREADS_MAX
    assert L.BLOCK_FRAMES[0] <= cfg.student.causal.block_frames <= L.BLOCK_FRAMES[1]
    return "ok"


# ----------------------------------------------------------------------------- masks
def masks():
    """Strategy: (kind, size, data): a PNG of a generated size and content, or random bytes."""
    size = st.one_of(st.just((24, 16)), st.just((24, 16)), st.tuples(st.integers(1, 40), st.integers(1, 40)))
    png = st.builds(lambda s, seed, mode: ("png", s, seed, mode), size, st.integers(0, 2**16),
                    st.sampled_from(["gray", "rgb24", "rgba"]))
    junk = st.builds(lambda b: ("bytes", None, b, None), st.binary(max_size=300))
    cut = st.builds(lambda s, seed, n: ("cut", s, seed, n), size, st.integers(0, 2**16), st.integers(1, 200))
    return st.one_of(png, png, junk, cut)


def check_mask(m) -> str:
    """Load the generated mask for a 24x16 video: MaskInvalid, or a (16, 24) bool mask."""
    import av
    import numpy as np

    from instantvir_cli.masks import load_mask

    kind, size, data, extra = m
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mask.png"
        if kind == "bytes":
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
        else:
            w, h = size
            channels = {"gray": 1, "rgb24": 3, "rgba": 4}.get(extra, 1)
            arr = np.random.default_rng(data).integers(0, 2, (h, w, channels), dtype=np.uint8) * 255
            fmt = extra if kind == "png" else "gray"
            arr = arr[..., 0] if fmt == "gray" else arr
            with av.open(str(path), "w", format="image2") as c:
                s = c.add_stream("png", rate=1)
                s.width, s.height, s.pix_fmt = w, h, fmt
                for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)):
                    c.mux(p)
                for p in s.encode():
                    c.mux(p)
            if kind == "cut":
                raw = path.read_bytes()
                path.write_bytes(raw[: max(1, len(raw) - extra)])
        try:
            src = load_mask(path, 16, 24)
        except Exception as e:  # noqa: BLE001
            _one_line(e)
            return f"exit-{e.exit_code}"
        mask = src.static_mask()
        src.close()
    assert tuple(mask.shape) == (16, 24) and str(mask.dtype) == "torch.bool"
    return "ok"


PARSERS = {"sidecar": (sidecars, check_sidecar), "checkpoint-header": (headers, check_header),
           "config": (configs, check_config), "mask": (masks, check_mask)}
# the documented exit code of each parser's refusals (README: sidecar 9, checkpoint 8, config 9, mask 7)
EXIT_CODES = {"sidecar": 9, "checkpoint-header": 8, "config": 9, "mask": 7}

__all__ = ["EXIT_CODES", "PARSERS", "check_config", "check_header", "check_mask", "check_sidecar", "configs", "headers",
           "masks", "sidecars"]
