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

import warnings
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["int8_available", "quantize_linears", "is_quantized"]


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
