"""Wan's VAE as the teacher's VAE: diffusers' layout, Wan's `.pth` names, the normalization, gradients.

diffusers is a test dependency: missing, these tests fail, they do not skip.
"""

from __future__ import annotations

import diffusers  # noqa: F401 - the reference
import pytest
import torch

from instantvir_cli.errors import CheckpointError
from instantvir_cli.models.tiny_wan import write_vae
from instantvir_cli.models.wan_vae import (
    WAN_LATENT_MEAN,
    WAN_LATENT_STD,
    is_wan_vae,
    load_wan_vae,
    wan_vae_config_from_state_dict,
    wan_vae_key,
)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wanvae") / "vae"
    write_vae(d, seed=3)
    return d


def test_diffusers_layout_normalizes_as_wan(vae_dir):
    vae = load_wan_vae(vae_dir.parent)                     # the model root works too
    assert vae.cfg.latent_channels == 16 and vae.cfg.time_factor == 4 and vae.cfg.space_factor == 8
    ref = diffusers.AutoencoderKLWan.from_pretrained(str(vae_dir)).eval()
    x = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    mean = torch.tensor(WAN_LATENT_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(WAN_LATENT_STD).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        z = vae.encode(x)
        mu = ref.encode(x).latent_dist.mean
        assert z.shape == (1, 16, 3, 2, 3)
        assert torch.allclose(z, (mu - mean) / std, atol=1e-6)
        assert torch.allclose(vae.decode(z), ref.decode(mu).sample, atol=1e-4)   # mu through (z * std + mean): rounding
    assert is_wan_vae(vae_dir) and is_wan_vae(vae_dir.parent) and not is_wan_vae(vae_dir / "x.safetensors")


def test_wan_pth_names_and_architecture(vae_dir, tmp_path):
    """Wan's WanVAE_ names (wan/modules/vae.py) map onto diffusers' and back to the same model."""
    ref = diffusers.AutoencoderKLWan.from_pretrained(str(vae_dir)).eval()
    cfg = dict(num_res_blocks=1)
    facts = {   # Wan name -> diffusers name, read off the two implementations
        "conv1.weight": "quant_conv.weight",
        "conv2.bias": "post_quant_conv.bias",
        "encoder.conv1.weight": "encoder.conv_in.weight",
        "encoder.downsamples.2.shortcut.weight": "encoder.down_blocks.2.conv_shortcut.weight",
        "encoder.downsamples.3.time_conv.bias": "encoder.down_blocks.3.time_conv.bias",
        "encoder.middle.1.to_qkv.weight": "encoder.mid_block.attentions.0.to_qkv.weight",
        "encoder.middle.2.residual.3.gamma": "encoder.mid_block.resnets.1.norm2.gamma",
        "decoder.upsamples.1.residual.6.weight": "decoder.up_blocks.0.resnets.1.conv2.weight",
        "decoder.upsamples.2.time_conv.weight": "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
        "decoder.upsamples.3.shortcut.bias": "decoder.up_blocks.1.resnets.0.conv_shortcut.bias",
        "decoder.upsamples.8.resample.1.weight": "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
        "decoder.upsamples.10.residual.0.gamma": "decoder.up_blocks.3.resnets.1.norm1.gamma",
        "decoder.head.2.weight": "decoder.conv_out.weight",
    }
    assert {k: wan_vae_key(k, cfg) for k in facts} == facts
    # a Wan-layout file: diffusers' tensors under Wan's names (every name maps back, one to one)
    wan_names = _wan_names(ref.state_dict(), cfg)
    sd = {w: ref.state_dict()[d] for w, d in wan_names.items()}
    assert wan_vae_config_from_state_dict(sd) == dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                                      attn_scales=[], temperal_downsample=[False, True, True])
    torch.save(sd, tmp_path / "Wan2.1_VAE.pth")
    vae = load_wan_vae(tmp_path / "Wan2.1_VAE.pth")
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae.encode(x), load_wan_vae(vae_dir).encode(x))
    del sd["decoder.head.2.bias"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"decoder\.conv_out\.bias"):
        load_wan_vae(tmp_path / "broken.pth")


def _wan_names(diffusers_sd, cfg):
    """{Wan name: diffusers name}, from every name Wan's layout can have (its grammar) that the map sends
    to a key of `diffusers_sd`: no inverse formula."""
    res = ["residual.0.gamma", "residual.2.weight", "residual.2.bias", "residual.3.gamma", "residual.6.weight",
           "residual.6.bias", "shortcut.weight", "shortcut.bias"]
    samp = ["resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias"]
    attn = ["norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"]
    grammar = [f"{t}.{leaf}" for t in ("conv1", "conv2") for leaf in ("weight", "bias")]
    for part, group in (("encoder", "downsamples"), ("decoder", "upsamples")):
        grammar += [f"{part}.conv1.weight", f"{part}.conv1.bias", f"{part}.head.0.gamma", f"{part}.head.2.weight",
                    f"{part}.head.2.bias"]
        grammar += [f"{part}.middle.{m}.{leaf}" for m in (0, 2) for leaf in res]
        grammar += [f"{part}.middle.1.{leaf}" for leaf in attn]
        grammar += [f"{part}.{group}.{n}.{leaf}" for n in range(16) for leaf in res + samp]
    out = {w: _maps(w, cfg) for w in grammar}
    out = {w: d for w, d in out.items() if d in diffusers_sd}
    assert sorted(out.values()) == sorted(diffusers_sd)          # every diffusers key, once
    return out


def _maps(key, cfg):
    try:
        return wan_vae_key(key, cfg)
    except (KeyError, ValueError):
        return None


def test_gradients_flow_through_encode(vae_dir):
    vae = load_wan_vae(vae_dir).requires_grad_(False)
    x = (torch.rand(1, 3, 5, 16, 16) * 2 - 1).requires_grad_(True)
    vae.encode(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match="Wan VAE not found"):
        load_wan_vae(tmp_path / "none")
    (tmp_path / "vae").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_wan_vae(tmp_path / "vae")
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a Wan2.1 VAE state dict"):
        load_wan_vae(tmp_path / "x.pth")
