"""What a run builds, without building it: `vir distill --dry-run --json`, and the weight check of a run.

    plan = plan_run(cfg, world=8)          # every model on the meta device; weight files checked
    json.dumps(plan)                       # per model: params, dtype, source; memory per GPU

Every model the run's stages need is built on the meta device (no allocation). A weight file that
exists is read for its keys, shapes and dtypes only (safetensors headers, memory-mapped pickles:
`models.foreign.meta_state_dict_file`) and checked strictly against its model through the same
key maps the loaders use; one that does not fit is CheckpointError naming the config key and the
file (exit 8). A missing file is listed in `missing` and its model built from the config's preset
(Wan2.1's VAE and umT5-XXL for the teacher VAE and the text encoder).

Memory per GPU, per stage (`memory`; bytes, world size W, documented in docs/training.md):

    trained model   P x (4 weights + 4 grads + 8 AdamW + 4 EMA if ema > 0), fp32 master copies;
                    / W under FSDP (run.parallel = "fsdp", the DiTs are sharded), x1 replicated
                    under DDP plus 4 P for DDP's gradient buckets
    frozen model    P x 4 (the trainer keeps them in fp32), replicated; the text encoder is not
                    one: it runs at start-up only (below) and is freed before training
    activations     b = batch / (W x accumulate) samples of L tokens, width D, FFN F, depth N,
                    2 bytes (bf16) or 4 (fp32) a value: with checkpointing
                    b L (N D + 10 D + 2 F) bytes/value (the blocks' inputs plus one block's
                    recompute), without N b L (10 D + 2 F); the VAE's activations of the pixel
                    measurement term are not counted
    text start-up   (`startup`, rank 0, before any stage model is built) the encoder's P_t x e
                    bytes (e = 2 in bf16 on CUDA, 4 in fp32 on the CPU: `models.text.encoder_dtype`)
                    plus one pass over b_t = captions.ENCODE_BATCH prompts of L_t tokens:
                    b_t L_t (4 D_t + 3 F_t) e (a layer's hidden states, q/k/v, FFN branches) and
                    3 b_t H_t L_t^2 e (attention scores, biased scores, probabilities)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch

from instantvir_cli.config import DistillConfig, dit_model_config, vae_model_config
from instantvir_cli.errors import CheckpointError, ConfigError, VirError
from instantvir_cli.models.foreign import meta_state_dict_file, read_config_json
from instantvir_cli.models.strict import check_state_dict

# umT5-XXL's encoder (google/umt5-xxl, Wan2.1's text encoder)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                is_encoder_decoder=False, use_cache=False)

GIB = 2**30


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _dtype(sd: dict) -> str:
    kinds = sorted({str(v.dtype).replace("torch.", "") for v in sd.values() if v.is_floating_point()})
    return "/".join(kinds) or "none"


def _where(key: str, path: Path, err: VirError) -> CheckpointError:
    msg = str(err)
    return CheckpointError(f"{key}: {msg}" if str(path) in msg else f"{key}: {path}: {msg}")


#################################################################################
#                          weight files, shapes only                            #
#################################################################################


def _vir_module(path: Path, names: tuple[str, ...]) -> tuple[dict, dict, str]:
    """(header, {key: meta tensor} of the first module in `names`, module name) of a vir file."""
    from instantvir_cli.models.checkpoint import read_header

    header = read_header(path)
    sd = meta_state_dict_file(path)
    for name in names:
        part = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + "/") and "@" not in k}
        if part:
            return header, part, name
    raise CheckpointError(f"{path}: no module {' or '.join(names)} in the file")


def _has_vir_header(path: Path) -> bool:
    from instantvir_cli.models.checkpoint import read_header

    if not (path.is_file() and path.suffix == ".safetensors"):
        return False
    try:
        read_header(path)
    except CheckpointError as err:
        if "without a vir header" in str(err):
            return False
        raise
    return True


def dit_from_file(path: Path):
    """(DiTConfig, dtype, layout) of a DiT weights file, its keys and shapes checked strictly."""
    from instantvir_cli.models.dit import DiT, DiTConfig
    from instantvir_cli.models.presets import config_from_dict
    from instantvir_cli.models.wan_keys import convert_wan_state_dict, detect_wan_layout, wan_config_from_state_dict

    if _has_vir_header(path):
        header, sd, name = _vir_module(path, ("teacher", "dit", "student"))
        cfg = config_from_dict(DiTConfig, header["dit"])
        with torch.device("meta"):
            check_state_dict(DiT(cfg).state_dict(), sd, f"{name} of {path}")
        return cfg, _dtype(sd), "vir"
    sd = meta_state_dict_file(path)
    cfg = wan_config_from_state_dict(sd)
    convert_wan_state_dict(sd, cfg)
    return cfg, _dtype(sd), f"Wan2.1 {detect_wan_layout(sd)}"


def leanvae_from_file(path: Path):
    """(VAEConfig, dtype, layout) of a LeanVAE (vir checkpoint or the published `.ckpt`), checked."""
    from instantvir_cli.models.foreign import load_pickle
    from instantvir_cli.models.leanvae_keys import leanvae_state_dict_from_published, vae_config_from_published_args
    from instantvir_cli.models.presets import config_from_dict
    from instantvir_cli.models.vae import LeanVAE, VAEConfig

    if path.suffix == ".safetensors":
        header, sd, _ = _vir_module(path, ("vae",))
        if "vae" not in header:
            raise CheckpointError(f"{path}: no 'vae' config in its header")
        cfg = config_from_dict(VAEConfig, header["vae"])
        with torch.device("meta"):
            check_state_dict(LeanVAE(cfg).state_dict(), sd, f"VAE of {path}")
        return cfg, _dtype(sd), "vir"
    ckpt = load_pickle(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: expected a dict with 'args' and 'state_dict' (the published LeanVAE)")
    args = ckpt.get("args") or {}
    cfg = vae_config_from_published_args(vars(args) if not isinstance(args, dict) else args)
    sd = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in ckpt["state_dict"].items()}
    leanvae_state_dict_from_published(sd, cfg)
    return cfg, _dtype(sd), "LeanVAE .ckpt"


def _wan_vae_model(cfg: dict):
    from instantvir_cli.models.wan_vae import _from_config

    with torch.device("meta"):
        return _from_config(cfg)


def wan_vae_from_file(path: Path):
    """(meta AutoencoderKLWan, dtype, layout) of Wan's VAE (`Wan2.1_VAE.pth`, a diffusers vae/ folder)."""
    from instantvir_cli.models.wan_vae import convert_wan_vae_state_dict, wan_vae_config_from_state_dict

    p = path / "vae" if path.is_dir() and (path / "vae").is_dir() else path
    if p.is_dir():
        _, raw = read_config_json(p, "a diffusers vae/ folder")
        model = _wan_vae_model({k: v for k, v in raw.items() if not k.startswith("_")})
        sd = meta_state_dict_file(p)
        check_state_dict(model.state_dict(), sd, f"Wan VAE of {p}")
        return model, _dtype(sd), "diffusers"
    sd = meta_state_dict_file(p)
    cfg = wan_vae_config_from_state_dict(sd)
    model = _wan_vae_model(cfg)
    convert_wan_vae_state_dict(sd, cfg, model.state_dict())
    return model, _dtype(sd), "Wan2.1 .pth"


