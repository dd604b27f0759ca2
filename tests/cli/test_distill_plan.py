"""`vir distill --dry-run --json`: the full-scale recipes on the meta device, weight files checked by
keys and shapes; and the bad weights a run stops on before it writes anything (exit 8 / 9)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from instantvir_cli.models.dit import DiT, DiTConfig
from instantvir_cli.models.tiny_wan import TEXT_DIM, write_tiny_wan
from instantvir_cli.models.wan_keys import to_wan_state_dict
from tests.cli.helpers import assert_one_line_error, vir

CONFIGS = Path(__file__).parents[2] / "configs"
WAN_13B_PARAMS = 1_418_996_800                       # Wan2.1-T2V-1.3B's DiT, mapped strictly
UMT5_XXL_ENCODER_PARAMS = 5_680_910_336


@pytest.fixture
def no_weights(monkeypatch):
    for name in ("WAN21_DIR", "LEANVAE_CKPT", "VIR_DATA", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("task,lr,meas,warmup", [("sr4x", 1e-4, 0.1, 2000), ("deblur", 5e-5, 1.0, 1000),
                                                  ("inpaint", 1e-4, 0.1, 1000)])
def test_recipe_dry_run_json(task, lr, meas, warmup, no_weights, tmp_path):
    cfg = CONFIGS / f"wan2.1-1.3b-{task}.toml"
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--dry-run", "--json", "--world", "8")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    m = plan["models"]
    assert m["student"]["params"] == m["critic"]["params"] == m["teacher"]["params"] == WAN_13B_PARAMS
    assert m["student"]["trained"] and m["student"]["sharded"] and not m["teacher"]["trained"]
    assert m["text_encoder"]["params"] == UMT5_XXL_ENCODER_PARAMS
    assert m["vae"]["params"] == 39_785_940                                    # lean16, the published LeanVAE
    assert {x["key"] for x in plan["missing"]} == {"vae.init", "teacher.vae", "text.encoder", "teacher.init"}
    assert plan["window"] == {"frames": 81, "height": 480, "width": 832}
    assert (plan["parallel"], plan["precision"], plan["grad_checkpointing"], plan["tasks"]) == ("fsdp", "bf16", True, [task])
    mem = plan["memory_per_gpu"]["student"]
    assert mem["tokens"] == 21 * 30 * 52 and mem["samples_per_gpu"] == 4
    assert 0 < mem["trained_states_gib"] < mem["total_gib"] < 40
    assert m["text_encoder"]["startup_only"] and plan["memory_per_gpu"]["startup"]["peak_gib"] < 16
    assert not (tmp_path / "run").exists()
    from instantvir_cli.config import load_config

    c = load_config(cfg).student
    assert (c.lr, c.meas_weight, c.dmd_warmup, c.ema, c.gt_weight, c.real_guidance) == (lr, meas, warmup, 0.999, 1.0, 4.5)


def test_memory_estimate_follows_the_formula(no_weights):
    from instantvir_cli.config import load_config
    from instantvir_cli.distill.plan import plan_run

    cfg = load_config(CONFIGS / "wan2.1-1.3b-sr4x.toml")
    P = WAN_13B_PARAMS
    fsdp = plan_run(cfg, 8)["memory_per_gpu"]["student"]
    states = (P * 20 // 8 + P * 16 // 8) / 2**30                       # student with EMA, critic without
    assert fsdp["trained_states_gib"] == pytest.approx(states, abs=0.01)
    ddp = plan_run(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, parallel="ddp")), 8)["memory_per_gpu"]["student"]
    assert ddp["trained_states_gib"] == pytest.approx((P * 24 + P * 20) / 2**30, abs=0.01)   # replicated + buckets
    L, D, F, N = 32760, 1536, 8960, 30
    assert fsdp["activations_gib"] == pytest.approx(4 * L * (N * D + 10 * D + 2 * F) * 2 / 2**30, abs=0.01)
    # frozen in fp32: the teacher and both VAEs; umT5-XXL is not among them (start-up only, then freed)
    assert fsdp["frozen_gib"] == pytest.approx((P + 126_892_531 + 39_785_940) * 4 / 2**30, abs=0.01)
    start = plan_run(cfg, 8)["memory_per_gpu"]["startup"]
    assert start["dtype"] == "bfloat16" and start["freed_before_training"]
    assert start["text_encoder_gib"] == pytest.approx(UMT5_XXL_ENCODER_PARAMS * 2 / 2**30, abs=0.01)
    b, Lt, Dt, Ft, H = 8, 512, 4096, 10240, 64
    act = (b * Lt * (4 * Dt + 3 * Ft) * 2 + 3 * b * H * Lt * Lt * 2) / 2**30
    assert start["activations_gib"] == pytest.approx(act, abs=0.01)
    assert start["peak_gib"] == pytest.approx(start["text_encoder_gib"] + act, abs=0.01)


# ------------------------------------------------------------------ weight files that exist

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_wan(tmp_path_factory.mktemp("tinywan"))


def wan_teacher(path: Path, bad_key: str | None = None, layout: str = "original") -> Path:
    cfg = DiTConfig(dim=128, depth=1, heads=1, ffn_dim=64, in_channels=16, out_channels=16, text_dim=TEXT_DIM)
    sd = to_wan_state_dict(DiT(cfg).state_dict(), layout)
    if bad_key:
        sd[bad_key] = torch.zeros(sd[bad_key].shape[0] + 1, *sd[bad_key].shape[1:])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_config(tmp_path: Path, teacher: Path, encoder: str = "${VIR_WAN_TINY}", prompt: str = "a car") -> Path:
    p = tmp_path / "run.toml"
    p.write_text(f"""
