"""One student distill iteration on random weights, timed (the model part of scripts/gpu_smoke.sh).

    python -m instantvir_cli.distill.smoke OUT.json            # full size: Wan2.1-1.3B, lean16, umT5-XXL, 832x480x81
    python -m instantvir_cli.distill.smoke OUT.json --tiny     # the same code at tiny width (CPU, seconds)

Every model is built on the device with random weights (nothing downloaded): the teacher, the
causal student and the critic (the teacher's architecture), umT5's encoder with a tokenizer
trained locally (`models.tiny_wan.write_tokenizer`), the LeanVAE. As in a run, the prompt and the
negative prompt are encoded first (512 tokens, the encoder in bf16 on CUDA) and the encoder freed
before the other models are built (its peak reported apart). One iteration: y = A(x) for sr4x,
z_in = E(init(y)), z_hat = student(z_in) under the block-causal mask with gradient checkpointing,
the measurement term through the decoder, the DMD prior with the guided teacher (two passes) and
the critic, a student AdamW step, then a critic flow-matching step on sg(z_hat). Writes seconds per iteration (the last of
`--iters`), peak memory and the models' sizes as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import tempfile
import time
from pathlib import Path

import torch


def _sizes(tiny: bool):
    from instantvir_cli.models.dit import DIT_PRESETS
    from instantvir_cli.models.vae import VAE_PRESETS

    if tiny:
        dit = dataclasses.replace(DIT_PRESETS["tiny"], in_channels=16, out_channels=16, text_dim=32)
        vae = dataclasses.replace(VAE_PRESETS["tiny"], latent_channels=16)
        text = dict(d_model=32, d_kv=16, num_heads=2, d_ff=64, num_layers=2)
        return dit, vae, text, (9, 32, 64)
    from instantvir_cli.distill.plan import UMT5_XXL

    dit = dataclasses.replace(DIT_PRESETS["wan2.1-1.3b"], in_channels=16, out_channels=16)
    return dit, VAE_PRESETS["lean16"], {k: UMT5_XXL[k] for k in ("d_model", "d_kv", "num_heads", "d_ff", "num_layers")}, (81, 480, 832)


def _text_encoder(text: dict, device: torch.device, folder: Path):
    import transformers

    from instantvir_cli.distill.plan import UMT5_XXL
    from instantvir_cli.models.text import TextEncoder, encoder_dtype
    from instantvir_cli.models.tiny_wan import write_tokenizer

    tok = write_tokenizer(folder)
    cfg = transformers.UMT5Config(**{**UMT5_XXL, **text, "vocab_size": max(len(tok), 256) if text["d_model"] < 256
                                     else UMT5_XXL["vocab_size"]})
    with torch.device(device):
        model = transformers.UMT5EncoderModel._from_config(cfg, dtype=encoder_dtype(device))   # no fp32 copy
    model = model.eval().requires_grad_(False)
    return TextEncoder(model, tok)


def run(tiny: bool = False, iters: int = 2, device: str | None = None) -> dict:
    """One (or `iters`) student iterations; the report as a dict."""
    from instantvir_cli.distill.dist import enable_grad_checkpointing
    from instantvir_cli.distill.losses import DMD, FlowMatching, Measurement, BatchOperator, guided
    from instantvir_cli.models.dit import DiT
    from instantvir_cli.models.student import CausalStudent, StudentConfig
    from instantvir_cli.models.vae import LeanVAE

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    dit_cfg, vae_cfg, text, (T, H, W) = _sizes(tiny)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        enc = _text_encoder(text, dev, Path(tmp) / "tokenizer")
        context = enc.encode(["a man riding a bicycle down a city street"])      # (1, 512, text_dim) fp32
        negative = enc.encode([""])
    text_params = sum(p.numel() for p in enc.model.parameters())
    text_peak = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if cuda else None
    del enc                                           # as a run frees it (distill.captions.RunText)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    dit_cfg = dataclasses.replace(dit_cfg, text_dim=context.shape[-1])
    with torch.device(dev):
        teacher = DiT(dit_cfg).eval().requires_grad_(False)
        student = CausalStudent(dit_cfg, StudentConfig(block_frames=3, cache_blocks=6)).train()
        critic = DiT(dit_cfg).train()
        vae = LeanVAE(vae_cfg).eval().requires_grad_(False)
    for m in (student, critic):
        enable_grad_checkpointing(m)
    opt_s = torch.optim.AdamW(student.parameters(), lr=1e-5)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=1e-5)
    build_s = time.perf_counter() - t0
    op = BatchOperator.build("sr4x", {}, H, W, torch.zeros(1))
    meas, dmd, fm = Measurement("pixel"), DMD(), FlowMatching(8.0, 0.02, 0.98)
    auto = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(iters):
        t1 = time.perf_counter()
        seeds = torch.tensor([i])
        x = torch.rand(1, 3, T, H, W, device=dev) * 2 - 1
        with auto:
            y = op.A(x)
            with torch.no_grad():
                z_in = vae.encode(op.init(y))
            z_hat = student.restore(z_in, context)
            x_hat = vae.decode(z_hat)
            real = guided(teacher, context, negative, 4.5)
            loss_dmd, _ = dmd(z_hat, real, lambda z, t: critic(z, t, context), seeds)
            loss = meas(z_hat, y, z_in, op, vae, x_hat).mean() + loss_dmd.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_s.step()
        opt_s.zero_grad(set_to_none=True)
        with auto:
            loss_c = fm(lambda z, t: critic(z, t, context), z_hat.detach(), seeds).mean()
        loss_c.backward()
        opt_c.step()
        opt_c.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t1)
    return {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu", "tiny": tiny,
        "window": {"frames": T, "height": H, "width": W}, "latent": list(z_in.shape[1:]),
        "tokens": int(z_in.shape[2] * (z_in.shape[3] // 2) * (z_in.shape[4] // 2)),
        "params": {"dit": sum(p.numel() for p in teacher.parameters()),
                   "text_encoder": text_params,
                   "vae": sum(p.numel() for p in vae.parameters())},
        "build_s": round(build_s, 2), "iter_s": [round(t, 3) for t in times], "s_per_iter": round(times[-1], 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if cuda else None,
        "text_startup_peak_gib": text_peak,
        "loss": float(loss.detach()), "critic_loss": float(loss_c.detach()),
        "attention": "flex" if cuda else "chunked",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m instantvir_cli.distill.smoke", description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="JSON report to write")
    ap.add_argument("--tiny", action="store_true", help="tiny widths and a 9x32x64 window (the CPU form)")
    ap.add_argument("--iters", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        report = run(args.tiny, args.iters)
    except torch.cuda.OutOfMemoryError as err:       # the report says so; the smoke script goes on
        report = {"error": f"out of memory: {str(err).splitlines()[0]}", "tiny": args.tiny,
                  "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
