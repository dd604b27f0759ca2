"""The published LeanVAE checkpoints (westlake-repl/LeanVAE, `LeanVAE-dim16.ckpt`,
`LeanVAE-dim4.ckpt`) mapped onto our `LeanVAE` keys, strictly.

Its training script's `args` give the `VAEConfig`; its keys (bare, or the Lightning engine's
`autoencoder.`-prefixed ones, whose LPIPS and discriminator weights are dropped) map by the
regular expressions below. The published model takes pixels in [-0.5, 0.5] (`pixel_scale`).
"""

from __future__ import annotations

import re

import torch

from ..errors import CheckpointError
from .foreign import refused_pickle
from .vae import LeanVAE, VAEConfig

# args of the released training script -> VAEConfig fields
_PUBLISHED_ARGS = {
    "latent_dim": "latent_channels", "l_dim": "dim_low", "h_dim": "dim_high",
    "sep_num_layer": "depth_band", "fusion_num_layer": "depth_fusion",
    "ista_iter_num": "ista_iters", "ista_layer_num": "ista_depth",
}

# published key (regex) -> our key; a NAF layer's `dconv_layer.{i}.ds_conv` is our
# `blocks.{i}.conv.conv`; its `ffd_layer.{i}.{0,1,4}` (LayerNorm, Linear, -, -, Linear) our
# `blocks.{i}.{norm,fc1,fc2}`
_NAF = r"dconv_layer\.(\d+)\.ds_conv\.(weight|bias)|ffd_layer\.(\d+)\.([014])\.(weight|bias)"
_STACKS = {"low_layer": "low", "high_layer": "high", "fusion_layer": "fusion",
           "forward_l": "analysis", "backward_l": "synthesis"}
_FFD = {"0": "norm", "1": "fc1", "4": "fc2"}
_PATCH = {"encoder": "embed", "decoder": "head"}
_TRAINING_ONLY = ("perceptual_model.", "gan_loss.", "discriminator")


def _map_naf(prefix: str, rest: str) -> str | None:
    m = re.fullmatch(_NAF, rest)
    if m is None:
        return None
    if m.group(1) is not None:
        return f"{prefix}.blocks.{m.group(1)}.conv.conv.{m.group(2)}"
    return f"{prefix}.blocks.{m.group(3)}.{_FFD[m.group(4)]}.{m.group(5)}"


def _map_published_key(k: str) -> str | None:
    if k in ("latent_bottleneck.phi", "latent_bottleneck.Q"):
        return "bottleneck." + k.split(".")[1]
    if m := re.fullmatch(r"std_layer\.(weight|bias)", k):
        return f"logvar.{m.group(1)}"
    if m := re.fullmatch(r"(encoder|decoder)\.(image|video)_(low|high)_proj\.([01])\.(weight|bias)", k):
        part, kind, band, idx, p = m.groups()
        if idx == ("1" if part == "encoder" else "0"):   # the Linear sits after / before a Rearrange
            return f"{part}.{_PATCH[part]}_{kind}.{band}.{p}"
        return None
    if m := re.fullmatch(r"(encoder|decoder)\.(low_layer|high_layer|fusion_layer)\.(.+)", k):
        return _map_naf(f"{m.group(1)}.{_STACKS[m.group(2)]}", m.group(3))
    if m := re.fullmatch(r"latent_bottleneck\.(forward_l|backward_l)\.(\d+)\.(.+)", k):
        return _map_naf(f"bottleneck.steps.{m.group(2)}.{_STACKS[m.group(1)]}", m.group(3))
    if m := re.fullmatch(r"latent_bottleneck\.(weights|threshold)\.(\d+)", k):
        return f"bottleneck.steps.{m.group(2)}.{'step_size' if m.group(1) == 'weights' else 'threshold'}"
    return None


def vae_config_from_published_args(args: dict, pixel_scale: float = 0.5) -> VAEConfig:
    """The VAEConfig of a published checkpoint's `args` (its input range is [-0.5, 0.5])."""
    if args.get("embedding_dim", 512) != args.get("l_dim", 128) + args.get("h_dim", 384):
        raise CheckpointError(f"LeanVAE args: embedding_dim {args.get('embedding_dim')} "
                              f"!= l_dim + h_dim {args.get('l_dim')} + {args.get('h_dim')}")
    fields = {ours: int(args[theirs]) for theirs, ours in _PUBLISHED_ARGS.items() if theirs in args}
    return VAEConfig(pixel_scale=pixel_scale, **fields)


def leanvae_state_dict_from_published(sd: dict[str, torch.Tensor],
                                      cfg: VAEConfig | None = None) -> dict[str, torch.Tensor]:
    """Map a published LeanVAE state dict onto this module's names.

    Accepts the bare `LeanVAE` keys or the Lightning engine's `autoencoder.`-prefixed ones (its
    LPIPS and discriminator weights are dropped). Raises CheckpointError naming every key it
    cannot map; with `cfg`, also every key that `LeanVAE(cfg)` expects but `sd` lacks, and
    every shape that differs.
    """
    if any(k.startswith("autoencoder.") for k in sd):
        sd = {k[len("autoencoder."):]: v for k, v in sd.items()
              if k.startswith("autoencoder.") or not k.startswith(_TRAINING_ONLY)}
    out, unexpected = {}, []
    for k, v in sd.items():
        ours = _map_published_key(k)
        if ours is None:
            unexpected.append(k)
        else:
            out[ours] = v
    problems = [f"unexpected key {k!r}" for k in unexpected]
    if cfg is not None:
        with torch.device("meta"):
            expected = {k: v.shape for k, v in LeanVAE(cfg).state_dict().items()}
        problems += [f"missing key {k!r}" for k in expected if k not in out]
        problems += [f"shape of {k!r}: checkpoint {tuple(out[k].shape)}, model {tuple(s)}"
                     for k, s in expected.items() if k in out and out[k].shape != s]
    if problems:
        raise CheckpointError("published LeanVAE state dict does not fit: " + "; ".join(problems))
    return out


def load_published_leanvae(path: str, map_location: str | torch.device = "cpu") -> LeanVAE:
    """Build a LeanVAE from a released checkpoint (`LeanVAE-dim16.ckpt`, `LeanVAE-dim4.ckpt`)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint not found: {path}") from e
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise refused_pickle(path, e) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: expected a dict with 'args' and 'state_dict'")
    args = ckpt.get("args") or {}
    cfg = vae_config_from_published_args(vars(args) if not isinstance(args, dict) else args)
    sd = leanvae_state_dict_from_published(ckpt["state_dict"], cfg)
    with torch.device("meta"):
        vae = LeanVAE(cfg)
    vae.load_state_dict(sd, strict=True, assign=True)
    return vae.eval()


__all__ = ["leanvae_state_dict_from_published", "load_published_leanvae", "vae_config_from_published_args"]
