"""Keep big buffers in the process: glibc malloc settings for frame-sized tensors.

A frame at 832x480 is a 4.8 MB float tensor, and the classical estimates and the VAE allocate and
free dozens of them per frame. glibc serves such sizes with fresh mmap()s (or trims the freed heap
top back to the kernel), so each one comes back as new zeroed pages: a page fault per 4 KiB on
first touch. Raising the mmap threshold and the trim threshold lets freed buffers be reused from
the heap. Peak memory stays bounded by the block size, not the video length, and rises by about
a tenth; the per-frame time of the estimates falls (docs/results.md has both). A larger trim
threshold would keep more, but then peak memory creeps with the video's length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc <malloc.h>
MMAP_THRESHOLD = 32 << 20     # glibc's largest: allocations below 32 MiB come from the heap
TRIM_THRESHOLD = 256 << 20     # keep up to 256 MiB of freed heap top instead of returning it
TOP_PAD = 64 << 20            # grow the heap 64 MiB at a time (address space, not resident memory)
DISABLE_ENV = "VIR_DEFAULT_MALLOC"  # set to 1 to leave glibc's defaults (for A/B timing)


def tune_malloc() -> bool:
    """Apply the settings above on Linux with glibc; True if glibc accepted all three."""
    if not sys.platform.startswith("linux") or os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
