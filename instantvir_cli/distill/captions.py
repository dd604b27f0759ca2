"""Captions of the training clips, and the run's text contexts: every prompt encoded once, at start-up.

    caps = find_captions(sources, cfg.data)                # {source name: caption}
    files = caption_files(sources)                         # {CLIP.txt: its text}, checked before a run writes
    text = RunText.prepare(cfg, run_prompts(cfg, caps), env, out / TEXT_FILE)
    ctx, neg = text.contexts(["a cat", ...]), text.negative()   # (B, 512, D), (1, 512, D) float32

A source's caption, in order: a text file beside a video (`CLIP.mp4` -> `CLIP.txt`, all of it,
stripped), `[data.captions]` by source name (a clip's stem, a footage or photograph name), then
`data.caption`. The negative prompt is `student.negative_prompt`, or Wan2.1's own default when
that is empty; the empty prompt "" is the unconditional caption of the teacher's caption dropout.

Every prompt a run can ask for is known before it trains: the sources' captions, "", the negative
prompt and the student's prompt. `RunText.prepare` loads the text encoder once (umT5-XXL: 5.7 B
parameters, in `models.text.encoder_dtype`: bf16 on CUDA, fp32 on the CPU), on rank 0 only,
encodes them all, and frees it (no reference kept, the CUDA cache emptied) before any stage model
is built: the encoder never shares memory with training. Each context is kept as its prompt's
own rows (n_i, D) in the encoder's dtype and padded back to `length` with zeros on lookup, which
is bit for bit what `TextEncoder.encode` returns. The contexts are saved in the run folder
(`text.pt`: keyed by prompt, with the encoder's identity and the length); the other ranks read
them there, and so does `--resume`, which therefore sees the contexts the run started with
without loading the encoder; only prompts the file lacks (a caption added since) are encoded, and
a changed encoder or length encodes them all anew.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch
from torch import Tensor

from instantvir_cli.errors import ConfigError
from instantvir_cli.models.text import WAN_NEGATIVE_PROMPT, TextEncoder, encoder_source, pad_rows

TEXT_FILE = "text.pt"                       # the run's text contexts, in the run folder
TEXT_FORMAT = "vir-text-contexts/1"
ENCODE_BATCH = 8                            # prompts a text-encoder pass


def caption_file(video: str | Path) -> Path:
    return Path(video).with_suffix(".txt")


def read_caption(video: str | Path) -> str | None:
    """The stripped text of the caption file beside `video`, or None when there is none."""
    f = caption_file(video)
    if not f.is_file():
        return None
    try:
        return f.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"caption file unreadable: {f}: {err}") from None


def caption_files(sources) -> dict[Path, str]:
    """{caption file: its text} of every training and validation video that has one."""
    out = {}
    for src in (*sources.train_videos, *sources.val):
        text = read_caption(src.path)
        if text is not None:
            out[caption_file(src.path)] = text
    return out


def find_captions(sources, data) -> dict[str, str]:
    """{name: caption} of every training and validation source (see the module docstring)."""
    out: dict[str, str] = {}
    for src in (*sources.train_videos, *sources.val):
        out[src.name] = read_caption(src.path) or str(data.captions.get(src.name, "")) or data.caption
    for src in sources.train_images:
        out[src.name] = str(data.captions.get(src.name, "")) or data.caption
    bad = [k for k in data.captions if k not in out]
    if bad:
        raise ConfigError(f"data.captions: no source named {', '.join(map(repr, bad))} "
                          f"(sources: {', '.join(out) or 'none'})")
    return out


def run_prompts(cfg, captions: dict[str, str]) -> list[str]:
    """Every prompt a run can ask for, each once: captions, "", the negative and the student's prompt."""
    negative = cfg.student.negative_prompt or WAN_NEGATIVE_PROMPT
    return list(dict.fromkeys([*captions.values(), "", negative, cfg.student.prompt]))


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def encode_prompts(encoder: TextEncoder, prompts: list[str]) -> dict[str, Tensor]:
    """{prompt: its rows (n, D)}, ENCODE_BATCH prompts a pass."""
    out = {}
    for i in range(0, len(prompts), ENCODE_BATCH):
        chunk = prompts[i:i + ENCODE_BATCH]
        out.update(zip(chunk, encoder.encode_rows(chunk)))
    return out


