"""`extends`: a run config laid over another, table by table."""

from __future__ import annotations

from pathlib import Path

import pytest

from instantvir_cli.config import load_config, to_toml
from instantvir_cli.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_extends_overrides_keys_and_keeps_the_rest(tmp_path):
    (tmp_path / "base.toml").write_text('[run]\nname = "base"\nseed = 7\n[student]\nsteps = 10\nlr = 0.5\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "child.toml").write_text('extends = "../base.toml"\n[student]\nsteps = 20\n')
    cfg = load_config(sub / "child.toml")
    assert (cfg.run.name, cfg.run.seed) == ("base", 7)
    assert (cfg.student.steps, cfg.student.lr) == (20, 0.5)


def test_extends_chains_and_the_nearest_file_wins(tmp_path):
    (tmp_path / "a.toml").write_text('[run]\nname = "a"\nseed = 1\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n[run]\nname = "b"\n')
    (tmp_path / "c.toml").write_text('extends = "b.toml"\n[run]\nseed = 3\n')
    cfg = load_config(tmp_path / "c.toml")
    assert (cfg.run.name, cfg.run.seed) == ("b", 3)


def test_extends_cycle_missing_base_and_bad_value_are_config_errors(tmp_path):
    (tmp_path / "x.toml").write_text('extends = "y.toml"\n')
    (tmp_path / "y.toml").write_text('extends = "x.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "x.toml")
    (tmp_path / "m.toml").write_text('extends = "gone.toml"\n')
    with pytest.raises(ConfigError, match="gone.toml.*extended by"):
        load_config(tmp_path / "m.toml")
    (tmp_path / "n.toml").write_text("extends = 3\n")
    with pytest.raises(ConfigError, match="extends"):
        load_config(tmp_path / "n.toml")


def test_unknown_keys_in_an_extending_file_are_still_rejected(tmp_path):
    (tmp_path / "base.toml").write_text('[run]\nname = "base"\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[student]\nstepz = 3\n')
    with pytest.raises(ConfigError, match="stepz"):
        load_config(tmp_path / "child.toml")


def test_the_default_recipes_phases_differ_from_it_only_where_they_say():
    base = load_config(CONFIGS / "default.toml")
    cont = load_config(CONFIGS / "default-continue.toml")
    more = load_config(CONFIGS / "default-more-footage.toml")
    assert (base.student.steps, cont.student.steps, more.student.steps) == (1500, 4000, 7000)
    assert more.data.footage == ("bikes", "city", "carphone_pristine") and more.run.out == "runs/more-footage"
    same = to_toml(base).replace("steps = 1500", "steps = 4000")
    assert to_toml(cont) == same
