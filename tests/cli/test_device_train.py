"""scripts/pack_data.py and scripts/device_train.sh in its tiny CPU form (VIR_DEVICE_TINY=1), with
PyAV hidden as on the device: the steps the GPU run takes, known to work before a device is lent."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import assert_one_line_error, vir

ROOT = Path(__file__).parents[2]
TINY = ROOT / "configs" / "device-tiny.toml"


def pack_data(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "pack_data.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    """configs/device-tiny.toml's data (bikes, carphone_pristine, astronaut), fetched and packed."""
    root = tmp_path_factory.mktemp("pack") / "pack"
    p = pack_data(root, "--config", TINY, "--max-mib", 12)
    assert p.returncode == 0, p.stderr
    return root


def test_pack_data_writes_the_recipe_sources(tiny_pack):
    m = json.loads((tiny_pack / "manifest.json").read_text())
    e = {(x["kind"], x["name"]): x for x in m["entries"]}
    assert set(e) == {("video", "bikes"), ("image", "astronaut"), ("val", "carphone_pristine")}
    assert e[("video", "bikes")]["licence"] == "BSD" and e[("video", "bikes")]["split"] == "train"
    assert e[("video", "bikes")]["original_size"] == [640, 272] and e[("video", "bikes")]["scale"] < 1
    assert e[("val", "carphone_pristine")]["shape"] == [9, 64, 64, 3]
    assert sum(f.stat().st_size for f in tiny_pack.iterdir()) <= 12 << 20


def test_pack_data_refuses_test_clips(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{TINY}"\n[data]\nfootage = ["bikes", "earth"]\nval_clips = ["earth"]\n')
    p = pack_data(tmp_path / "pack", "--config", cfg)
    assert p.returncode == 9 and p.stderr.strip().splitlines() == [
        "error: data.val_clips: 'earth' is a test clip: test clips are never packed"], p.stderr
    assert not (tmp_path / "pack").exists()


def test_a_missing_or_stale_pack_is_one_line_exit_9(tiny_pack, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{TINY}"\n[data]\npack = "{tmp_path / "nowhere"}"\n')
    assert_one_line_error(vir("distill", "--config", cfg, "--out", tmp_path / "run"), 9)
    cfg.write_text(f'extends = "{TINY}"\n[data]\npack = "{tiny_pack}"\nval_size = 32\n')
    r = vir("distill", "--config", cfg, "--out", tmp_path / "run")
    assert_one_line_error(r, 9)
    assert "data.val_size: 32, but the pack" in r.stderr and not (tmp_path / "run").exists()


def test_device_train_script_tiny_without_pyav(tiny_pack, tmp_path):
    """PyAV, imageio-ffmpeg and scikit-image hidden (none is on the device); a 1 MiB limit on returned
    files, so the export comes back in parts that join into the file the run wrote."""
    blocked = tmp_path / "blocked"
    for name in ("av", "imageio_ffmpeg", "skimage"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f'raise ImportError("{name} is not on the device")\n')
    out = tmp_path / "out"
    env = {**os.environ, "VIR_DEVICE_TINY": "1", "PACK": str(tiny_pack), "OUT": str(out), "RUN": str(tmp_path / "run"),
           "PYTHON": sys.executable, "PYTHONPATH": str(blocked), "VIR_RETURN_MIB": "1"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "device_train.sh")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:] + (out / "train_log.txt").read_text()[-3000:]
    s = json.loads((out / "device_train.json").read_text())
    assert set(s["stages"]) == {"teacher", "student_sr4x", "student_deblur", "student_inpaint"}
    assert all(v["step"] == 3 and v["s_per_step"] > 0 for v in s["stages"].values())
    assert {"psnr", "classical_psnr"} <= set(s["validation"]["student_sr4x"])
    parts = s["export"]["files"]
    assert len(parts) >= 3 and parts[0] == "instantvir.safetensors.part1" and s["export"]["storage"] == "int8"
    assert all((out / p).stat().st_size <= 1 << 20 for p in parts)
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"".join((out / p).read_bytes() for p in parts))
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == s["export"]["sha256"]
    assert joined.read_bytes() == (tmp_path / "run" / "instantvir-int8.safetensors").read_bytes()
    from instantvir_cli.models.checkpoint import read_header

    h = read_header(joined)
    assert set(h["tasks"]) == {"sr4x", "deblur", "inpaint"} and h["storage"] == "int8"
    assert "exported" in (out / "train_log.txt").read_text()