[run]
stages = ["student"]
threads = 1
[data]
footage = []
images = ["astronaut"]
val_clips = []
frames = 9
crop = 32
val_frames = 9
val_size = 32
[text]
encoder = "{encoder}"
[vae]
preset = "tiny"
[vae.model]
latent_channels = 16
[teacher]
init = "{teacher}"
vae = "${{VIR_WAN_TINY}}/vae"
[student]
tasks = ["sr4x"]
prompt = {json.dumps(prompt)}
""")
    return p


def test_existing_files_are_checked(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    cfg = write_config(tmp_path, wan_teacher(tmp_path / "t.safetensors"))
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["missing"] == []
    m = plan["models"]
    assert "Wan2.1 original" in m["teacher"]["source"] and "diffusers" in m["text_encoder"]["source"]
    assert m["teacher_vae"]["params"] > 0 and m["student"]["params"] == m["teacher"]["params"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dry", [True, False])
def test_wrong_shape_is_exit_8_naming_file_and_key_before_anything_is_written(tiny, tmp_path, monkeypatch, dry):
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    bad = wan_teacher(tmp_path / "bad.safetensors", bad_key="blocks.0.self_attn.q.weight")
    cfg = write_config(tmp_path, bad)
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--no-progress", *(["--dry-run"] if dry else []))
    assert_one_line_error(r, 8)
    assert "teacher.init" in r.stderr and "bad.safetensors" in r.stderr and "blocks.0.self_attn.q.weight" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dry", [True, False])
def test_wrong_layout_is_exit_8(tiny, tmp_path, monkeypatch, dry):
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    save_file({"foo.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    cfg = write_config(tmp_path, tmp_path / "other.safetensors")
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--no-progress", *(["--dry-run"] if dry else []))
    assert_one_line_error(r, 8)
    assert "other.safetensors" in r.stderr and "not a Wan2.1" in r.stderr
    assert not (tmp_path / "run").exists()


def test_wrong_vae_file_is_exit_8(tiny, tmp_path, monkeypatch):
    vae = tmp_path / "w" / "vae"
    shutil.copytree(tiny / "vae", vae)
    weights = next(vae.glob("*.safetensors"))
    from safetensors.torch import load_file

    sd = load_file(str(weights))
    k = sorted(sd)[0]
    sd[k] = torch.zeros(3, 3)
    save_file(sd, str(weights))
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    cfg = write_config(tmp_path, wan_teacher(tmp_path / "t.safetensors"))
    cfg.write_text(cfg.read_text().replace('vae = "${VIR_WAN_TINY}/vae"', f'vae = "{vae}"'))
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(r, 8)
    assert "teacher.vae" in r.stderr and k in r.stderr and not (tmp_path / "run").exists()


def test_text_student_without_tokenizer_is_exit_8(tiny, tmp_path, monkeypatch):
    shutil.copytree(tiny / "text_encoder", tmp_path / "lonely" / "text_encoder")
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    cfg = write_config(tmp_path, wan_teacher(tmp_path / "t.safetensors"), encoder=str(tmp_path / "lonely" / "text_encoder"))
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(r, 8)
    assert "text.tokenizer" in r.stderr and "no tokenizer folder" in r.stderr and not (tmp_path / "run").exists()


def test_prompt_longer_than_512_tokens_is_exit_9(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("VIR_WAN_TINY", str(tiny))
    cfg = write_config(tmp_path, wan_teacher(tmp_path / "t.safetensors"), prompt="cat " * 600)
    for dry in (["--dry-run"], []):
        r = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--no-progress", *dry)
        assert_one_line_error(r, 9)
        assert "student.prompt" in r.stderr and "more than the text encoder's 512" in r.stderr
        assert not (tmp_path / "run").exists()


def test_json_needs_dry_run(tmp_path):
    r = vir("distill", "--config", CONFIGS / "tiny.toml", "--out", tmp_path / "run", "--json")
    assert r.exit_code == 2 and not (tmp_path / "run").exists()
