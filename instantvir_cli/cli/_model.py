"""Model options shared by `restore` and `bench` (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Model = Annotated[str, typer.Option("--model", "-m", help="Restorer: instantvir (the learned model) | classical.")]
Checkpoint = Annotated[
    Optional[Path], typer.Option("--checkpoint", help="Learned model weights (.safetensors).", envvar="VIR_CHECKPOINT")
]
BlockFrames = Annotated[int, typer.Option("--block-frames", min=1, max=256, help="Frames per processing block.")]
Precision = Annotated[
    str, typer.Option("--precision", help="instantvir: auto (bf16 on CUDA; on CPU fp32 with the student's linears in int8) | fp32 | int8 | bf16 | fp16.")
]
