"""A generated clip with natural-ish moving content, for `vir bench` and tests."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from instantvir_cli.video.writer import EncodeOptions, VideoWriter


def _texture(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A (1, 3, H, W) picture in [-1, 1]: fractal noise terrain, a sky gradient, hard-edged discs, stripes."""
    g = generator
    noise = torch.zeros(1, 3, height, width)
    cells, amp = 3, 1.0
    side = max(height, width)
    while cells <= side // 2:
        grid = torch.randn(1, 3, max(2, cells * height // side), max(2, cells * width // side), generator=g)
        noise += amp * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        cells, amp = cells * 2, amp * 0.6
    lum = noise.mean(1, keepdim=True)                                   # (1, 1, H, W)
    yy = torch.linspace(0, 1, height).view(1, 1, height, 1)
    xx = torch.linspace(0, 1, width).view(1, 1, 1, width)
    horizon = 0.45 + 0.08 * torch.sin(xx * 7.0) + 0.05 * lum
    sky = torch.cat([0.35 + 0.3 * yy, 0.55 + 0.25 * yy, 0.95 - 0.1 * yy], 1).expand(1, 3, height, width)
    ground = torch.cat([0.35 + 0.12 * noise[:, :1], 0.45 + 0.15 * noise[:, 1:2], 0.2 + 0.08 * noise[:, 2:]], 1)
    ground = ground + 0.07 * torch.randn(1, 1, height, width, generator=g)  # fine grain: grass, gravel
    img = torch.where(yy < horizon, sky + 0.04 * noise, ground)
    for _ in range(12):                                                 # discs with hard edges
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.08]) + torch.tensor([0, 0, 0.02])).tolist()
        colour = torch.rand(1, 3, 1, 1, generator=g)
        inside = ((yy - cy) ** 2 + ((xx - cx) * width / height) ** 2) < r ** 2
        img = torch.where(inside, colour + 0.05 * noise, img)
    stripes = (torch.sin(xx * width * 0.9) > 0).float() * (yy > 0.8).float() * (xx < 0.3).float()
    img = img * (1 - 0.5 * stripes)
    return img.clamp(0, 1) * 2 - 1


def synthetic_frames(width: int, height: int, frames: int, seed: int = 0, block: int = 8):
    """Yield (1, 3, T, H, W) blocks in [-1, 1]: one textured picture, panned and gently zoomed."""
    g = torch.Generator().manual_seed(seed)
    tex = _texture(int(height * 1.3) + 8, int(width * 1.3) + 8, g)    # (1, 3, H', W')
    for t0 in range(0, frames, block):
        ts = torch.arange(t0, min(frames, t0 + block), dtype=torch.float32)
        s = ts / max(1, frames - 1)
        zoom = (1 / 1.3) * (1 + 0.06 * torch.sin(2 * math.pi * s))           # fraction of the texture seen
        theta = torch.zeros(len(ts), 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = zoom, zoom
        theta[:, 0, 2] = (1 - zoom) * (2 * s - 1)                           # pan left -> right
        theta[:, 1, 2] = (1 - zoom) * 0.5 * torch.sin(math.pi * s)
        grid = F.affine_grid(theta, [len(ts), 3, height, width], align_corners=False)
        x = F.grid_sample(tex.expand(len(ts), -1, -1, -1), grid, mode="bilinear", align_corners=False)
        yield x.permute(1, 0, 2, 3).unsqueeze(0).contiguous()               # (1, 3, T, H, W)


def write_synthetic_clip(
    path: str | Path,
    width: int,
    height: int,
    frames: int = 48,
    fps: Fraction | int | float = 24,
    lossless: bool = False,
    options: EncodeOptions | None = None,
    overwrite: bool = True,
    seed: int = 0,
) -> Path:
    """Write a `frames`-frame `width` x `height` clip of moving natural-looking content to `path`.

    Encoded with `options` (default: libx264 crf 18 preset medium, or exact RGB when `lossless`).
    """
    opts = options or EncodeOptions(lossless=lossless)
    with VideoWriter(path, width, height, options=opts, overwrite=overwrite, fps=fps) as writer:
        for x in synthetic_frames(width, height, frames, seed):
            writer.write(x)
    return Path(path)
