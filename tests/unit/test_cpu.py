"""The CPU is read, never assumed."""

from __future__ import annotations

from instantvir_cli import cpu

INTEL = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8 amx_bf16 avx512_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu
"""
AVX2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_flags_and_model_come_from_the_first_processor():
    model, flags = cpu._cpuinfo_fields(INTEL)
    assert model == "Intel(R) Xeon(R) Platinum 8488C"
    assert {"avx512_vnni", "amx_int8"} <= flags and "sse2" in flags
    assert cpu._cpuinfo_fields(AVX2)[1] >= {"avx2", "fma"} and "avx512f" not in cpu._cpuinfo_fields(AVX2)[1]


def test_this_machine_is_described_with_its_own_flags():
    info = cpu.cpu_info()
    text = open("/proc/cpuinfo").read()
    _, flags = cpu._cpuinfo_fields(text)
    assert set(info.isa) == {f for f in cpu.ISA_FLAGS if f in flags}
    assert info.model in text and info.model in info.describe()
    assert info.torch_capability in info.describe()
