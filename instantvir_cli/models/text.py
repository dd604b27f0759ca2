"""The text encoder of Wan2.1: umT5-XXL's encoder, through transformers' `UMT5EncoderModel`.

    enc = TextEncoder.load("Wan2.1-T2V-1.3B-Diffusers")          # text_encoder/ + tokenizer/
    enc = TextEncoder.load("models_t5_umt5-xxl-enc-bf16.pth", tokenizer="google/umt5-xxl")
    ctx = enc.embed(["a red car", "a cat"])                      # (2, 512, 4096), cached per prompt

Weights come in two layouts, both loaded strictly (a missing, unexpected or misshapen key is a
CheckpointError naming it):

- diffusers / transformers: a folder with `config.json` and `*.safetensors` (sharded with an
  index, or one file), as `Wan-AI/Wan2.1-T2V-1.3B-Diffusers/text_encoder/` ships it; a model
  root holding `text_encoder/` and `tokenizer/` works too.
- Wan's own `models_t5_umt5-xxl-enc-bf16.pth` (its `T5Encoder`, wan/modules/t5.py), read with
  `torch.load(weights_only=True)` and mapped key by key (`WAN_T5_KEYS`); the architecture is
  read from the shapes (the head count from the relative-position tables).

The tokenizer is always a local folder (`AutoTokenizer.from_pretrained(..., local_files_only=True)`);
nothing is ever fetched. Prompts are cleaned as Wan cleans them (HTML entities, runs of white
space), tokenized with the end-of-sequence token, and encoded at Wan's length of 512 tokens; as
in Wan's `T5EncoderModel` + `WanModel`, the outputs past a prompt's own tokens are ZERO (not the
encoder's outputs at padding positions). A prompt of more than 512 tokens is an error (Wan
truncates it silently). The encoder runs in bf16 on CUDA (as Wan runs it, and as its file stores
it) and in fp32 on the CPU (`encoder_dtype`); contexts are returned in fp32 either way.
transformers is an optional dependency (`pip install 'instantvir-cli[wan]'`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError
from .foreign import load_state_dict_file, read_config_json
from .strict import check_state_dict

TEXT_LENGTH = 512                   # Wan2.1's text_len
# Wan2.1's default negative prompt (wan/configs/shared_config.py, sample_neg_prompt)
WAN_NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
                       "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
                       "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")

# transformers' UMT5EncoderModel name -> Wan's T5Encoder name; {i} is the block index.
WAN_T5_KEYS = {
    "shared.weight": "token_embedding.weight",
    "encoder.final_layer_norm.weight": "norm.weight",
    "encoder.block.{i}.layer.0.layer_norm.weight": "blocks.{i}.norm1.weight",
    "encoder.block.{i}.layer.0.SelfAttention.q.weight": "blocks.{i}.attn.q.weight",
    "encoder.block.{i}.layer.0.SelfAttention.k.weight": "blocks.{i}.attn.k.weight",
    "encoder.block.{i}.layer.0.SelfAttention.v.weight": "blocks.{i}.attn.v.weight",
    "encoder.block.{i}.layer.0.SelfAttention.o.weight": "blocks.{i}.attn.o.weight",
    "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight": "blocks.{i}.pos_embedding.embedding.weight",
    "encoder.block.{i}.layer.1.layer_norm.weight": "blocks.{i}.norm2.weight",
    "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight": "blocks.{i}.ffn.gate.0.weight",   # GELU branch
    "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight": "blocks.{i}.ffn.fc1.weight",      # linear branch
    "encoder.block.{i}.layer.1.DenseReluDense.wo.weight": "blocks.{i}.ffn.fc2.weight",
}
_TIED = "encoder.embed_tokens.weight"          # transformers ties it to shared.weight


def _transformers():
    try:
        import transformers
    except ImportError:
        raise CheckpointError("a text encoder needs transformers: pip install 'instantvir-cli[wan]'") from None
    return transformers


def encoder_dtype(device: str | torch.device) -> torch.dtype:
    """The text encoder's dtype on `device`: bf16 on CUDA, fp32 elsewhere (no fast bf16 on these CPUs)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning (without ftfy): HTML entities undone, white space collapsed."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


#################################################################################
#                           Wan's layout -> transformers'                       #
#################################################################################


