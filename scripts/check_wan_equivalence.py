"""Check vir's loaders of Wan2.1's text encoder and VAE against Wan's own code, on random weights.

    python scripts/check_wan_equivalence.py --wan-modules PATH/Wan2.1/wan/modules

PATH is a checkout of github.com/Wan-Video/Wan2.1 (its `t5.py` and `vae.py` need einops, ftfy,
regex). For each model: random weights in Wan's own class, saved as Wan saves them (`.pth`), loaded
by vir (`models.text.load_umt5`, `models.wan_vae.load_wan_vae`), both run on the same input; the
script prints the largest absolute difference. The VAE is also compared with diffusers'
AutoencoderKLWan loaded from the diffusers layout. Nothing here runs in the tests.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch


def _module(folder: Path, name: str):
    pkg = "wanref"
    if pkg not in sys.modules:
        spec = importlib.util.spec_from_file_location(pkg, folder / "__init__.py", submodule_search_locations=[str(folder)])
        sys.modules[pkg] = importlib.util.module_from_spec(spec)
    if not torch.cuda.is_available():    # Wan's t5.py calls torch.cuda.current_device() at import
        torch.cuda.current_device = lambda: "cpu"
    return importlib.import_module(f"{pkg}.{name}")


def check_text(wan: Path, tmp: Path, full: bool) -> float:
    from instantvir_cli.models.text import load_umt5

    t5 = _module(wan, "t5")
    torch.manual_seed(0)
    if full:    # umT5-XXL's architecture (5.7 B parameters; needs ~23 GB in fp32)
        cfg = dict(vocab=256384, dim=4096, dim_attn=4096, dim_ffn=10240, num_heads=64, num_layers=24, num_buckets=32)
    else:
        cfg = dict(vocab=300, dim=64, dim_attn=64, dim_ffn=160, num_heads=4, num_layers=3, num_buckets=32)
    ref = t5.T5Encoder(**cfg, shared_pos=False, dropout=0.0).eval()
    torch.save(ref.state_dict(), tmp / "umt5.pth")
    ours = load_umt5(tmp / "umt5.pth")
    ids = torch.randint(3, cfg["vocab"], (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.no_grad():
        a = ref(ids, mask)
        b = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    return float((a - b)[valid].abs().max())


def check_vae(wan: Path, tmp: Path) -> tuple[float, float, float]:
    from diffusers import AutoencoderKLWan

    from instantvir_cli.models.wan_vae import WAN_LATENT_MEAN, WAN_LATENT_STD, load_wan_vae

    vae_mod = _module(wan, "vae")
    torch.manual_seed(0)
    cfg = dict(dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
               temperal_downsample=[False, True, True], dropout=0.0)
    ref = vae_mod.WanVAE_(**cfg).eval()
    with torch.no_grad():                 # Wan zero-initializes some convs: give every weight a value
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    torch.save(ref.state_dict(), tmp / "Wan2.1_VAE.pth")
    ours = load_wan_vae(tmp / "Wan2.1_VAE.pth")
    mean, std = torch.tensor(WAN_LATENT_MEAN), torch.tensor(WAN_LATENT_STD)
    x = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    with torch.no_grad():
        z_ref = ref.encode(x, [mean, 1.0 / std])
        z = ours.encode(x)
        x_ref = ref.decode(z_ref, [mean, 1.0 / std]).clamp(-1, 1)
        x_dec = ours.decode(z_ref)
        # the diffusers layout: our model saved by diffusers, read back through the folder loader
        ours.model.save_pretrained(str(tmp / "vae"))
        d = AutoencoderKLWan.from_pretrained(str(tmp / "vae")).eval()
        z_d = (d.encode(x).latent_dist.mean - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
        z_f = load_wan_vae(tmp / "vae").encode(x)
    return float((z - z_ref).abs().max()), float((x_dec - x_ref).abs().max()), float((z_f - z_d).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wan-modules", type=Path, required=True, help="Wan2.1's wan/modules folder")
    ap.add_argument("--full-text", action="store_true", help="umT5-XXL's full architecture (slow, ~23 GB)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"umT5 encoder, Wan's T5Encoder vs vir (transformers UMT5EncoderModel): max |diff| {check_text(args.wan_modules, tmp, args.full_text):.3g}")
        ze, xd, zf = check_vae(args.wan_modules, tmp)
        print(f"Wan VAE, Wan's WanVAE_ vs vir: encode max |diff| {ze:.3g}, decode max |diff| {xd:.3g}")
        print(f"Wan VAE, diffusers' AutoencoderKLWan vs vir's folder loader: encode max |diff| {zf:.3g}")


if __name__ == "__main__":
    main()
