"""Tiny random weights of Wan2.1's companions, in the layouts the published ones come in.

    python -m instantvir_cli.models.tiny_wan DIR

writes, with random weights and nothing downloaded:

    DIR/text_encoder/   config.json + model.safetensors: a umT5 encoder (transformers' layout)
    DIR/tokenizer/      a SentencePiece-style unigram tokenizer trained here on a few sentences
    DIR/vae/            config.json + diffusion_pytorch_model.safetensors: Wan's VAE
                        (diffusers' AutoencoderKLWan layout) at a tiny width, with Wan's
                        per-channel latent mean/std in its config

That is the folder layout of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, so `configs/wan-tiny.toml` runs
the full-size code path on it. Needs the `wan` extra (transformers, diffusers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

# a small corpus for the tokenizer: prompts like the captions of training clips
CORPUS = [
    "a man riding a bicycle down a city street", "a red car driving on a wet road at night",
    "a woman with pink lips and green eyes smiling", "a cat sleeping on a wooden table in the sun",
    "the camera pans over a green field with trees and a blue sky", "a globe turning slowly in space",
    "a cartoon rabbit walking through a forest", "a person in a car talking on a phone",
    "close up of a face, eyes open, wearing glasses", "a black headband and a light blue collar",
    "static, blurred details, worst quality, low quality, jpeg artifacts, ugly, deformed",
]

TEXT_DIM = 32          # the tiny umT5's width (umT5-XXL: 4096)


def tiny_umt5_config(vocab: int):
    from transformers import UMT5Config

    return UMT5Config(vocab_size=vocab, d_model=TEXT_DIM, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                      is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1)


def write_tokenizer(folder: Path, vocab: int = 160):
    """Train a unigram tokenizer (pad 0, eos 1, unk 2; every sequence ends with </s>) into `folder`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    return fast


def write_text_encoder(folder: Path, vocab: int, seed: int = 0) -> None:
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    torch.manual_seed(seed)
    model = UMT5EncoderModel(tiny_umt5_config(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str), encoding="utf-8")
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(sd, str(folder / "model.safetensors"))


def tiny_wan_vae_kwargs() -> dict:
    """AutoencoderKLWan arguments of the tiny Wan VAE: Wan's design (16 latent channels, 4x8x8,
    causal 3-D convolutions, a mid-block attention) at base width 8."""
    from .wan_vae import WAN_LATENT_MEAN, WAN_LATENT_STD

    return dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                temperal_downsample=[False, True, True], latents_mean=list(WAN_LATENT_MEAN),
                latents_std=list(WAN_LATENT_STD))


def write_vae(folder: Path, seed: int = 0) -> None:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    AutoencoderKLWan(**tiny_wan_vae_kwargs()).save_pretrained(str(folder), safe_serialization=True)


def write_tiny_wan(root: str | Path, seed: int = 0) -> Path:
    """Write text_encoder/, tokenizer/ and vae/ under `root` (see the module docstring)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tok = write_tokenizer(root / "tokenizer")
    write_text_encoder(root / "text_encoder", len(tok), seed)
    write_vae(root / "vae", seed)
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m instantvir_cli.models.tiny_wan",
                                 description="Write tiny random Wan2.1 companions (umT5, tokenizer, VAE).")
    ap.add_argument("root", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    print(write_tiny_wan(**vars(ap.parse_args(argv))))


if __name__ == "__main__":
    main()


__all__ = ["CORPUS", "TEXT_DIM", "tiny_umt5_config", "tiny_wan_vae_kwargs", "write_tiny_wan", "write_tokenizer"]