def _umt5(config: dict):
    from instantvir_cli.models.text import _transformers

    T = _transformers()
    with torch.device("meta"):
        return T.UMT5EncoderModel(T.UMT5Config(**config))


def umt5_from_file(path: Path):
    """(meta UMT5EncoderModel, dtype, layout) of a text encoder, checked like `models.text.load_umt5`."""
    from instantvir_cli.models.text import _TIED, _locate, convert_wan_t5, umt5_config_from_wan

    weights, _ = _locate(path, None) if path.is_dir() and (path / "text_encoder").is_dir() else (path, None)
    sd = meta_state_dict_file(weights)
    if weights.is_dir():
        cfg_file, raw = read_config_json(weights, "a transformers text_encoder/ folder")
        if raw.get("model_type") not in ("umt5", "t5"):
            raise CheckpointError(f"{cfg_file}: model_type {raw.get('model_type')!r}, expected 'umt5'")
        raw = {k: v for k, v in raw.items() if k not in ("architectures", "model_type", "transformers_version")}
        model = _umt5({**raw, "dropout_rate": 0.0, "use_cache": False})
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != _TIED}
        check_state_dict(expected, {k: v for k, v in sd.items() if k != _TIED}, f"umT5 encoder of {weights}")
        return model, _dtype(sd), "diffusers"
    model = _umt5(umt5_config_from_wan(sd).to_dict())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != _TIED}
    convert_wan_t5(sd, expected)
    return model, _dtype(sd), "Wan2.1 .pth"