class RunText:
    """The text contexts of a run, encoded at start-up (see the module docstring); no encoder kept.

    Args:
        rows: {prompt: (n, D)} each prompt's own rows.
        length: the context length (Wan: 512).
        source: the encoder's identity and tokenizer folder (`models.text.encoder_source`).
        negative_prompt: the uncond prompt of the guided real score ("" = Wan2.1's default).
        device: where contexts are returned.
    """

    def __init__(self, rows: dict[str, Tensor], length: int, source: dict, negative_prompt: str,
                 device: torch.device):
        self.rows, self.length, self.source, self.device = rows, length, source, device
        self.negative_prompt = negative_prompt or WAN_NEGATIVE_PROMPT
        self.dim = int(next(iter(rows.values())).shape[-1])

    @classmethod
    def prepare(cls, cfg, prompts: list[str], env, path: Path | None) -> RunText | None:
        """The contexts of `prompts`: read from `path` (text.pt) where it has them, the rest encoded
        on rank 0 with an encoder loaded for it and freed; `path` then rewritten (None: kept in
        memory only, one process). None for a run without [text] encoder."""
        from instantvir_cli.atomic import atomic_write
        from instantvir_cli.distill.weights import resolve_path

        if not cfg.text.encoder:
            return None
        enc_path = resolve_path(cfg.text.encoder, "text.encoder")
        tok = resolve_path(cfg.text.tokenizer, "text.tokenizer") if cfg.text.tokenizer else None
        source = encoder_source(enc_path, tok)
        rows: dict[str, Tensor] = {}
        if env.main:
            rows = _read(path, source, cfg.text.length)
            new = [p for p in prompts if p not in rows]
            if new:
                encoder = TextEncoder.load(enc_path, tok, cfg.text.length, env.device)
                rows.update(encode_prompts(encoder, new))
                del encoder                 # the only reference: umT5 leaves memory before training starts
                _free(env.device)
                if path is not None:
                    data = {"format": TEXT_FORMAT, "source": source, "length": cfg.text.length, "rows": rows}
                    atomic_write(path, lambda tmp: torch.save(data, tmp), lock=False)
        if env.world > 1:
            env.barrier()
            if not env.main:
                rows = _read(path, source, cfg.text.length)
        return cls(rows, cfg.text.length, source, cfg.student.negative_prompt, env.device)

    def contexts(self, prompts: list[str]) -> Tensor:
        """(B, length, D) float32 on the run's device."""
        missing = [p for p in prompts if p not in self.rows]
        if missing:
            raise KeyError(f"prompt {missing[0]!r} was not encoded at start-up (captions.run_prompts)")
        return pad_rows([self.rows[p] for p in prompts], self.length).to(self.device)

    def negative(self) -> Tensor:
        """(1, length, D): the negative prompt's context."""
        return self.contexts([self.negative_prompt])

    def empty(self) -> Tensor:
        """(1, length, D): the empty prompt's context (the teacher's caption dropout)."""
        return self.contexts([""])


def _read(path: Path | None, source: dict, length: int) -> dict[str, Tensor]:
    """The rows saved in `path` if it holds contexts of this encoder at this length, else {}."""
    if path is None or not path.is_file():
        return {}
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file
        raise ConfigError(f"cannot resume: {path} is unreadable ({err})") from None
    if not isinstance(data, dict) or data.get("format") != TEXT_FORMAT:
        raise ConfigError(f"cannot resume: {path} is not a {TEXT_FORMAT} file")
    if data["source"] != source or data["length"] != length:
        return {}
    return dict(data["rows"])


__all__ = ["ENCODE_BATCH", "TEXT_FILE", "RunText", "caption_file", "caption_files", "encode_prompts", "find_captions",
           "read_caption", "run_prompts"]
