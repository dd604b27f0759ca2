"""A small random-weight InstantViR checkpoint in the format `vir restore` loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from instantvir_cli.models.checkpoint import make_header, save_checkpoint
from instantvir_cli.models.dit import DiTConfig
from instantvir_cli.models.student import CausalStudent, StudentConfig
from instantvir_cli.models.vae import LeanVAE, vae_config
from instantvir_cli.ops import build_operator


def tiny_models(seed: int = 0, cache_blocks: int | None = None) -> tuple[LeanVAE, CausalStudent]:
    """A tiny LeanVAE and a tiny causal student with random (non-identity) weights."""
    torch.manual_seed(seed)
    vcfg = vae_config("tiny")
    dcfg = DiTConfig(dim=48, depth=2, heads=2, ffn_dim=96, in_channels=vcfg.latent_channels,
                     out_channels=vcfg.latent_channels)
    vae = LeanVAE(vcfg).eval()
    student = CausalStudent(dcfg, StudentConfig(block_frames=3, cache_blocks=cache_blocks)).eval()
    for p in student.parameters():          # zero-initialized output layers would make v = 0
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.02)
    return vae, student


def save_tiny_checkpoint(path: Path, tasks=("inpaint", "deblur", "sr4x"), **entry) -> Path:
    """Write a checkpoint holding one tiny student per task and a shared tiny VAE; `entry` adds
    fields to every task's header entry (e.g. init="fast", residual=True)."""
    vae, student = tiny_models(cache_blocks=6)
    modules = {"vae": vae.state_dict()}
    entries = {}
    for t in tasks:
        modules[f"student_{t}"] = student.state_dict()
        entries[t] = {"module": f"student_{t}", "student": dataclasses.asdict(student.student_config),
                      "operator": build_operator(t, 64, 64).to_dict(), "consistency": True, **entry}
    header = make_header(vae=vae.cfg, vae_preset="tiny", dit=student.config, dit_preset="custom", tasks=entries,
                         provenance={"recipe": "tests (random weights)"})
    return save_checkpoint(path, modules, header)
