"""The `vir distill` config: TOML -> frozen dataclasses, strict keys and types, TOML round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from instantvir_cli.config import (
    DistillConfig,
    dit_model_config,
    from_dict,
    load_config,
    to_dict,
    to_toml,
    vae_model_config,
    with_overrides,
)
from instantvir_cli.distill.trainer import check_config, effective_config
from instantvir_cli.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = DistillConfig()
    assert load_config(write(tmp_path, to_toml(cfg))) == cfg


def test_overrides_round_trip(tmp_path):
    text = """
[run]
stages = ["teacher", "student"]
seed = 3
[vae]
preset = "tiny"
init = "vae.safetensors"
[teacher]
preset = "tiny"
[teacher.model]
depth = 3
patch = [1, 2, 2]
[student]
tasks = ["sr4x"]
meas_space = "latent"
[student.causal]
block_frames = 2
cache_blocks = -1
[student.sr4x]
kernel = "bicubic"
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.run.stages == ("teacher", "student") and cfg.student.tasks == ("sr4x",)
    assert cfg.teacher.model == {"depth": 3, "patch": [1, 2, 2]}
    assert cfg.student.causal.to_student_config().cache_blocks is None
    assert cfg.student.sr4x.kernel == "bicubic" and cfg.student.lr == 1e-4   # untouched default
    again = load_config(write(tmp_path, to_toml(cfg)))
    assert again == cfg and to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load_and_check(path):
    cfg = effective_config(path)
    assert isinstance(cfg, DistillConfig)
    assert load_config(path) == cfg


@pytest.mark.parametrize("text, message", [
    ("[run]\nsed = 1", r"^run\.sed: unknown key \(known in run: name, out, stages"),
    ("bogus = 1", r"^bogus: unknown key"),
    ("[student.causal]\nblocks = 3", r"^student\.causal\.blocks: unknown key"),
    ("[student]\nsteps = \"10\"", r"^student\.steps: expected integer, got string '10'"),
    ("[student]\nsteps = 1.5", r"^student\.steps: expected integer, got float 1\.5"),
    ("[student]\nlr = true", r"^student\.lr: expected float, got boolean True"),
    ("[run]\nstages = \"vae\"", r"^run\.stages: expected an array, got string"),
    ("[run]\nstages = [\"vae\", 2]", r"^run\.stages\[1\]: expected string, got integer 2"),
    ("[student]\nmeas_space = \"pixels\"", r"^student\.meas_space: expected one of pixel, latent, got 'pixels'"),
    ("[data]\nframes = 8", r"^data: frames and val_frames must be 1 \+ 4k"),
    ("[run]\nstages = [\"student\", \"vae\"]", r"^run: stages run in the order vae, teacher, ode, student"),
    ("[student]\ntasks = [\"denoise\"]", r"^student: tasks must be distinct names among inpaint, deblur, sr4x"),
    ("student = 3", r"^student: expected a table, got integer 3"),
])
def test_bad_keys_and_types_name_their_path(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_model_overrides_are_checked():
    with pytest.raises(ConfigError, match=r"^vae\.model\.width: unknown key"):
        vae_model_config(from_dict(DistillConfig, {"vae": {"model": {"width": 3}}}).vae)
    with pytest.raises(ConfigError, match=r"^teacher\.model\.depth: expected integer, got string"):
        dit_model_config(from_dict(DistillConfig, {"teacher": {"model": {"depth": "2"}}}).teacher, 16)
    with pytest.raises(ConfigError, match=r"^teacher\.model\.patch: expected an array of 3 items"):
        dit_model_config(from_dict(DistillConfig, {"teacher": {"model": {"patch": [1, 2]}}}).teacher, 16)
    from instantvir_cli.distill.trainer import check_config

    with pytest.raises(ConfigError, match=r"^teacher\.model\.text_dim: a text-conditioned teacher \(8\) needs a text encoder"):
        check_config(from_dict(DistillConfig, {"teacher": {"model": {"text_dim": 8}}}))
    with pytest.raises(ConfigError, match=r"^vae\.preset: unknown VAE preset 'huge'"):
        vae_model_config(from_dict(DistillConfig, {"vae": {"preset": "huge"}}).vae)
    dit = dit_model_config(from_dict(DistillConfig, {"teacher": {"preset": "tiny"}}).teacher, 4)
    assert dit.in_channels == dit.out_channels == 4            # follows the VAE's latent channels


def test_cross_table_checks():
    tiny = {"vae": {"preset": "tiny"}, "teacher": {"preset": "tiny"}}
    check_config(from_dict(DistillConfig, tiny))
    with pytest.raises(ConfigError, match=r"^data\.crop: 72 must be a multiple of the VAE's 8 times the DiT's patch 2"):
        check_config(from_dict(DistillConfig, {**tiny, "data": {"crop": 72}}))
    with pytest.raises(ConfigError, match=r"^student\.batch: 3 is not divisible by student\.accumulate = 2"):
        check_config(from_dict(DistillConfig, {**tiny, "student": {"batch": 3, "accumulate": 2}}))
    with pytest.raises(ConfigError, match=r"the architecture comes from vae\.init"):
        check_config(from_dict(DistillConfig, {**tiny, "vae": {"init": "x.ckpt", "model": {"dim_low": 8}}}))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[run\nseed = 1"))


def test_cli_overrides_and_frozen():
    cfg = with_overrides(DistillConfig(), out="somewhere")
    assert cfg.run.out == "somewhere" and DistillConfig().run.out == "runs/instantvir"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.seed = 1


def test_max_minutes_and_pack_are_checked(tmp_path):
    from instantvir_cli.config import with_overrides

    cfg = load_config(write(tmp_path, '[run]\nmax_minutes = 6\n[data]\npack = ".device-pack"\n'))
    assert cfg.run.max_minutes == 6.0 and cfg.data.pack == ".device-pack"
    assert with_overrides(cfg, max_minutes=0).run.max_minutes == 0.0
    with pytest.raises(ConfigError, match=r"run.max_minutes: expected a number in \[0, 1e\+06\], got -1"):
        load_config(write(tmp_path, "[run]\nmax_minutes = -1\n"))
    with pytest.raises(ConfigError, match="--max-minutes"):
        with_overrides(cfg, max_minutes=float("nan"))
