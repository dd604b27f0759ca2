"""The video diffusion transformer (the frozen teacher), in Wan2.1's block design.

    z (B, C, T', h, w) --Conv3d patch (pt, ph, pw)--> tokens (B, L, D), L = T'/pt * h/ph * w/pw
    t (B,) or (B, T'/pt) --sinusoid(256)--> MLP --> e (B, F, D) --SiLU+Linear--> e0 (B, F, 6, D)
    text (B, Lc, text_dim) --MLP--> (B, Lc, D)                        [only when text_dim > 0]
    depth x block:  x += gate1 * SelfAttn(modulate(LN(x), shift1, scale1); 3-D RoPE, q/k RMSNorm)
                    x += CrossAttn(LN_affine(x), text)                [only when text_dim > 0]
                    x += gate2 * FFN(modulate(LN(x), shift2, scale2))
                    (shift/scale/gate = block.modulation (1, 6, D) + e0)
    head:           Linear(modulate(LN(x), head.modulation (1, 2, D) + e)) --> unpatchify
    --> v (B, C, T', h, w), the flow-matching velocity (see `flow.py`).

F is 1 for one timestep per sample, or the number of post-patch frames for per-frame
timesteps (diffusion forcing, the block-causal student). References: Wan2.1
`wan/modules/model.py` (math and parameter layout), facebookresearch/DiT `models.py` (style:
presets dict, adaLN-Zero initialization, guidance in its own method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    MLP,
    CrossAttention,
    SelfAttention,
    count_parameters,
    gated,
    modulate,
    rope_angles,
    rope_split,
    timestep_embedding,
    xavier_linear_,
)


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 192                                     # D: transformer width
    depth: int = 6                                     # number of blocks
    heads: int = 3                                     # nh; head dim hd = D / nh (even, >= 6)
    ffn_dim: int = 768                                 # FFN hidden width
    in_channels: int = 16                              # latent channels C of z
    out_channels: int = 16                             # channels of the predicted v
    patch: tuple[int, int, int] = (1, 2, 2)            # (pt, ph, pw) patch over (T', h, w)
    freq_dim: int = 256                                # sinusoidal timestep embedding width
    text_dim: int = 0                                  # text embedding width (umT5: 4096); 0 = no cross-attention
    cross_attn_norm: bool = True                       # affine LayerNorm before cross-attention
    qk_norm: bool = True                               # RMSNorm on q and k over the whole width
    eps: float = 1e-6                                  # LayerNorm / RMSNorm epsilon
    rope_theta: float = 10000.0                        # RoPE base

    def __post_init__(self):
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch must be 3 positive ints (pt, ph, pw), got {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        rope_split(self.head_dim)  # raises on an odd or too small head dim
        if self.freq_dim % 2:
            raise ValueError(f"freq_dim must be even, got {self.freq_dim}")
        if self.text_dim is None:
            object.__setattr__(self, "text_dim", 0)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


# Presets: `tiny` for tests; `small`, `small-p4`, `base` sized for this project's CPU budget
# (see README / bench); `wan2.1-1.3b` is Wan2.1-T2V-1.3B (1.419 B parameters).
DIT_PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(dim=48, depth=2, heads=2, ffn_dim=128),
    "small": DiTConfig(dim=192, depth=6, heads=3, ffn_dim=768),
    "small-p4": DiTConfig(dim=256, depth=8, heads=4, ffn_dim=1024, patch=(1, 4, 4)),
    # the speed/quality frontier below the default's student: 0.42x its block FLOPs
    "xsmall-p4": DiTConfig(dim=192, depth=6, heads=3, ffn_dim=768, patch=(1, 4, 4)),
    "base": DiTConfig(dim=512, depth=12, heads=8, ffn_dim=2048),
    "wan2.1-1.3b": DiTConfig(dim=1536, depth=30, heads=12, ffn_dim=8960, text_dim=4096),
}


#################################################################################
#                                 Core DiT model                                 #
#################################################################################


class DiTBlock(nn.Module):
    """Self-attention (+ cross-attention) + FFN, modulated by the timestep (adaLN, Wan layout)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.dim
        self.norm1 = nn.LayerNorm(D, eps=cfg.eps, elementwise_affine=False)
        self.attn = SelfAttention(D, cfg.heads, cfg.qk_norm, cfg.eps)
        if cfg.text_dim:
            self.norm_cross = nn.LayerNorm(D, eps=cfg.eps) if cfg.cross_attn_norm else nn.Identity()
            self.cross = CrossAttention(D, cfg.heads, cfg.qk_norm, cfg.eps)
        self.norm2 = nn.LayerNorm(D, eps=cfg.eps, elementwise_affine=False)
        self.mlp = MLP(D, cfg.ffn_dim, D)
        self.modulation = nn.Parameter(torch.zeros(1, 6, D))          # (1, 6, D)

    def forward(
        self,
        x: Tensor,
        e0: Tensor,
        rope_q: tuple[Tensor, Tensor],
        rope_k: tuple[Tensor, Tensor] | None = None,
        cross_kv: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
        cache=None,
    ) -> Tensor:
        """One block.

        Args:
            x: (B, L, D) tokens, frame-major.
            e0: (B, F, 6, D) timestep projection (F = 1 or frames of x).
            rope_q, rope_k: RoPE (cos, sin) for queries / keys (see `SelfAttention`).
            cross_kv: text keys/values from `self.cross.kv(context)`; required iff text_dim > 0.
            mask: optional (L, Lk) bool self-attention mask, True = may attend.
            cache: optional per-layer KV cache view (see `student.KVCache`).
        Returns:
            (B, L, D).
        """
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e0).unbind(2)  # (B, F, D) each
        h = self.attn(modulate(self.norm1(x), shift1, scale1), rope_q, rope_k, mask, cache)
        x = gated(x, h, gate1)                                         # (B, L, D)
        if cross_kv is not None:
            x = x + self.cross(self.norm_cross(x), cross_kv)           # (B, L, D)
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))          # (B, L, D)
        return gated(x, h, gate2)                                      # (B, L, D)


