"""How far can a restore path built on this VAE go? Oracle ceilings on real clips.

For each clip and task, with z* = E(x_clean) standing in for a perfect student:

    classical        x_init = the classical restorer's output (what vir ships beside the model)
    plain oracle     x = D(z*)                          (the plain InstantViR path: capped by the VAE)
    residual oracle  x = x_init + D(z*) - D(E(x_init))  (decode only the change from x_init;
                     inpainting keeps the observed pixels, as vir restore's data consistency does)

    python scripts/vae_ceiling.py --vae runs/small/vae.safetensors --clips footage/bigbuckbunny.mp4
    python scripts/vae_ceiling.py --vae runs/small/vae/state.pt --preset small ...   (mid-training state)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from instantvir_cli.classical import classical_restorer
from instantvir_cli.metrics import QualityMeter
from instantvir_cli.models.checkpoint import load_checkpoint
from instantvir_cli.models.presets import config_from_dict
from instantvir_cli.models.vae import LeanVAE, VAEConfig, vae_config
from instantvir_cli.ops import build_operator
from instantvir_cli.video import VideoReader


def load_vae(path: Path, preset: str) -> LeanVAE:
    """A VAE from a vir checkpoint (module `vae`) or from a distill stage's state.pt (trusted, own file)."""
    if path.suffix == ".safetensors":
        ckpt = load_checkpoint(path)
        vae = LeanVAE(config_from_dict(VAEConfig, ckpt.header["vae"]))
        vae.load_state_dict(ckpt.state_dict("vae"))
    else:
        state = torch.load(path, weights_only=False, map_location="cpu")  # our own training state
        vae = LeanVAE(vae_config(preset))
        vae.load_state_dict({k.removeprefix("vae."): v for k, v in state["modules"]["vae"].items()})
    return vae.eval()


def psnr(ref: torch.Tensor, test: torch.Tensor) -> float:
    meter = QualityMeter(ssim=False)
    meter.update(ref, test)
    return meter.result().psnr


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", type=Path, required=True)
    ap.add_argument("--preset", default="small", help="VAE preset of a state.pt")
    ap.add_argument("--clips", nargs="+", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=17, help="1 + 4k frames from the start of each clip")
    args = ap.parse_args()
    vae = load_vae(args.vae, args.preset)
    print("| clip | task | classical | plain oracle | residual oracle |\n|---|---|---|---|---|")
    for clip in args.clips:
        with VideoReader(clip, block_size=args.frames) as reader:
            x = next(iter(reader)).x
        H, W = x.shape[-2] - x.shape[-2] % 8, x.shape[-1] - x.shape[-1] % 8
        x = x[..., :H, :W]
        rec = vae.decode(vae.encode(x)).clamp(-1, 1)
        for task in ("inpaint", "deblur", "sr4x"):
            op = build_operator(task, H, W)
            y = torch.round((op.A(x).clamp(-1, 1) + 1) * 127.5) / 127.5 - 1   # 8-bit, as a file holds it
            x_init = classical_restorer(op).push(y)
            residual = (x_init + rec - vae.decode(vae.encode(x_init))).clamp(-1, 1)
            if task == "inpaint":
                residual = torch.where(op.mask_like(y) > 0.5, y, residual)
            print(f"| {clip.name} | {task} | {psnr(x, x_init):.2f} | {psnr(x, rec):.2f} | {psnr(x, residual):.2f} |")


if __name__ == "__main__":
    main()
