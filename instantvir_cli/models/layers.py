"""Building blocks of the video diffusion transformer: norms, adaLN modulation, RoPE, attention.

Shape vocabulary: `B` batch, `L` tokens, `D` width, `nh` heads, `hd` head dim (D = nh * hd),
`F` frames of the token grid (post-patch latent frames), `Lc` context (text) tokens.

Tokens are always ordered frame-major, (F, h', w') flattened, so one frame's tokens are a
contiguous run of `h' * w'` tokens. That lets per-frame modulation and the 3-D RoPE work on a
(B, F, L/F, D) view without any gather.

Numerics follow Wan2.1 (github.com/Wan-Video/Wan2.1, `wan/modules/model.py`): sinusoidal
timestep and RoPE angles are computed in float64 and then cast; LayerNorm eps 1e-6 without
affine (except the optional cross-attention norm); q/k RMSNorm over the whole width D
("across heads"); GELU with the tanh approximation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .block_attention import BlockCausal, block_causal_attention

#################################################################################
#                              adaLN modulation                                  #
#################################################################################


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x * (1 + scale) + shift, with one (shift, scale) per frame.

    Args:
        x: (B, L, D) tokens, frame-major.
        shift, scale: (B, F, D) with L divisible by F (F = 1: one value per sample).
    Returns:
        (B, L, D).
    """
    B, L, D = x.shape
    Fr = shift.shape[1]
    x = x.view(B, Fr, L // Fr, D)                                      # (B, F, L/F, D)
    x = x * (1 + scale.unsqueeze(2)) + shift.unsqueeze(2)              # (B, F, L/F, D)
    return x.view(B, L, D)                                             # (B, L, D)


def gated(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """Residual x + y * gate, with one gate per frame: x, y (B, L, D), gate (B, F, D)."""
    B, L, D = x.shape
    Fr = gate.shape[1]
    y = y.view(B, Fr, L // Fr, D) * gate.unsqueeze(2)                  # (B, F, L/F, D)
    return x + y.view(B, L, D)                                         # (B, L, D)


#################################################################################
#                       Timestep embedding and small MLPs                        #
#################################################################################


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps, as in Wan2.1.

    Args:
        t: (...) timesteps in [0, 1000].
        dim: even embedding width (Wan: freq_dim 256).
    Returns:
        (..., dim) float64; the caller casts it to the MLP's dtype.
    """
    half = dim // 2
    freqs = torch.pow(max_period, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64).unsqueeze(-1) * freqs                 # (..., dim/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)   # (..., dim)


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (the FFN, the timestep MLP and the text projection)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, act: str = "gelu_tanh"):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU(approximate="tanh") if act == "gelu_tanh" else nn.SiLU()
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


#################################################################################
#                          3-D rotary position embedding                         #
#################################################################################


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """How Wan2.1 splits a head's channels between the t, h and w axes (hd 128 -> 44/42/42)."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"head dim must be even and >= 6 for 3-D RoPE, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _axis_angles(pos: Tensor, dim: int, theta: float) -> Tensor:
    """Angles pos * theta^(-2i/dim), i < dim/2: (n,) positions -> (n, dim/2), float64."""
    inv = 1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
    return torch.outer(pos.to(torch.float64), inv)


def rope_angles(
    head_dim: int,
    frames: int,
    height: int,
    width: int,
    frame_start: int = 0,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """cos/sin tables of the 3-D RoPE for a (frames, height, width) token grid.

    Frame positions are `frame_start, ..., frame_start + frames - 1`; rows and columns start at 0.
    Attention scores depend only on position differences, so shifting every frame position by
    the same amount changes nothing (the streaming student relies on this).

    Returns:
        cos, sin: (L, hd/2) float32 with L = frames * height * width, frame-major.
    """
    dt, dh, dw = rope_split(head_dim)
    ar = lambda n, s=0: torch.arange(s, s + n, device=device)
    at = _axis_angles(ar(frames, frame_start), dt, theta)               # (F, dt/2)
    ah = _axis_angles(ar(height), dh, theta)                            # (h, dh/2)
    aw = _axis_angles(ar(width), dw, theta)                             # (w, dw/2)
    angles = torch.cat(
        [
            at[:, None, None].expand(frames, height, width, -1),
            ah[None, :, None].expand(frames, height, width, -1),
            aw[None, None, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    ).reshape(frames * height * width, head_dim // 2)                  # (L, hd/2)
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved channel pairs (x[2i], x[2i+1]) by the angles in cos/sin (Wan's layout).

    Args:
        x: (B, L, nh, hd).
        cos, sin: (L, hd/2).
    Returns:
        (B, L, nh, hd), same dtype as x.
    """
    B, L, nh, hd = x.shape
    xr = x.float().view(B, L, nh, hd // 2, 2)                          # (B, L, nh, hd/2, 2)
    x1, x2 = xr[..., 0], xr[..., 1]                                    # (B, L, nh, hd/2)
    c, s = cos[None, :, None], sin[None, :, None]                      # (1, L, 1, hd/2)
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)      # (B, L, nh, hd/2, 2)
    return out.view(B, L, nh, hd).type_as(x)


#################################################################################
#                                   Attention                                    #
#################################################################################


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | BlockCausal | None = None) -> Tensor:
    """Softmax attention with scale 1/sqrt(hd).

    Args:
        q: (B, Lq, nh, hd); k, v: (B, Lk, nh, hd).
        mask: optional (Lq, Lk) bool, True = may attend, or a `BlockCausal` description
            (Lq = Lk = L; run without an L x L tensor, see `block_attention.py`).
    Returns:
        (B, Lq, nh * hd).
    """
    B, Lq, nh, hd = q.shape
    q, k, v = (a.transpose(1, 2) for a in (q, k, v))                   # (B, nh, L, hd)
    if isinstance(mask, BlockCausal):
        o = block_causal_attention(q, k, v, mask)                      # (B, nh, L, hd)
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)    # (B, nh, Lq, hd)
    return o.transpose(1, 2).reshape(B, Lq, nh * hd)                   # (B, Lq, D)


class _Projections(nn.Module):
    """q, k, v, o projections and the q/k RMSNorm (Wan's names), shared by both attentions."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        self.norm_k = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()


class SelfAttention(_Projections):
    """Multi-head self-attention with q/k RMSNorm over the whole width and 3-D RoPE.

    `project` and `forward` are split so that the causal student can put cached keys between
    the projection and the attention (see `student.py`).
    """

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) -> q, k, v each (B, L, nh, hd); q and k normalized, not yet rotated."""
        B, L, _ = x.shape
        shape = (B, L, self.heads, self.head_dim)
        q = self.norm_q(self.q(x)).view(shape)                         # (B, L, nh, hd)
        k = self.norm_k(self.k(x)).view(shape)                         # (B, L, nh, hd)
        v = self.v(x).view(shape)                                      # (B, L, nh, hd)
        return q, k, v

    def forward(
        self,
        x: Tensor,
        rope_q: tuple[Tensor, Tensor],
        rope_k: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
        cache=None,
    ) -> Tensor:
        """Self-attention of x over itself (and over cached keys when `cache` is given).

        Args:
            x: (B, L, D).
            rope_q: (cos, sin) each (L, hd/2) for the queries.
            rope_k: (cos, sin) each (Lk, hd/2) for the keys; defaults to rope_q.
            mask: optional (L, Lk) bool, True = may attend, or a `BlockCausal`.
            cache: optional object with `extend(k, v) -> (k_all, v_all)` that prepends cached
                un-rotated keys/values (B, Lk - L, nh, hd) and records the new ones.
        Returns:
            (B, L, D).
        """
        q, k, v = self.project(x)                                      # (B, L, nh, hd)
        if cache is not None:
            k, v = cache.extend(k, v)                                  # (B, Lk, nh, hd)
        rope_k = rope_q if rope_k is None else rope_k
        q = apply_rope(q, *rope_q)
        k = apply_rope(k, *rope_k)
        return self.o(attention(q, k, v, mask))                        # (B, L, D)


class CrossAttention(_Projections):
    """Attention from video tokens to (projected) text tokens; no RoPE, no mask."""

    def kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """(B, Lc, D) projected text -> k, v each (B, Lc, nh, hd); cacheable across blocks."""
        B, Lc, _ = context.shape
        shape = (B, Lc, self.heads, self.head_dim)
        return self.norm_k(self.k(context)).view(shape), self.v(context).view(shape)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        """x (B, L, D) attends to kv = self.kv(context); returns (B, L, D)."""
        B, L, _ = x.shape
        q = self.norm_q(self.q(x)).view(B, L, self.heads, self.head_dim)  # (B, L, nh, hd)
        return self.o(attention(q, *kv))                               # (B, L, D)


def xavier_linear_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every nn.Linear under `module`."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MLP",
    "CrossAttention",
    "SelfAttention",
    "apply_rope",
    "attention",
    "count_parameters",
    "gated",
    "modulate",
    "rope_angles",
    "rope_split",
    "timestep_embedding",
    "xavier_linear_",
]
