"""What CPU this is, read from the machine and never assumed: its model name, the vector
instruction sets that decide which kernels are fast (AVX2, AVX-512, VNNI, AMX), and the
instruction set torch's own kernels dispatch to.

Machines of one kind differ: some have AVX-512 with VNNI (int8 dot products in one instruction),
some only AVX2, and fp32 or int8 speed differs about 2x between them. `vir bench` prints this
beside its timings; `models.int8` measures, per CPU, whether int8 pays.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# the flags that matter here, in the order they are printed
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CPUInfo:
    model: str                  # e.g. "AMD EPYC 9B14" (what /proc/cpuinfo says)
    isa: tuple[str, ...]        # the ISA_FLAGS this CPU has
    torch_capability: str       # torch's dispatch level, e.g. "AVX512", "AVX2", "DEFAULT"
    cores: int                  # logical CPUs torch may use

    def describe(self) -> str:
        """One line: model, instruction sets, torch's dispatch level."""
        return f"{self.model} ({', '.join(self.isa) or 'no AVX2'}; torch kernels: {self.torch_capability})"

    @property
    def key(self) -> str:
        """Identifies the CPU kind for cached measurements."""
        return f"{self.model}|{','.join(self.isa)}|{self.torch_capability}|{self.cores}"


def _cpuinfo_fields(text: str) -> tuple[str, set[str]]:
    model, flags = "", set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU (Linux: /proc/cpuinfo; elsewhere what `platform` says, no flags)."""
    model, flags = "", set()
    try:
        model, flags = _cpuinfo_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return CPUInfo(model=model or platform.processor() or platform.machine() or "unknown CPU",
                   isa=tuple(f for f in ISA_FLAGS if f in flags), torch_capability=str(capability),
                   cores=torch.get_num_threads())


__all__ = ["ISA_FLAGS", "CPUInfo", "cpu_info"]
