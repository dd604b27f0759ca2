"""What the stages leave behind, and how they read models from disk.

Artifacts in the run folder (each a vir `.safetensors` checkpoint, `models.checkpoint` format):

    vae.safetensors         module `vae`;      header: vae, vae_preset, latent_scale, provenance
    teacher.safetensors     module `teacher`;  header: dit, dit_preset, vae, provenance
    instantvir.safetensors  the export `vir restore --checkpoint` loads:
        modules  `vae` (the student-side LeanVAE), `student_<task>` per task
        header   vae, vae_preset, dit, dit_preset,
                 tasks: {task: {module, student (StudentConfig), operator (op.to_dict() of
                        the training operator), consistency, init, residual, delta, correction_ema[, vae_module]}},
                 provenance: {recipe (the effective config), data (clip names), steps
                        (per stage), git (revision), date}

`vae.init`, `teacher.vae` and `teacher.init` read vir checkpoints (modules `vae`, `teacher`)
or foreign weights through the strict loaders of `models.foreign`, `models.wan_keys` and `models.leanvae_keys` (a published LeanVAE `.ckpt`,
Wan2.1 DiT weights).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torch

from instantvir_cli.errors import CheckpointError
from instantvir_cli.models.checkpoint import (
    WRITTEN_KEYS,
    load_checkpoint,
    make_header,
    read_header,
    save_checkpoint,
)
from instantvir_cli.models.dit import DiT, DiTConfig
from instantvir_cli.models.leanvae_keys import load_published_leanvae
from instantvir_cli.models.presets import config_from_dict, config_to_dict
from instantvir_cli.models.strict import load_module_state
from instantvir_cli.models.vae import LeanVAE, VAEConfig
from instantvir_cli.models.wan_keys import load_wan_dit

VAE_FILE, TEACHER_FILE, EXPORT_FILE = "vae.safetensors", "teacher.safetensors", "instantvir.safetensors"
ODE_FILE = "ode.safetensors"            # the ode stage's causal student, the student stage's start


def git_revision() -> str | None:
    """`git rev-parse HEAD` of the package's checkout, if it is one."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def provenance(recipe: dict, data: dict, steps: dict[str, int]) -> dict[str, Any]:
    return {"recipe": recipe, "data": data, "steps": dict(steps), "git": git_revision(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def artifact_id(path: Path) -> str | None:
    """A short identity of an artifact (its header's hash: changes with every write)."""
    if not path.is_file():
        return None
    return hashlib.sha256(json.dumps(read_header(path), sort_keys=True).encode()).hexdigest()[:16]


#################################################################################
#                                    Readers                                    #
#################################################################################


def load_vae(path: str | Path) -> tuple[LeanVAE, str]:
    """A LeanVAE from a vir checkpoint (module `vae`) or a published `.ckpt`; (vae, preset or "")."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        ck = load_checkpoint(path)
        if "vae" not in ck.header:
            raise CheckpointError(f"{path}: no 'vae' config in its header")
        cfg = config_from_dict(VAEConfig, ck.header["vae"])
        with torch.device("meta"):
            vae = LeanVAE(cfg)
        load_module_state(vae, ck.state_dict("vae"), f"VAE of {path.name}")
        return vae, ck.header.get("vae_preset") or ""
    return load_published_leanvae(str(path)), ""


def load_teacher(path: str | Path) -> tuple[DiT, str]:
    """A DiT from a vir checkpoint (module `teacher` or `dit`) or Wan2.1 weights; (dit, preset or "")."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        try:
            header = read_header(path)
        except CheckpointError as err:
            if "without a vir header" not in str(err):
                raise
            return load_wan_dit(path), ""
        ck = load_checkpoint(path)
        cfg = config_from_dict(DiTConfig, header["dit"])
        name = "teacher" if "teacher" in ck.modules else "dit"
        with torch.device("meta"):
            dit = DiT(cfg)
        load_module_state(dit, ck.state_dict(name), f"teacher of {path.name}")
        return dit, header.get("dit_preset") or ""
    return load_wan_dit(path), ""


#################################################################################
#                                    Writers                                    #
#################################################################################


def save_vae(path: Path, vae: LeanVAE, preset: str, latent_scale: float, prov: dict) -> Path:
    header = make_header(vae=vae.cfg, vae_preset=preset, latent_scale=latent_scale, provenance=prov)
    return save_checkpoint(path, {"vae": vae.state_dict()}, header)


def save_teacher(path: Path, sd: dict, cfg: DiTConfig, preset: str, vae_cfg: VAEConfig, prov: dict) -> Path:
    header = make_header(dit=cfg, dit_preset=preset, vae=vae_cfg, provenance=prov)
    return save_checkpoint(path, {"teacher": sd}, header)


def save_export(path: Path, vae: LeanVAE, vae_preset: str, dit_cfg: DiTConfig, dit_preset: str,
                students: dict[str, dict], prov: dict, text: dict | None = None) -> Path:
    """The file `vir restore --checkpoint` loads.

    `students`: {task: {"state": state dict, "student": StudentConfig, "operator": op.to_dict(),
    "decode": DecodeSpec, "vae": the task's own fine-tuned VAE state or None}}. A task with its
    own VAE names it in `vae_module` (module `vae_<task>`). A text student's `text`:
    {"header": {prompt, negative_prompt, encoder, tokenizer, length}, "prompt": (Lc, D) context of
    that prompt} goes into the header's `text` and the module `text`.
    """
    tasks, modules = {}, {"vae": vae.state_dict()}
    if text is not None:
        modules["text"] = {"prompt": text["prompt"]}
    for task, s in students.items():
        tasks[task] = {"module": f"student_{task}", "student": config_to_dict(s["student"]),
                       "operator": s["operator"], **s["decode"].to_entry()}
        modules[f"student_{task}"] = s["state"]
        if s.get("vae") is not None:
            tasks[task]["vae_module"] = f"vae_{task}"
            modules[f"vae_{task}"] = s["vae"]
    header = make_header(vae=vae.cfg, vae_preset=vae_preset, dit=dit_cfg, dit_preset=dit_preset,
                         tasks=tasks, provenance=prov, **({"text": text["header"]} if text else {}))
    return save_checkpoint(path, modules, header)


#################################################################################
#                           Latent scale, folded into the VAE                   #
#################################################################################


@torch.no_grad()
def fold_latent_scale(vae: LeanVAE, scale: float) -> None:
    """Make the VAE's latents `1 / scale` times smaller, exactly, by rescaling its weights.

    z = phi h becomes z' = z / scale with phi' = phi / scale; the decoder's Q z = Q' z' with
    Q' = Q scale; each ISTA step r = h - a phi^T (phi h - z) keeps its value with a' = a scale^2;
    the posterior log-variance shifts by -2 log scale. Decoding E(x) is unchanged.
    """
    b = vae.bottleneck
    b.phi.div_(scale)
    b.Q.mul_(scale)
    for step in b.steps:
        step.step_size.mul_(scale ** 2)
    vae.logvar.bias.sub_(2.0 * float(torch.log(torch.tensor(scale))))


__all__ = ["EXPORT_FILE", "TEACHER_FILE", "VAE_FILE", "artifact_id", "compact_checkpoint", "fold_latent_scale",
           "git_revision", "load_teacher", "load_vae", "provenance", "save_export", "save_teacher", "save_vae"]


#################################################################################
#                         Shipping: a smaller copy of an export                 #
#################################################################################


def compact_checkpoint(src: Path, dst: Path, storage: str = "int8") -> Path:
    """Re-write checkpoint `src` as `dst` with `storage` (checkpoint.STORAGES): the same header and
    modules, weight matrices as int8 with per-row scales (how the default model ships)."""
    ck = load_checkpoint(src)
    header = {k: v for k, v in ck.header.items() if k not in WRITTEN_KEYS}
    return save_checkpoint(dst, ck.modules, header, storage=storage)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m instantvir_cli.distill.export",
                                 description="Write a compact (int8-weight) copy of a vir checkpoint.")
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--storage", default="int8", choices=["fp32", "int8"])
    args = ap.parse_args(argv)
    out = compact_checkpoint(args.src, args.dst, args.storage)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({args.storage})")


if __name__ == "__main__":
    main()
