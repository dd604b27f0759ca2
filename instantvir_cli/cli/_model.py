"""Model options shared by `restore` and `bench` (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instantvir_cli.cli import _help

Model = Annotated[str, typer.Option("--model", "-m", metavar=_help.MODELS,
                                    help="instantvir: the learned model; classical: the classical restorers.")]
Checkpoint = Annotated[
    Optional[Path], typer.Option("--checkpoint", help="Learned model weights (.safetensors).", envvar="VIR_CHECKPOINT")
]
BlockFrames = Annotated[int, typer.Option("--block-frames", min=1, max=256, help="Frames per processing block.")]
Init = Annotated[
    Optional[str], typer.Option("--init", metavar="operator|classical|fast", show_default=False,
                                help="instantvir: the initial estimate the student starts from (default: the "
                                "checkpoint's). fast is quicker; classical flickers less (docs/results.md)."),
]
StillEma = Annotated[
    Optional[float], typer.Option("--still-ema", metavar="B", show_default=False,
                                  help="instantvir: how much the learned change keeps of the last frame's where the "
                                  "picture stands still (0 = off; default: the checkpoint's). Steadier still shots; "
                                  "0 if slow motion ghosts (docs/results.md)."),
]
Precision = Annotated[
    str, typer.Option("--precision", metavar=_help.PRECISIONS,
                      help="instantvir: auto is bf16 on CUDA, and on the CPU fp32 with the student's linears in int8."),
]
