"""Wan2.1's VAE as the teacher's VAE: diffusers' `AutoencoderKLWan` with Wan's latent normalization.

    vae = load_wan_vae("Wan2.1_VAE.pth")                     # Wan's own file (WanVAE_ keys)
    vae = load_wan_vae("Wan2.1-T2V-1.3B-Diffusers/vae")      # diffusers' layout (or the model root)
    z = vae.encode(x)          # x (B, 3, T, H, W) in [-1, 1] -> z (B, 16, 1 + (T-1)/4, H/8, W/8), normalized
    x = vae.decode(z)          # the inverse, clamped to [-1, 1]

The latents are Wan's: the posterior mean, normalized per channel, z = (mu - mean) / std, with
Wan's 16 means and stds (wan/modules/vae.py `WanVAE`; diffusers keeps them as
`config.latents_mean` / `latents_std` and applies them in its pipelines, not in the model). That
is the space Wan2.1's DiT was trained in. Both methods keep their gradients (teacher-space
regularization differentiates E_T(D_S(z_hat)) through this encoder).

Wan's `.pth` is read with `torch.load(weights_only=True)` and mapped onto diffusers' names
(`wan_vae_key`), the architecture read from its shapes; every load is strict. diffusers is an
optional dependency (`pip install 'instantvir-cli[wan]'`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from .foreign import load_state_dict_file, read_config_json
from .strict import check_state_dict

WAN_LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                   0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN_LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                  3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
WAN21_VAE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True])      # Wan2.1's VAE (126.9 M parameters)


def _diffusers():
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise CheckpointError("Wan's VAE needs diffusers: pip install 'instantvir-cli[wan]'") from None
    return AutoencoderKLWan


@dataclass(frozen=True)
class WanVAEConfig:
    """What the trainer reads of a VAE's geometry (the fields LeanVAE's VAEConfig has too)."""

    latent_channels: int = 16
    time_factor: int = 4
    space_factor: int = 8
    kind: str = "wan"

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int, int]:
        return self.latent_channels, 1 + (T - 1) // self.time_factor, H // self.space_factor, W // self.space_factor


class WanVAE(nn.Module):
    """AutoencoderKLWan + Wan's per-channel latent normalization (see the module docstring)."""

    def __init__(self, model: nn.Module, mean=WAN_LATENT_MEAN, std=WAN_LATENT_STD):
        super().__init__()
        self.model = model
        c = model.config
        z = int(c.z_dim)
        if len(mean) != z or len(std) != z:
            raise CheckpointError(f"Wan VAE: {z} latent channels but {len(mean)} means and {len(std)} stds")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, z, 1, 1, 1), persistent=False)
        down = sum(bool(t) for t in c.temperal_downsample)
        self.cfg = WanVAEConfig(z, 2 ** down, 2 ** (len(c.dim_mult) - 1))

    def encode(self, x: Tensor) -> Tensor:
        """x (B, 3, T, H, W) in [-1, 1], T = 1 + 4k, H, W multiples of 8 -> normalized z (B, 16, T', h, w)."""
        mu = self.model.encode(x).latent_dist.mean                       # (B, 16, T', h, w)
        return (mu - self.mean.to(mu.dtype)) / self.std.to(mu.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """normalized z (B, 16, T', h, w) -> x (B, 3, 1 + 4 (T' - 1), 8 h, 8 w), clamped to [-1, 1]."""
        return self.model.decode(z * self.std.to(z.dtype) + self.mean.to(z.dtype)).sample

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


#################################################################################
#                              Wan's layout -> diffusers'                       #
#################################################################################


_RESIDUAL = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2", "residual.6": "conv2",
             "shortcut": "conv_shortcut"}


