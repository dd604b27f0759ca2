"""The initial estimate x0 = init(y) that the student's VAE encodes (METHOD §2).

    operator   the operator's own pseudo-inverse: observed pixels with zeros in the holes,
               the blurred frame, or bicubic upsampling (the paper's choice)
    classical  the tuned classical restorer of `instantvir_cli.classical` (the best baseline)
    fast       the same restorers with their refinement cut short, for real-time budgets:
               sr4x back-projection as is, deblur Wiener with one TV iteration instead of
               four, inpaint normalized convolution without the CG steps (docs/experiments.md
               has what each costs and gives)

With a classical estimate the student can decode a residual (`learned.InstantViRRestorer`,
`residual=True`): x = x0 + D(z_hat) - D(E(x0)). The VAE's reconstruction error then cancels to
first order, and a student that changes nothing returns x0 exactly.
"""

from __future__ import annotations

import torch

from instantvir_cli.classical import DeblurParams, InpaintParams, classical_restorer
from instantvir_cli.errors import UsageError
from instantvir_cli.ops import Operator
from instantvir_cli.threads import torch_threads

INITS = ("operator", "classical", "fast")


def fast_params(task: str):
    """The classical parameters of the `fast` estimate (None: the defaults, as for sr4x)."""
    return {"deblur": DeblurParams(tv_iters=1), "inpaint": InpaintParams(cg_iters=0)}.get(task)


class InitialEstimate:
    """x0 = init(y) for one stream: (B, C, T, h, w) measurement -> (B, C, T, H, W) in [-1, 1].

    `op` is read at every call, so a mask video may swap it between blocks. The classical
    restorers keep their per-size precomputations between calls.
    """

    def __init__(self, kind: str = "operator"):
        if kind not in INITS:
            raise UsageError(f"unknown initial estimate {kind!r} (choose one of: {', '.join(INITS)})")
        self.kind = kind
        self._restorer = None

    def __call__(self, op: Operator, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "operator":
            return op.init(y)
        if self._restorer is None or self._restorer.op.task != op.task:
            self._restorer = classical_restorer(op, fast_params(op.task) if self.kind == "fast" else None)
        self._restorer.op = op
        # the thread count the classical restorers ask for (classical.FrameRestorer)
        with torch.no_grad(), torch_threads(self._restorer.threads):
            return self._restorer.push(y)


__all__ = ["INITS", "InitialEstimate", "fast_params"]