#################################################################################
#                                 the plan                                      #
#################################################################################


def _resolve(value: str, key: str, missing: list) -> Path | None:
    """The path of a weight key, or None (listed in `missing`) when a variable is unset or it is absent."""
    from instantvir_cli.distill.weights import resolve_path

    if not value:
        return None
    try:
        path = resolve_path(value, key)
    except ConfigError as err:
        missing.append({"key": key, "path": value, "why": str(err).split(": ", 1)[1]})
        return None
    if not path.exists():
        missing.append({"key": key, "path": str(path), "why": "not found"})
        return None
    return path


def _entry(params: int, dtype: str, source: str, trained: bool, sharded: bool, **more) -> dict:
    return {"params": params, "dtype": dtype, "source": source, "trained": trained, "sharded": sharded, **more}


def check_weight_files(cfg: DistillConfig, caption_files: dict[Path, str] | None = None) -> dict:
    """Every weight file the config names that exists, checked (CheckpointError naming the key and
    file otherwise), and with a text encoder the prompts and `caption_files` ({file: text}, see
    `check_prompts`); returns {"models": ..., "missing": [...]} as `plan_run` reports them."""
    from instantvir_cli.models.dit import DiT
    from instantvir_cli.models.vae import LeanVAE

    missing: list[dict] = []
    models: dict[str, dict] = {}
    stages = cfg.run.stages
    fsdp = cfg.run.parallel == "fsdp"

    def checked(key: str, fn, path: Path):
        try:
            return fn(path)
        except CheckpointError as err:
            raise _where(key, path, err) from None

    # the student's VAE
    path = _resolve(cfg.vae.init, "vae.init", missing)
    if path is not None:
        vcfg, dtype, layout = checked("vae.init", leanvae_from_file, path)
        source = f"{path} ({layout})"
    else:
        vcfg, dtype, source = vae_model_config(cfg.vae), "float32", f"preset {cfg.vae.preset}"
    with torch.device("meta"):
        vae_params = _params(LeanVAE(vcfg))
    models["vae"] = _entry(vae_params, dtype, source, "vae" in stages or cfg.student.train_vae != "none", False)

    # the teacher's VAE
    path = _resolve(cfg.teacher.vae, "teacher.vae", missing)
    if cfg.teacher.vae:
        from instantvir_cli.models.wan_vae import is_wan_vae

        if path is not None and not is_wan_vae(path):
            tcfg, dtype, layout = checked("teacher.vae", leanvae_from_file, path)
            with torch.device("meta"):
                n = _params(LeanVAE(tcfg))
        elif path is not None:
            model, dtype, layout = checked("teacher.vae", wan_vae_from_file, path)
            n = _params(model)
        else:
            model, dtype, layout = _wan_vae_model({}), "float32", "Wan2.1's AutoencoderKLWan, assumed"
            n = _params(model)
        models["teacher_vae"] = _entry(n, dtype, f"{path or cfg.teacher.vae} ({layout})", False, False)

    # the text encoder
    path = _resolve(cfg.text.encoder, "text.encoder", missing)
    text = None
    if cfg.text.encoder:
        if path is not None:
            model, dtype, layout = checked("text.encoder", umt5_from_file, path)
        else:
            model, dtype, layout = _umt5(UMT5_XXL), "bfloat16", "umT5-XXL encoder, assumed"
        text = model.config
        models["text_encoder"] = _entry(_params(model), dtype, f"{path or cfg.text.encoder} ({layout})", False, False,
                                        startup_only=True)
        if path is not None:
            check_prompts(cfg, path, caption_files or {})

    # the teacher, the student and the critic (the teacher's architecture)
    path = _resolve(cfg.teacher.init, "teacher.init", missing)
    if path is not None:
        dcfg, dtype, layout = checked("teacher.init", dit_from_file, path)
        source = f"{path} ({layout})"
    else:
        dcfg, dtype, source = dit_model_config(cfg.teacher, vcfg.latent_channels), "float32", f"preset {cfg.teacher.preset}"
    with torch.device("meta"):
        n = _params(DiT(dcfg))
    models["teacher"] = _entry(n, dtype, source, "teacher" in stages, fsdp and "teacher" in stages,
                               arch=dataclasses.asdict(dcfg))
    if "ode" in stages:
        models["ode"] = _entry(n, models["teacher"]["dtype"], "the teacher's weights", True, fsdp)
    if "student" in stages:
        for key, name, on in (("weights", "student", True), ("critic_weights", "critic", cfg.student.dmd_weight > 0)):
            value = getattr(cfg.student, key)
            p = _resolve(value, f"student.{key}", missing)
            src, dt = "the teacher's weights", models["teacher"]["dtype"]
            if p is not None:
                other, dt, layout = checked(f"student.{key}", dit_from_file, p)
                if other != dcfg:
                    raise CheckpointError(f"student.{key}: {p}: the architecture differs from the teacher's")
                src = f"{p} ({layout})"
            elif value:
                src = f"{value} (missing)"
            if on:
                models[name] = _entry(n, dt, src, True, fsdp)
    return {"models": models, "missing": missing, "dit": dcfg, "vae": vcfg, "text": text}