def wan_vae_config_from_state_dict(sd: dict[str, Tensor]) -> dict:
    """AutoencoderKLWan arguments of a Wan VAE (WanVAE_) state dict, from its shapes."""
    try:
        base = sd["encoder.conv1.weight"].shape[0]
        z = sd["conv2.weight"].shape[0]
        idx = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.downsamples.")})
        kinds = ["resample" if f"encoder.downsamples.{i}.resample.1.weight" in sd else "residual" for i in idx]
        nrb = kinds.index("resample") if "resample" in kinds else len(kinds)
        mult, tdown, level = [], [], []
        for i, kind in zip(idx, kinds):
            if kind == "residual":
                level.append(sd[f"encoder.downsamples.{i}.residual.6.weight"].shape[0])
            else:
                tdown.append(f"encoder.downsamples.{i}.time_conv.weight" in sd)
                mult.append(level[-1] // base)
                level = []
        mult.append(level[-1] // base)
    except (KeyError, IndexError, ValueError) as err:
        raise CheckpointError(f"not a Wan2.1 VAE state dict (WanVAE_ keys): cannot read {err}") from None
    if any(".middle.1." not in k and "to_qkv" in k for k in sd):
        raise CheckpointError("Wan VAE: attention outside the middle block (attn_scales) is not supported")
    return dict(base_dim=base, z_dim=z, dim_mult=mult, num_res_blocks=nrb, attn_scales=[],
                temperal_downsample=tdown)


def wan_vae_key(key: str, cfg: dict) -> str:
    """The diffusers (AutoencoderKLWan) name of one Wan (WanVAE_) key."""
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for a, b in top.items():
        if key.startswith(a):
            return b + key[len(a):]
    part, _, rest = key.partition(".")                                # encoder | decoder
    head = {"conv1.": "conv_in.", "head.0.": "norm_out.", "head.2.": "conv_out.",
            "middle.0.": "mid_block.resnets.0.", "middle.1.": "mid_block.attentions.0.",
            "middle.2.": "mid_block.resnets.1."}
    for a, b in head.items():
        if rest.startswith(a):
            rest = b + rest[len(a):]
            break
    else:
        group, n, tail = rest.split(".", 2)                          # downsamples|upsamples, index, rest
        n = int(n)
        if group == "downsamples":
            rest = f"down_blocks.{n}.{tail}"
        elif group == "upsamples":
            per = cfg["num_res_blocks"] + 2                          # resnets + upsampler per level
            i, j = divmod(n, per)
            rest = (f"up_blocks.{i}.resnets.{j}.{tail}" if j < per - 1 else f"up_blocks.{i}.upsamplers.0.{tail}")
        else:
            raise KeyError(key)
    for a, b in _RESIDUAL.items():                                    # inside a residual block
        rest = rest.replace(f".{a}.", f".{b}.")
    return f"{part}.{rest}"


def convert_wan_vae_state_dict(sd: dict[str, Tensor], cfg: dict, expected: dict) -> dict[str, Tensor]:
    """Wan's keys under diffusers' names, checked strictly against `expected` (diffusers' shapes)."""
    try:
        names = {wan_vae_key(k, cfg): k for k in sd}
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"Wan VAE: unexpected key {err}") from None
    check_state_dict(expected, {d: sd[w] for d, w in names.items()}, "Wan2.1 VAE")
    return {d: sd[w] for d, w in names.items()}


def _from_config(cfg: dict) -> nn.Module:
    AutoencoderKLWan = _diffusers()
    try:
        return AutoencoderKLWan(**cfg)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"Wan VAE: invalid configuration ({err})") from None


def load_wan_vae(path: str | Path, device: str | torch.device = "cpu") -> WanVAE:
    """Wan's VAE from `Wan2.1_VAE.pth`, a diffusers `vae/` folder, or a model root holding `vae/`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"Wan VAE not found: {p}")
    if p.is_dir() and (p / "vae").is_dir():
        p = p / "vae"
    mean, std = WAN_LATENT_MEAN, WAN_LATENT_STD
    if p.is_dir():
        cfg_file, raw = read_config_json(p, "a diffusers vae/ folder")
        if raw.get("_class_name") not in (None, "AutoencoderKLWan"):
            raise CheckpointError(f"{cfg_file}: a {raw.get('_class_name')}, not an AutoencoderKLWan")
        cfg = {k: v for k, v in raw.items() if not k.startswith("_")}
        mean, std = cfg.get("latents_mean") or mean, cfg.get("latents_std") or std
        sd = load_state_dict_file(p)
        model = _from_config(cfg)
        check_state_dict(model.state_dict(), sd, f"Wan VAE of {p}")
    else:
        sd = load_state_dict_file(p)
        cfg = wan_vae_config_from_state_dict(sd)
        model = _from_config(cfg)
        sd = convert_wan_vae_state_dict(sd, cfg, model.state_dict())
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return WanVAE(model.eval(), mean, std).to(device)


def is_wan_vae(path: str | Path) -> bool:
    """Whether `path` names Wan's VAE (a `.pth` of WanVAE_ keys or a diffusers AutoencoderKLWan folder)
    rather than a LeanVAE (a vir checkpoint or a published `.ckpt`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "vae" if (p / "vae").is_dir() else p
        try:
            return json.loads((p / "config.json").read_text(encoding="utf-8")).get("_class_name") == "AutoencoderKLWan"
        except (OSError, json.JSONDecodeError):
            return False
    return p.suffix == ".pth"


__all__ = ["WAN21_VAE", "WAN_LATENT_MEAN", "WAN_LATENT_STD", "WanVAE", "WanVAEConfig", "convert_wan_vae_state_dict",
           "is_wan_vae", "load_wan_vae", "wan_vae_config_from_state_dict", "wan_vae_key"]
