"""Wan2.1 DiT weights in either published layout, mapped onto our `DiT` keys.

The original `WanModel` keys (github.com/Wan-Video/Wan2.1, `wan/modules/model.py`; also with
ComfyUI's `model.diffusion_model.` prefix) or diffusers' `WanTransformer3DModel` keys. Every
map is strict: any missing key, unexpected key or shape mismatch raises `CheckpointError`
naming it, in Wan's names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError
from .dit import DiT, DiTConfig
from .foreign import load_state_dict_file
from .presets import build_dit
from .strict import check_state_dict, load_module_state

# Our module path -> Wan's, per layout. Keys are matched on the module path (the key
# without its last `.weight`/`.bias`), or on the whole key for bare parameters.
_WAN_TOP = {
    "original": {
        "patch_embed": "patch_embedding",
        "time_mlp.fc1": "time_embedding.0",
        "time_mlp.fc2": "time_embedding.2",
        "time_proj": "time_projection.1",
        "text_mlp.fc1": "text_embedding.0",
        "text_mlp.fc2": "text_embedding.2",
        "final.linear": "head.head",
        "final.modulation": "head.modulation",
    },
    "diffusers": {
        "patch_embed": "patch_embedding",
        "time_mlp.fc1": "condition_embedder.time_embedder.linear_1",
        "time_mlp.fc2": "condition_embedder.time_embedder.linear_2",
        "time_proj": "condition_embedder.time_proj",
        "text_mlp.fc1": "condition_embedder.text_embedder.linear_1",
        "text_mlp.fc2": "condition_embedder.text_embedder.linear_2",
        "final.linear": "proj_out",
        "final.modulation": "scale_shift_table",
    },
}
_WAN_ATTN = {
    "original": {"q": "q", "k": "k", "v": "v", "o": "o", "norm_q": "norm_q", "norm_k": "norm_k"},
    "diffusers": {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"},
}
_WAN_BLOCK = {
    "original": {"attn": "self_attn", "cross": "cross_attn", "norm_cross": "norm3",
                 "mlp.fc1": "ffn.0", "mlp.fc2": "ffn.2", "modulation": "modulation"},
    "diffusers": {"attn": "attn1", "cross": "attn2", "norm_cross": "norm2",
                  "mlp.fc1": "ffn.net.0.proj", "mlp.fc2": "ffn.net.2", "modulation": "scale_shift_table"},
}
WAN_LAYOUTS = tuple(_WAN_TOP)
_WRAPPER_PREFIXES = ("model.diffusion_model.", "module.", "model.")


def wan_key(our_key: str, layout: str) -> str:
    """The Wan2.1 name (`layout` "original" or "diffusers") of one of our DiT keys."""
    if layout not in _WAN_TOP:
        raise ValueError(f"unknown Wan layout {layout!r} (known: {', '.join(WAN_LAYOUTS)})")
    if our_key in _WAN_TOP[layout]:
        return _WAN_TOP[layout][our_key]
    path, _, leaf = our_key.rpartition(".")
    if path in _WAN_TOP[layout]:
        return f"{_WAN_TOP[layout][path]}.{leaf}"
    parts = our_key.split(".")
    if parts[0] == "blocks":
        prefix, rest = ".".join(parts[:2]), ".".join(parts[2:])
        table = _WAN_BLOCK[layout]
        if rest in table:                                              # bare parameter
            return f"{prefix}.{table[rest]}"
        path, _, leaf = rest.rpartition(".")
        if path in table:
            return f"{prefix}.{table[path]}.{leaf}"
        sub, _, proj = path.partition(".")
        if sub in ("attn", "cross") and proj in _WAN_ATTN[layout]:
            return f"{prefix}.{table[sub]}.{_WAN_ATTN[layout][proj]}.{leaf}"
    raise KeyError(f"no Wan2.1 name for key {our_key!r}")


def _strip_wrappers(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a prefix every key shares (`model.diffusion_model.` of ComfyUI files, `module.`...)."""
    for prefix in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def detect_wan_layout(sd: Mapping[str, Tensor]) -> str:
    """"original" or "diffusers", from marker keys; CheckpointError if neither."""
    if "time_projection.1.weight" in sd:
        return "original"
    if "condition_embedder.time_proj.weight" in sd:
        return "diffusers"
    raise CheckpointError(
        "not a Wan2.1 transformer state dict: found neither 'time_projection.1.weight' (original "
        "layout) nor 'condition_embedder.time_proj.weight' (diffusers layout)"
    )