def umt5_config_from_wan(sd: dict[str, Tensor]):
    """The UMT5Config of a Wan T5Encoder state dict, from its shapes."""
    T = _transformers()
    try:
        vocab, dim = sd["token_embedding.weight"].shape
        layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
        d_ff = sd["blocks.0.ffn.fc1.weight"].shape[0]
        d_attn = sd["blocks.0.attn.q.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"not Wan's umT5 encoder: the state dict lacks {err}") from None
    return T.UMT5Config(vocab_size=vocab, d_model=dim, d_kv=d_attn // heads, num_heads=heads, d_ff=d_ff,
                        num_layers=layers, relative_attention_num_buckets=buckets,
                        relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                        layer_norm_epsilon=1e-6, dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)


def wan_t5_names(layers: int) -> dict[str, str]:
    """{transformers name: Wan name} for an encoder of `layers` blocks."""
    out = {}
    for ours, wan in WAN_T5_KEYS.items():
        if "{i}" in ours:
            out.update({ours.format(i=i): wan.format(i=i) for i in range(layers)})
        else:
            out[ours] = wan
    return out


def convert_wan_t5(sd: dict[str, Tensor], expected: dict[str, tuple]) -> dict[str, Tensor]:
    """Wan's T5Encoder state dict under transformers' names, checked strictly against `expected`
    (transformers' names -> shapes, the tied embedding excluded)."""
    names = wan_t5_names(len({k.split(".")[1] for k in sd if k.startswith("blocks.")}))
    check_state_dict({names[k]: v for k, v in expected.items() if k in names}, sd, "Wan umT5 encoder")
    missing = sorted(set(expected) - set(names))
    if missing:
        raise CheckpointError(f"Wan umT5 encoder: no Wan name for {', '.join(missing)}")
    return {k: sd[names[k]] for k in expected}


#################################################################################
#                                  The encoder                                  #
#################################################################################


def _locate(encoder: Path, tokenizer: Path | None) -> tuple[Path, Path]:
    """(weights, tokenizer folder) of a model root, a text_encoder/ folder or a Wan file."""
    if not encoder.exists():
        raise CheckpointError(f"text encoder not found: {encoder}")
    if encoder.is_dir() and (encoder / "text_encoder").is_dir():         # a diffusers model root
        return encoder / "text_encoder", tokenizer or encoder / "tokenizer"
    if tokenizer is None:
        for cand in (encoder.parent / "tokenizer", encoder.parent / "google" / "umt5-xxl", encoder):
            if cand.is_dir() and any(cand.glob("tokenizer*.json")):
                tokenizer = cand
                break
    if tokenizer is None:
        raise CheckpointError(f"{encoder}: no tokenizer folder beside it (tokenizer/ or google/umt5-xxl/): "
                              "name one with [text] tokenizer")
    return encoder, tokenizer


def load_tokenizer(folder: Path):
    """A tokenizer from a local folder only; CheckpointError naming the folder otherwise."""
    T = _transformers()
    if not folder.is_dir():
        raise CheckpointError(f"tokenizer folder not found: {folder}")
    try:
        return T.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable tokenizer folder
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{folder}: not a readable tokenizer folder ({first})") from None


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of `text` as the encoder sees it: cleaned, with the end-of-sequence token."""
    return len(tokenizer(clean_prompt(text), add_special_tokens=True)["input_ids"])


def load_umt5(weights: Path, dtype: torch.dtype = torch.float32):
    """transformers' UMT5EncoderModel from a diffusers/transformers folder or Wan's file (`dtype`, eval)."""
    T = _transformers()
    if weights.is_dir():
        cfg_file, raw = read_config_json(weights, "a transformers text_encoder/ folder")
        if raw.get("model_type") not in ("umt5", "t5"):
            raise CheckpointError(f"{cfg_file}: model_type {raw.get('model_type')!r}, expected 'umt5'")
        raw = {k: v for k, v in raw.items() if k not in ("architectures", "model_type", "transformers_version")}
        config = T.UMT5Config(**{**raw, "dropout_rate": 0.0, "use_cache": False})
        sd = load_state_dict_file(weights)
        wan = False
    else:
        sd = load_state_dict_file(weights)
        config = umt5_config_from_wan(sd)
        wan = True
    with torch.device("meta"):
        model = T.UMT5EncoderModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != _TIED}
    if wan:
        sd = convert_wan_t5(sd, expected)
    else:
        sd = {k: v for k, v in sd.items() if k != _TIED}
        check_state_dict(expected, sd, f"umT5 encoder of {weights}")
    sd = {k: v.to(dtype) for k, v in sd.items()}
    sd[_TIED] = sd["shared.weight"]
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    return model.eval().requires_grad_(False)


class TextEncoder:
    """Prompts -> Wan-style text contexts (B, length, D), zero past each prompt's tokens; cached.

    Args:
        model: a transformers UMT5EncoderModel (any width; umT5-XXL's D is 4096).
        tokenizer: its tokenizer (a transformers tokenizer).
        length: the context length (Wan: 512).
        source: where it came from ({"encoder": identity, "tokenizer": path}), for records.
    """

    def __init__(self, model, tokenizer, length: int = TEXT_LENGTH, source: dict | None = None):
        self.model, self.tokenizer, self.length = model, tokenizer, length
        self.source = source or {}
        self._cache: dict[str, Tensor] = {}

    @classmethod
    def load(cls, encoder: str | Path, tokenizer: str | Path | None = None, length: int = TEXT_LENGTH,
             device: str | torch.device = "cpu") -> TextEncoder:
        """From its files, in `encoder_dtype(device)` on `device`."""
        weights, tok = _locate(Path(encoder).expanduser(), Path(tokenizer).expanduser() if tokenizer else None)
        model = load_umt5(weights, encoder_dtype(device)).to(device)
        return cls(model, load_tokenizer(tok), length, encoder_source(encoder, tokenizer))

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """ids, mask: (B, length) int64, padded; ConfigError when a prompt has more than `length` tokens."""
        texts = [clean_prompt(p) for p in prompts]
        ids = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for p, seq in zip(prompts, ids):
            if len(seq) > self.length:
                shown = p if len(p) <= 60 else p[:57] + "..."
                raise ConfigError(f"prompt {shown!r} has {len(seq)} tokens, more than the text encoder's "
                                  f"{self.length}")
        pad = self.tokenizer.pad_token_id or 0
        out = torch.full((len(ids), self.length), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), self.length), dtype=torch.long)
        for b, seq in enumerate(ids):
            out[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[b, :len(seq)] = 1
        return out, mask

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """(B, length, D) float32 on the encoder's device; rows past each prompt's tokens are 0."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()   # (B, length, D)
        return h * mask[..., None].to(h.dtype)

    def encode_rows(self, prompts: list[str]) -> list[Tensor]:
        """Each prompt's own rows of `encode`, (n_i, D) in the encoder's dtype on the CPU (exact:
        `pad_rows` gives `encode` back bit for bit; the dtype cast loses nothing, bf16 -> fp32 -> bf16)."""
        _, mask = self.tokenize(prompts)
        h = self.encode(prompts).to(next(self.model.parameters()).dtype).cpu()        # (B, length, D)
        return [h[b, :int(n)].clone() for b, n in enumerate(mask.sum(1))]

    def embed(self, prompts: list[str] | str) -> Tensor:
        """Like `encode`, but each distinct prompt is encoded once per TextEncoder and kept (on the CPU)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            for p, e in zip(new, self.encode(new).cpu()):
                self._cache[p] = e
        return torch.stack([self._cache[p] for p in prompts])


def pad_rows(rows: list[Tensor], length: int = TEXT_LENGTH) -> Tensor:
    """(B, length, D) float32 from each prompt's rows (n_i, D), zero past them (Wan's padding)."""
    out = torch.zeros(len(rows), length, rows[0].shape[-1])
    for b, r in enumerate(rows):
        out[b, :r.shape[0]] = r.float()
    return out


def encoder_source(encoder: str | Path, tokenizer: str | Path | None = None) -> dict:
    """{"encoder": identity of the weights (path, size, content hash), "tokenizer": folder}: what a
    run and an export record of a text encoder, without loading it."""
    from .identity import weights_identity

    weights, tok = _locate(Path(encoder).expanduser(), Path(tokenizer).expanduser() if tokenizer else None)
    return {"encoder": weights_identity(weights), "tokenizer": str(tok.resolve())}


def prompt_context(record: dict, prompt: str, device: str | torch.device = "cpu") -> Tensor:
    """(1, length, D) context of `prompt` for a text student whose checkpoint recorded `record`
    (its header's `text`: encoder identity, tokenizer folder, length, dim).

    The encoder and tokenizer are the recorded paths, or `$VIR_TEXT_ENCODER` / `$VIR_TOKENIZER`
    when set (weights moved to another machine). CheckpointError when they are not there or do not
    produce the student's text width.
    """
    import os

    enc_path = os.environ.get("VIR_TEXT_ENCODER") or (record.get("encoder") or {}).get("path")
    tok_path = os.environ.get("VIR_TOKENIZER") or record.get("tokenizer")
    if not enc_path:
        raise CheckpointError("--prompt: the checkpoint does not say where its text encoder is: set VIR_TEXT_ENCODER")
    enc = TextEncoder.load(enc_path, tok_path, int(record.get("length", TEXT_LENGTH)), device)
    if record.get("dim") is not None and enc.dim != int(record["dim"]):
        raise CheckpointError(f"{enc_path}: a text encoder of width {enc.dim}, the student takes {record['dim']}")
    return enc.embed(prompt).to(device)


__all__ = ["TEXT_LENGTH", "WAN_NEGATIVE_PROMPT", "WAN_T5_KEYS", "TextEncoder", "clean_prompt", "convert_wan_t5",
           "count_tokens", "encoder_dtype", "encoder_source", "load_tokenizer", "load_umt5", "pad_rows",
           "prompt_context", "umt5_config_from_wan", "wan_t5_names"]
