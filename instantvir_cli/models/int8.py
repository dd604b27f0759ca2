"""Dynamic int8 linear layers for CPU inference of the student.

Each chosen `nn.Linear` becomes torch's dynamically quantized linear: weights stored as int8
with one scale per output row, activations quantized to 8 bits on the fly per call, the
product accumulated in int32 and rescaled in the same kernel (fbgemm / oneDNN, VNNI where the
CPU has it). The student's transformer blocks are nearly all such layers.

Where the CPU has VNNI this makes the student faster at nearly the same output (docs/results.md
has the figures). The VAE stays fp32: its activations after the gated GELU are badly served by
one 8-bit range per call, and int8 cost measurable quality there (docs/experiments.md).

Training never uses this: quantized layers have no gradients. It is an inference transform,
`quantize_linears(model)`, applied to a model built for restoring only.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from instantvir_cli.cpu import cpu_info

__all__ = ["Int8Choice", "int8_available", "int8_pays", "quantize_linears", "is_quantized"]

# int8 is chosen only when it is clearly faster: below this ratio the measurement's noise decides
MIN_SPEEDUP = 1.1


def _engine() -> str | None:
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "onednn") if e in engines), None)


def int8_available() -> bool:
    """Whether this torch build can run dynamic int8 linears on the CPU."""
    try:
        from torch.ao.nn.quantized.dynamic import Linear  # noqa: F401
    except ImportError:
        return False
    return _engine() is not None


def is_quantized(module: nn.Module) -> bool:
    """Whether `module` holds any dynamic int8 linear."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return any(isinstance(m, QLinear) for m in module.modules())


def quantize_linears(model: nn.Module, include: Callable[[str], bool] = lambda name: name.startswith("blocks.")) -> int:
    """Replace, in place, every `nn.Linear` of `model` whose qualified name passes `include`
    by a dynamic int8 linear (per-row weight scales). Returns how many were replaced.

    The default takes the transformer blocks (attention q/k/v/o and the MLP) and leaves the
    small time-embedding and patch layers, which other code reads `.weight` of, in fp32.
    `model` must be on the CPU and in eval mode; it is frozen afterwards.
    """
    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    engine = _engine()
    if engine is None:
        raise RuntimeError("this torch build has no quantized CPU engine (x86, fbgemm or onednn)")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise RuntimeError("int8 linears run on the CPU only")
    torch.backends.quantized.engine = engine
    chosen = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear and include(name)]
    with warnings.catch_warnings():    # torch marks this eager-mode path deprecated in favour of torchao
        warnings.simplefilter("ignore")
        for name, lin in chosen:
            lin.qconfig = per_channel_dynamic_qconfig
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, QLinear.from_float(lin))
    model.eval().requires_grad_(False)
    return len(chosen)


@dataclass(frozen=True)
class Int8Choice:
    """The measured cost of one transformer MLP (dim -> ffn -> dim over `tokens` rows) in fp32 and
    in dynamic int8 on this CPU, best of several calls, and whether int8 is worth it."""

    fp32_ms: float
    int8_ms: float
    cpu: str

    @property
    def faster(self) -> bool:
        return self.int8_ms * MIN_SPEEDUP < self.fp32_ms


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vir" / "int8-choice.json"


def _best_ms(fs: list[Callable[[], object]], rounds: int = 5, repeats: int = 3) -> list[float]:
    """The fastest call of each of `fs`, in milliseconds, the functions taking turns so that a
    busy moment of the machine slows them alike."""
    for f in fs:
        f()
    best = [float("inf")] * len(fs)
    for _ in range(rounds):
        for i, f in enumerate(fs):
            for _ in range(repeats):
                t0 = time.perf_counter()
                f()
                best[i] = min(best[i], time.perf_counter() - t0)
    return [1e3 * b for b in best]


_MEASURED: dict[str, Int8Choice] = {}


@torch.inference_mode()
def int8_pays(dim: int, ffn_dim: int, tokens: int = 1536) -> Int8Choice:
    """Measure (once per CPU kind, torch version and shape; cached in ~/.cache/vir) whether dynamic
    int8 linears beat fp32 for a student of width `dim` and feed-forward width `ffn_dim`.

    Where the CPU has VNNI the int8 kernels usually win; on AVX2-only CPUs they often do not.
    A cached answer can be dropped by deleting the cache file.
    """
    info = cpu_info()
    key = f"{info.key}|torch {torch.__version__}|{dim}x{ffn_dim}x{tokens}"
    if key in _MEASURED:
        return _MEASURED[key]
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(key) if isinstance(cached, dict) else None
    if isinstance(entry, dict) and set(entry) == {"fp32_ms", "int8_ms", "cpu"}:
        choice = Int8Choice(**entry)
    else:
        g = torch.Generator().manual_seed(0)
        def mlp() -> nn.Module:
            return nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim)).eval()

        fp32, int8 = mlp(), mlp()
        quantize_linears(int8, include=lambda name: True)
        x = torch.randn(tokens, dim, generator=g)
        fp32_ms, int8_ms = _best_ms([lambda: fp32(x), lambda: int8(x)])
        choice = Int8Choice(fp32_ms=fp32_ms, int8_ms=int8_ms, cpu=info.describe())
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = asdict(choice)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass                      # a read-only home: measure again next time
    _MEASURED[key] = choice
    return choice
