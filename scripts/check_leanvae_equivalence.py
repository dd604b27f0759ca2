"""Check that instantvir_cli's LeanVAE computes what the published LeanVAE computes.

Builds the published model (westlake-repl/LeanVAE, MIT) from a local checkout with random
weights, maps its state dict onto ours with `leanvae_state_dict_from_published`, and compares
latents (mean and log-variance), reconstructions, and the published tiled path against our
stream. Nothing of the checkout is imported by the package; this script is a developer check.

    git clone https://github.com/westlake-repl/LeanVAE /tmp/LeanVAE   # needs: pip install einops
    python scripts/check_leanvae_equivalence.py /tmp/LeanVAE --preset lean16 --frames 9 --size 64x96

The checkout's package __init__ files pull in training-only dependencies (pytorch_lightning,
decord, torchvision, timm, pywt, beartype); the model code needs only torch, numpy and einops,
so those imports are stubbed here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
import types
from pathlib import Path

import torch

from instantvir_cli.models.leanvae_keys import leanvae_state_dict_from_published
from instantvir_cli.models.vae import VAE_PRESETS, LeanVAE, VAEStreamState


def import_published(root: Path):
    """The published `LeanVAE` class, imported from `root` without its training dependencies."""
    if not (root / "LeanVAE" / "models" / "autoencoder.py").is_file():
        raise SystemExit(f"{root} is not a LeanVAE checkout (no LeanVAE/models/autoencoder.py)")
    for name in ("beartype", "pywt"):  # imported, never used by the model
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.beartype = lambda f: f
            sys.modules[name] = stub
    for pkg in ("LeanVAE", "LeanVAE.models"):  # skip __init__s that import data / lightning
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / pkg.replace(".", "/"))]
        sys.modules[pkg] = mod
    lpips = types.ModuleType("LeanVAE.modules.lpips")  # needs torchvision and VGG weights
    lpips.LPIPS = None
    sys.modules["LeanVAE.modules.lpips"] = lpips
    return importlib.import_module("LeanVAE.models.autoencoder").LeanVAE


def published_args(cfg) -> argparse.Namespace:
    return argparse.Namespace(
        embedding_dim=cfg.dim, latent_dim=cfg.latent_channels, ista_iter_num=cfg.ista_iters,
        ista_layer_num=cfg.ista_depth, l_dim=cfg.dim_low, h_dim=cfg.dim_high,
        sep_num_layer=cfg.depth_band, fusion_num_layer=cfg.depth_fusion,
        use_tile_inference=False, chunksize_enc=5, chunksize_dec=2)


def randomize_(model: torch.nn.Module, seed: int):
    """Random weights everywhere, LayerNorm affines and ISTA scalars included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if re.search(r"ffd_layer\.\d+\.0\.weight$|latent_bottleneck\.weights\.\d+$", name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))  # norm gains, step sizes
            elif name.startswith("latent_bottleneck.threshold"):
                p.copy_(0.05 * torch.rand(p.shape, generator=g))
            elif p.ndim == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)


def report(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    if ours.shape != theirs.shape:
        raise SystemExit(f"{name}: shape ours {tuple(ours.shape)} vs published {tuple(theirs.shape)}")
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    print(f"{name:<28} shape {str(tuple(ours.shape)):<24} max|diff| {diff:.3e}   max|ref| {scale:.3e}")
    return diff / max(scale, 1e-12)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path, help="a LeanVAE checkout (the folder holding LeanVAE/)")
    ap.add_argument("--preset", default="lean16", choices=[n for n in VAE_PRESETS])
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", default="64x96", help="HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4, help="largest relative difference accepted")
    a = ap.parse_args()
    H, W = (int(s) for s in a.size.split("x"))
    if a.frames < 5 or a.frames % 4 != 1:
        raise SystemExit(f"--frames must be 1 + 4k with k >= 1, got {a.frames}")
    cfg = VAE_PRESETS[a.preset]
    if cfg.patch_t != 2 or cfg.patch_hw != 4:
        raise SystemExit(f"preset {a.preset}: the published code has fixed 2x4x4 patches")
    cfg = dataclasses.replace(cfg, pixel_scale=0.5)  # the published code takes [-0.5, 0.5]

    torch.manual_seed(a.seed)
    theirs = import_published(a.checkout)(published_args(cfg)).eval()
    randomize_(theirs, a.seed)
    ours = LeanVAE(cfg).eval()
    ours.load_state_dict(leanvae_state_dict_from_published(theirs.state_dict(), cfg), strict=True)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    print(f"preset {a.preset}: parameters ours {n_ours:,}, published {n_theirs:,}")
    if n_ours != n_theirs:
        raise SystemExit("parameter counts differ")

    x = torch.rand(1, 3, a.frames, H, W, generator=torch.Generator().manual_seed(a.seed)) * 2 - 1
    rel = []
    with torch.no_grad():
        z_ref = theirs.encode(x * 0.5)
        h_ref = theirs.encoder.encode(theirs.dwt(x * 0.5))
        logvar_ref = theirs.std_layer(h_ref).clamp(-30, 20).permute(0, 4, 1, 2, 3)
        x_ref = theirs.decode(z_ref) / 0.5
        mean, logvar = ours.encode_dist(x)
        rel.append(report("z (posterior mean)", mean, z_ref))
        rel.append(report("logvar", logvar, logvar_ref))
        rel.append(report("decode(z_ref)", ours.decode(z_ref), x_ref))

        # the published tiled path (chunks of 5, 4, 4, ... frames; 2, 1, 1, ... latents)
        theirs.set_tile_inference(True)
        z_tiled = theirs.encode(x * 0.5)
        x_tiled = theirs.decode(z_ref) / 0.5
        theirs.set_tile_inference(False)
        bounds = [0, 5] + list(range(9, a.frames + 1, 4))  # the published chunks: 5, 4, 4, ...
        st = VAEStreamState()
        zs = [ours.encode_stream(x[:, :, s:e], st) for s, e in zip(bounds[:-1], bounds[1:])]
        rel.append(report("stream z vs published tiled", torch.cat(zs, 2), z_tiled))
        st, xs = VAEStreamState(), []
        for j in range(z_ref.shape[2]):
            xs.append(ours.decode_stream(z_ref[:, :, j:j + 1], st))
        rel.append(report("stream x vs published tiled", torch.cat(xs, 2), x_tiled))
    worst = max(rel)
    print(f"largest relative difference {worst:.3e} (tolerance {a.tol:.0e}):",
          "EQUIVALENT" if worst <= a.tol else "DIFFERENT")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