def check_prompts(cfg: DistillConfig, encoder: Path, caption_files: dict[Path, str] | None = None) -> None:
    """The tokenizer beside `encoder` (or [text] tokenizer) exists and reads (CheckpointError naming
    it), every prompt the config names fits the encoder's length (ConfigError naming the key), and
    every caption file ({file: its text}) is non-empty and fits (ConfigError naming the file)."""
    from instantvir_cli.distill.weights import resolve_path
    from instantvir_cli.models.text import _locate, count_tokens, load_tokenizer

    tok = resolve_path(cfg.text.tokenizer, "text.tokenizer") if cfg.text.tokenizer else None
    try:
        _, folder = _locate(encoder, tok)
        tokenizer = load_tokenizer(folder)
    except CheckpointError as err:
        raise CheckpointError(f"text.tokenizer: {err}") from None
    prompts = {"student.prompt": cfg.student.prompt, "student.negative_prompt": cfg.student.negative_prompt,
               "data.caption": cfg.data.caption,
               **{f"data.captions.{k}": v for k, v in cfg.data.captions.items() if isinstance(v, str)}}
    for key, text in prompts.items():
        n = count_tokens(tokenizer, text) if text else 0
        if n > cfg.text.length:
            raise ConfigError(f"{key}: {n} tokens, more than the text encoder's {cfg.text.length}")
    for file, text in (caption_files or {}).items():
        if not text:
            raise ConfigError(f"caption file {file}: empty (write the clip's caption, or remove the file)")
        n = count_tokens(tokenizer, text)
        if n > cfg.text.length:
            raise ConfigError(f"caption file {file}: {n} tokens, more than the text encoder's {cfg.text.length}")


def _bytes(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype.split("/")[0], 4)


def text_startup(cfg: DistillConfig, models: dict, tcfg) -> dict | None:
    """The text encoder's memory at start-up, on the rank that encodes (the module docstring)."""
    from instantvir_cli.distill.captions import ENCODE_BATCH
    from instantvir_cli.models.text import encoder_dtype

    m = models.get("text_encoder")
    if m is None or tcfg is None:
        return None
    dtype = encoder_dtype("cuda" if cfg.run.device in ("cuda", "auto") else "cpu")
    e = torch.empty((), dtype=dtype).element_size()
    b, Lt, D, F, H = ENCODE_BATCH, cfg.text.length, tcfg.d_model, tcfg.d_ff, tcfg.num_heads
    weights = m["params"] * e
    act = b * Lt * (4 * D + 3 * F) * e + 3 * b * H * Lt * Lt * e
    return {"text_encoder_gib": round(weights / GIB, 2), "activations_gib": round(act / GIB, 2),
            "peak_gib": round((weights + act) / GIB, 2), "dtype": str(dtype).replace("torch.", ""),
            "prompts_per_pass": b, "freed_before_training": True}


