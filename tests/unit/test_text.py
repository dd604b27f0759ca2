"""The umT5 text encoder: both weight layouts, Wan's padding, the cache and bad input.

transformers is a test dependency (the `test` extra): missing, these tests fail, they do not skip.
"""

from __future__ import annotations

import pytest
import torch
import transformers  # noqa: F401 - the reference; a missing one fails the module
from safetensors.torch import load_file

from instantvir_cli.errors import CheckpointError, ConfigError
from instantvir_cli.models.text import TEXT_LENGTH, TextEncoder, clean_prompt, load_umt5, wan_t5_names
from instantvir_cli.models.tiny_wan import TEXT_DIM, write_tiny_wan


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_wan(tmp_path_factory.mktemp("tinywan"))


def reference(root):
    return transformers.UMT5EncoderModel.from_pretrained(str(root / "text_encoder")).eval()


def test_diffusers_layout_matches_transformers_and_pads_with_zeros(tiny):
    enc = TextEncoder.load(tiny)
    prompts = ["a red car driving on a wet road", "a cat"]
    ctx = enc.encode(prompts)
    assert ctx.shape == (2, TEXT_LENGTH, TEXT_DIM)
    ids, mask = enc.tokenize(prompts)
    n = mask.sum(1)
    assert n[0] > n[1] > 1 and int(ids[1, n[1] - 1]) == enc.tokenizer.eos_token_id   # ends with </s>
    with torch.no_grad():
        ref = reference(tiny)(input_ids=ids, attention_mask=mask).last_hidden_state
    for b in range(2):
        assert torch.allclose(ctx[b, :n[b]], ref[b, :n[b]], atol=1e-5)
        assert ctx[b, n[b]:].abs().max() == 0                 # Wan: zeros past the prompt's tokens
        assert ctx[b, :n[b]].abs().min(dim=-1).values.gt(0).all()


def test_wan_layout_loads_the_same_model(tiny, tmp_path):
    """Wan's `.pth` names (wan/modules/t5.py T5Encoder) -> the same outputs."""
    sd = load_file(str(tiny / "text_encoder" / "model.safetensors"))
    names = wan_t5_names(2)
    assert names["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"] == "blocks.1.ffn.gate.0.weight"
    assert names["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] == \
        "blocks.0.pos_embedding.embedding.weight"
    assert names["shared.weight"] == "token_embedding.weight" and names["encoder.final_layer_norm.weight"] == "norm.weight"
    wan = {names[k]: v.to(torch.bfloat16) for k, v in sd.items()}        # as Wan ships it: bf16
    torch.save(wan, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    ours = load_umt5(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    assert ours.config.num_heads == 4 and ours.config.d_kv == 8 and ours.config.num_layers == 2
    ids = torch.randint(3, 100, (1, 20))
    with torch.no_grad():
        a = ours(input_ids=ids).last_hidden_state
        ref = reference(tiny)
        for p in ref.parameters():                                        # the same bf16-rounded weights
            p.data = p.data.to(torch.bfloat16).float()
        b = ref(input_ids=ids).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
    # Wan's file with the tokenizer named explicitly
    enc = TextEncoder.load(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", tokenizer=tiny / "tokenizer")
    assert enc.embed("a cat").shape == (1, TEXT_LENGTH, TEXT_DIM)


def test_embed_caches_each_prompt(tiny, monkeypatch):
    enc = TextEncoder.load(tiny)
    calls = []
    real = enc.encode
    monkeypatch.setattr(enc, "encode", lambda ps: calls.append(list(ps)) or real(ps))
    a = enc.embed(["a cat", "a dog"])
    b = enc.embed(["a dog", "a cat", "a cat"])
    assert calls == [["a cat", "a dog"]]
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])


def test_clean_prompt_as_wan():
    assert clean_prompt("  a&amp;b \n\t c  ") == "a&b c"


def test_bad_input_is_one_error(tiny, tmp_path):
    enc = TextEncoder.load(tiny)
    with pytest.raises(ConfigError, match="more than the text encoder's 512"):
        enc.tokenize(["cat " * 600])
    with pytest.raises(CheckpointError, match="text encoder not found"):
        TextEncoder.load(tmp_path / "nowhere")
    torch.save({"token_embedding.weight": torch.zeros(4, 4)}, tmp_path / "t5.pth")
    with pytest.raises(CheckpointError, match="no tokenizer folder"):
        TextEncoder.load(tmp_path / "t5.pth")
    with pytest.raises(CheckpointError, match="tokenizer folder not found"):
        TextEncoder.load(tiny, tokenizer=tmp_path / "no-tokenizer")
    sd = load_file(str(tiny / "text_encoder" / "model.safetensors"))
    wan = {wan_t5_names(2)[k]: v for k, v in sd.items()}
    wan["blocks.0.attn.q.weight"] = torch.zeros(3, 3)
    torch.save(wan, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.q\.weight"):
        load_umt5(tmp_path / "bad.pth")


def test_dtype_rule_and_rows_give_encode_back(tiny):
    """bf16 on CUDA, fp32 on the CPU; a prompt's own rows, padded, are `encode` bit for bit (both dtypes)."""
    from instantvir_cli.models.text import encoder_dtype, pad_rows

    assert encoder_dtype("cuda") == torch.bfloat16 and encoder_dtype("cpu") == torch.float32
    enc = TextEncoder.load(tiny)
    assert next(enc.model.parameters()).dtype == torch.float32
    bf16 = TextEncoder(load_umt5(tiny / "text_encoder", torch.bfloat16), enc.tokenizer)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    prompts = ["a red car driving on a wet road", "a cat", ""]
    for e, dtype in ((enc, torch.float32), (bf16, torch.bfloat16)):
        rows = e.encode_rows(prompts)
        _, mask = e.tokenize(prompts)
        assert [r.shape[0] for r in rows] == mask.sum(1).tolist() and rows[0].dtype == dtype
        assert torch.equal(pad_rows(rows), e.encode(prompts))
