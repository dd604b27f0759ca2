"""torch's intra-op thread count for a stretch of work, restored afterwards.

The classical restorers and the learned path each say how many threads they run best on
(`Restorer.threads`); the restore path and the initial estimate apply it with `torch_threads`.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with `n` intra-op threads (None or 0: leave torch's setting), restoring it afterwards."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


__all__ = ["torch_threads"]