def memory_per_gpu(cfg: DistillConfig, models: dict, dcfg, vcfg, world: int, bf16: bool, tcfg=None) -> dict:
    """Bytes per GPU of each stage the run has, and of the text start-up (the module docstring)."""
    fsdp = cfg.run.parallel == "fsdp"
    act_bytes = 2 if bf16 else 4
    ch, cw = cfg.data.crop_size
    _, Tl, hl, wl = vcfg.latent_shape(cfg.data.frames, ch, cw)
    L = (Tl // dcfg.patch[0]) * (hl // dcfg.patch[1]) * (wl // dcfg.patch[2])
    D, Fd, N = dcfg.dim, dcfg.ffn_dim, dcfg.depth
    out = {}
    for stage, trained_names, frozen_names, o in (
            ("vae", ["vae"], [], cfg.vae),
            ("teacher", ["teacher"], ["vae", "teacher_vae"], cfg.teacher),
            ("ode", ["ode"], ["teacher", "teacher_vae", "vae"], cfg.ode),
            ("student", ["student", "critic"] + (["vae"] if cfg.student.train_vae != "none" else []),
             ["teacher", "teacher_vae"] + (["vae"] if cfg.student.train_vae == "none" else []),
             cfg.student)):
        if stage not in cfg.run.stages:
            continue
        b = max(1, math.ceil(o.batch / (world * o.accumulate)))
        states, frozen = 0, 0
        for name in trained_names:
            m = models.get(name)
            if m is None:
                continue
            ema = o.ema > 0 and name != "critic"
            per = 4 + 4 + 8 + (4 if ema else 0)
            shard = m["sharded"] and world > 1
            states += m["params"] * per // (world if shard else 1) + (0 if shard or world == 1 else 4 * m["params"])
        for name in frozen_names:
            m = models.get(name)
            if m is not None:
                frozen += m["params"] * 4
        if stage == "vae":
            act = 0
        elif cfg.run.grad_checkpointing:
            act = b * L * (N * D + 10 * D + 2 * Fd) * act_bytes
        else:
            act = N * b * L * (10 * D + 2 * Fd) * act_bytes
        total = states + frozen + act
        out[stage] = {"trained_states_gib": round(states / GIB, 2), "frozen_gib": round(frozen / GIB, 2),
                      "activations_gib": round(act / GIB, 2), "total_gib": round(total / GIB, 2),
                      "samples_per_gpu": b, "tokens": L if stage != "vae" else None}
    startup = text_startup(cfg, models, tcfg)
    if startup is not None:
        out["startup"] = startup
    return out


def plan_run(cfg: DistillConfig, world: int | None = None) -> dict:
    """The dry run's report (JSON-ready): models, missing files, parallelism and memory per GPU."""
    world = world or int(os.environ.get("WORLD_SIZE", "1"))
    found = check_weight_files(cfg)
    bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and cfg.run.device in ("cuda",))
    ch, cw = cfg.data.crop_size
    return {
        "stages": list(cfg.run.stages),
        "world_size": world,
        "parallel": cfg.run.parallel,
        "precision": "bf16" if bf16 else cfg.run.precision,
        "grad_checkpointing": cfg.run.grad_checkpointing,
        "window": {"frames": cfg.data.frames, "height": ch, "width": cw},
        "tasks": list(cfg.student.tasks) if "student" in cfg.run.stages else [],
        "models": found["models"],
        "missing": found["missing"],
        "memory_per_gpu": memory_per_gpu(cfg, found["models"], found["dit"], found["vae"], world, bf16, found["text"]),
    }


def to_json(plan: dict) -> str:
    return json.dumps(plan, indent=2)


__all__ = ["UMT5_XXL", "check_prompts", "check_weight_files", "dit_from_file", "leanvae_from_file", "memory_per_gpu", "plan_run",
           "text_startup", "to_json", "umt5_from_file", "wan_vae_from_file"]