class FinalLayer(nn.Module):
    """Modulated LayerNorm + Linear to patch values (Wan's `Head`)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.linear = nn.Linear(cfg.dim, cfg.out_channels * math.prod(cfg.patch))
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))    # (1, 2, D)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, L, D), e (B, F, D) -> (B, L, pt*ph*pw*C_out)."""
        shift, scale = (self.modulation.unsqueeze(0) + e.unsqueeze(2)).unbind(2)  # (B, F, D) each
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Bidirectional video diffusion transformer predicting the flow velocity v."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        D = cfg.dim
        self.patch_embed = nn.Conv3d(cfg.in_channels, D, kernel_size=cfg.patch, stride=cfg.patch)
        self.time_mlp = MLP(cfg.freq_dim, D, D, act="silu")
        self.time_proj = nn.Linear(D, 6 * D)                           # after SiLU: shared adaLN
        self.text_mlp = MLP(cfg.text_dim, D, D) if cfg.text_dim else None
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Wan2.1's init, except adaLN-Zero: every gate and the output start at zero.

        Wan: Linear xavier-uniform / zero bias, patch embedding xavier on its flattened kernel,
        time and text MLPs N(0, 0.02), output Linear weight zero. Wan draws the block and head
        modulation from N(0, 1/D); here they and `time_proj` are zero (DiT's adaLN-Zero), so
        each block starts as the identity and v starts at 0. Loaded weights replace all of it.
        On the meta device (shapes only) nothing is drawn: normal_'s meta kernel imports torch._dynamo.
        """
        if self.patch_embed.weight.is_meta:
            return
        xavier_linear_(self)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.config.dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        for mlp in (self.time_mlp, self.text_mlp):
            if mlp is not None:
                nn.init.normal_(mlp.fc1.weight, std=0.02)
                nn.init.normal_(mlp.fc2.weight, std=0.02)
        nn.init.zeros_(self.time_proj.weight)
        nn.init.zeros_(self.time_proj.bias)
        for blk in self.blocks:
            nn.init.zeros_(blk.modulation)
        nn.init.zeros_(self.final.modulation)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    # ------------------------------------------------------------------ pieces
    def embed(self, z: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """Patchify latents: (B, C, T', h, w) -> tokens (B, L, D) and grid (F, h', w')."""
        pt, ph, pw = self.config.patch
        _, C, T, h, w = z.shape
        if C != self.config.in_channels or T % pt or h % ph or w % pw:
            raise ValueError(
                f"latent shape {tuple(z.shape)} does not fit: need C={self.config.in_channels} "
                f"and (T', h, w) divisible by patch {self.config.patch}"
            )
        x = self.patch_embed(z)                                        # (B, D, F, h', w')
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid                      # (B, L, D)

    def embed_time(self, t: Tensor | float, batch: int, frames: int) -> tuple[Tensor, Tensor]:
        """Timesteps in [0, 1000] -> e (B, F, D) for the head, e0 (B, F, 6, D) for the blocks.

        `t` is a number, (B,) (one per sample, F = 1) or (B, frames) (one per post-patch
        frame, F = frames).
        """
        dtype = self.time_proj.weight.dtype
        device = self.time_proj.weight.device
        t = torch.as_tensor(t, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() == 1:
            t = t[:, None]                                             # (B, 1)
        if t.shape[0] != batch or t.shape[1] not in (1, frames):
            raise ValueError(f"timesteps of shape {tuple(t.shape)} do not fit batch {batch}, {frames} frames")
        e = self.time_mlp(timestep_embedding(t, self.config.freq_dim).to(dtype))  # (B, F, D)
        e0 = self.time_proj(F.silu(e)).unflatten(-1, (6, self.config.dim))     # (B, F, 6, D)
        return e, e0

    def embed_text(self, context: Tensor | None) -> Tensor | None:
        """(B, Lc, text_dim) text embeddings -> (B, Lc, D); None when the model has no text."""
        if self.text_mlp is None:
            if context is not None:
                raise ValueError("this DiT has no cross-attention (text_dim=0) but a context was given")
            return None
        if context is None:
            raise ValueError(f"this DiT needs a text context (B, Lc, {self.config.text_dim})")
        return self.text_mlp(context)                                  # (B, Lc, D)

    def rope(self, grid: tuple[int, int, int], frame_start: int = 0) -> tuple[Tensor, Tensor]:
        """RoPE (cos, sin), each (L, hd/2), for a token grid whose first frame is `frame_start`."""
        device = self.time_proj.weight.device
        return rope_angles(self.config.head_dim, *grid, frame_start, self.config.rope_theta, device)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, L, pt*ph*pw*C) -> (B, C, T', h, w)."""
        (pt, ph, pw), (f, h, w) = self.config.patch, grid
        B = x.shape[0]
        x = x.view(B, f, h, w, pt, ph, pw, -1)                         # (B, F, h', w', pt, ph, pw, C)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)                          # (B, C, F, pt, h', ph, w', pw)
        return x.reshape(B, -1, f * pt, h * ph, w * pw)                # (B, C, T', h, w)

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        z: Tensor,
        t: Tensor | float,
        context: Tensor | None = None,
        frame_start: int = 0,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Predict the flow velocity.

        Args:
            z: (B, C, T', h, w) noisy latents.
            t: timesteps in [0, 1000]: a number, (B,) or (B, T'/pt) per frame.
            context: (B, Lc, text_dim) text embeddings (Wan: umT5, zero-padded to 512), or
                None for a model without cross-attention.
            frame_start: RoPE position of the first frame (0 unless continuing a stream).
            mask: optional (L, L) bool self-attention mask (True = may attend); None = full,
                bidirectional attention (the teacher).
        Returns:
            v: (B, C_out, T', h, w).
        """
        x, grid = self.embed(z)                                        # (B, L, D)
        e, e0 = self.embed_time(t, x.shape[0], grid[0])                # (B, F, D), (B, F, 6, D)
        ctx = self.embed_text(context)                                 # (B, Lc, D) or None
        rope = self.rope(grid, frame_start)                            # (L, hd/2) x 2
        for blk in self.blocks:
            kv = blk.cross.kv(ctx) if ctx is not None else None
            x = blk(x, e0, rope, cross_kv=kv, mask=mask)               # (B, L, D)
        return self.unpatchify(self.final(x, e), grid)                 # (B, C, T', h, w)

    def forward_with_cfg(
        self,
        z: Tensor,
        t: Tensor | float,
        context: Tensor,
        null_context: Tensor,
        guidance: float,
        **kwargs,
    ) -> Tensor:
        """Classifier-free guidance: v_u + guidance * (v_c - v_u), both halves in one batch.

        `guidance` is the usual scale (Wan: 5-6; guidance 1 = conditional only; the DMD real
        score's `real_guidance`). The form `cond + s (cond - uncond)` of CausVid/InstantViR's code
        is guidance = 1 + s.
        `null_context` is the negative / empty prompt's embedding, shaped like `context`
        (or (1, Lc, text_dim), broadcast over the batch).
        """
        B = z.shape[0]
        t = torch.as_tensor(t, device=z.device)
        t2 = torch.cat([t, t]) if t.dim() > 0 else t
        ctx2 = torch.cat([context, null_context.expand_as(context)])
        v_c, v_u = self(torch.cat([z, z]), t2, ctx2, **kwargs).split(B)
        return v_u + guidance * (v_c - v_u)

    @property
    def num_params(self) -> int:
        return count_parameters(self)


def forward_flops(cfg: DiTConfig, tokens: int, keys: int | None = None, text_tokens: int = 0) -> float:
    """Approximate multiply-add FLOPs (x2) of one forward over `tokens` tokens.

    `keys` is the number of self-attention keys per query (default: `tokens`, i.e. full
    attention; the streaming student attends to its block plus the cached blocks).
    Counts the matmuls only (linear layers, attention scores and values).
    """
    keys = tokens if keys is None else keys
    D, Fd = cfg.dim, cfg.ffn_dim
    per_layer = 2 * tokens * (4 * D * D + 2 * D * Fd) + 4 * tokens * keys * D
    if cfg.text_dim:
        per_layer += 2 * tokens * 2 * D * D + 4 * tokens * text_tokens * D + 2 * text_tokens * 2 * D * D
    head = 2 * tokens * D * cfg.out_channels * math.prod(cfg.patch)
    embed = 2 * tokens * D * cfg.in_channels * math.prod(cfg.patch)
    return float(cfg.depth * per_layer + head + embed)


__all__ = ["DIT_PRESETS", "DiT", "DiTBlock", "DiTConfig", "FinalLayer", "forward_flops"]
