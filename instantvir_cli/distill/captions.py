"""Captions of the training clips and the text contexts of a run (a text-conditioned teacher).

    caps = find_captions(sources, cfg.data)          # {source name: caption}
    text = RunText.from_config(cfg, device)          # one TextEncoder per run, prompts cached
    ctx, neg = text.contexts(["a cat", ...]), text.negative()   # (B, 512, D), (1, 512, D)

A source's caption, in order: a text file beside a video (`clip.mp4` -> `clip.txt`, its first
non-empty line ... all of it, stripped), `[data.captions]` by source name (a clip's stem, a
footage or photograph name), then `data.caption`. The negative prompt is `student.negative_prompt`,
or Wan2.1's own default when that is empty; the empty prompt "" is the unconditional caption of
the teacher's caption dropout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from instantvir_cli.errors import ConfigError
from instantvir_cli.models.text import WAN_NEGATIVE_PROMPT, TextEncoder


def caption_file(video: str | Path) -> Path:
    return Path(video).with_suffix(".txt")


def find_captions(sources, data) -> dict[str, str]:
    """{name: caption} of every training and validation source (see the module docstring)."""
    out: dict[str, str] = {}
    for src in (*sources.train_videos, *sources.val):
        f = caption_file(src.path)
        text = ""
        if f.is_file():
            try:
                text = f.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"caption file unreadable: {f}: {err}") from None
        out[src.name] = text or str(data.captions.get(src.name, "")) or data.caption
    for src in sources.train_images:
        out[src.name] = str(data.captions.get(src.name, "")) or data.caption
    bad = [k for k in data.captions if k not in out]
    if bad:
        raise ConfigError(f"data.captions: no source named {', '.join(map(repr, bad))} "
                          f"(sources: {', '.join(out) or 'none'})")
    return out


class RunText:
    """The run's text encoder and its prompts' contexts, each encoded once (models.text.TextEncoder)."""

    def __init__(self, encoder: TextEncoder, negative_prompt: str, device: torch.device):
        self.encoder, self.device = encoder, device
        self.negative_prompt = negative_prompt or WAN_NEGATIVE_PROMPT

    @classmethod
    def from_config(cls, cfg, device: torch.device) -> RunText | None:
        from instantvir_cli.distill.weights import resolve_path

        if not cfg.text.encoder:
            return None
        tok = resolve_path(cfg.text.tokenizer, "text.tokenizer") if cfg.text.tokenizer else None
        enc = TextEncoder.load(resolve_path(cfg.text.encoder, "text.encoder"), tok, cfg.text.length)
        return cls(enc, cfg.student.negative_prompt, device)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def contexts(self, prompts: list[str]) -> Tensor:
        """(B, length, D) on the run's device."""
        return self.encoder.embed(list(prompts)).to(self.device)

    def negative(self) -> Tensor:
        """(1, length, D): the negative prompt's context."""
        return self.contexts([self.negative_prompt])

    def empty(self) -> Tensor:
        """(1, length, D): the empty prompt's context (the teacher's caption dropout)."""
        return self.contexts([""])


__all__ = ["RunText", "caption_file", "find_captions"]