def wan_config_from_state_dict(sd: Mapping[str, Tensor], heads: int | None = None) -> DiTConfig:
    """Infer the DiTConfig of Wan2.1 weights from their shapes.

    The head count is not visible in the shapes (q/k norms span the whole width): it
    defaults to dim / 128, Wan2.1's head dim for every released size (1.3B: 12, 14B: 40).
    """
    sd = _strip_wrappers(sd)
    layout = detect_wan_layout(sd)
    k = lambda ours: sd[wan_key(ours, layout)]
    try:
        w = k("patch_embed.weight")
        dim, cin, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
        depth = len({key.split(".")[1] for key in sd if key.startswith("blocks.")})
        has_text = wan_key("text_mlp.fc1.weight", layout) in sd
        if not heads and dim % 128:
            raise CheckpointError(f"Wan2.1 DiT of width {dim}: the head count is not in the weights and the width "
                                  "is not a multiple of Wan's head dim 128")
        return DiTConfig(
            dim=dim,
            depth=depth,
            heads=heads or dim // 128,
            ffn_dim=k("blocks.0.mlp.fc1.weight").shape[0],
            in_channels=cin,
            out_channels=k("final.linear.weight").shape[0] // math.prod(patch),
            patch=patch,
            freq_dim=k("time_mlp.fc1.weight").shape[1],
            text_dim=k("text_mlp.fc1.weight").shape[1] if has_text else 0,
            cross_attn_norm=wan_key("blocks.0.norm_cross.weight", layout) in sd,
            qk_norm=wan_key("blocks.0.attn.norm_q.weight", layout) in sd,
        )
    except KeyError as err:
        raise CheckpointError(f"Wan2.1 state dict lacks {err}") from err


def convert_wan_state_dict(sd: Mapping[str, Tensor], cfg: DiTConfig, layout: str | None = None) -> dict[str, Tensor]:
    """Map a Wan2.1 DiT state dict (original or diffusers layout) onto our `DiT(cfg)` keys.

    Strict: every key our model needs must be present with the right shape, and every key
    of `sd` must be used; otherwise CheckpointError names the offenders (in Wan's names).
    """
    sd = _strip_wrappers(sd)
    layout = layout or detect_wan_layout(sd)
    ours = build_dit(cfg, "meta").state_dict()
    names = {k: wan_key(k, layout) for k in ours}
    check_state_dict({names[k]: v for k, v in ours.items()}, sd, f"Wan2.1 ({layout} layout)")
    return {k: sd[names[k]] for k in ours}


def to_wan_state_dict(our_sd: Mapping[str, Tensor], layout: str) -> dict[str, Tensor]:
    """Our DiT state dict under Wan2.1's names (the inverse of `convert_wan_state_dict`)."""
    return {wan_key(k, layout): v for k, v in our_sd.items()}


def load_wan_dit(path: str | Path, heads: int | None = None, device: str | torch.device = "cpu") -> DiT:
    """Build a DiT from Wan2.1 weights on disk (file, sharded index, or diffusers folder)."""
    sd = load_state_dict_file(path)
    cfg = wan_config_from_state_dict(sd, heads)
    model = build_dit(cfg, "meta")
    load_module_state(model, convert_wan_state_dict(sd, cfg), "Wan2.1 DiT")
    return model.to(device)


__all__ = ["WAN_LAYOUTS", "convert_wan_state_dict", "detect_wan_layout", "load_wan_dit", "to_wan_state_dict",
           "wan_config_from_state_dict", "wan_key"]
