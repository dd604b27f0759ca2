"""Hostile input, as the issue "Nothing silently wrong" found it: each case it lists, with the exit
code and the one line that must come instead of exit 0, a traceback or a wrong exit code."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from instantvir_cli.errors import InputCorrupt, InputUnreadable
from instantvir_cli.video import VideoReader
from tests.cli.helpers import assert_one_line_error, vir, write_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import media  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAST = ("--model", "classical", "--preset", "ultrafast", "--no-progress")


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def litter(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def run_vir(*args, fsize: int | None = None, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`vir ARGS` in a subprocess; with `fsize`, no file it writes may grow past that many bytes
    (RLIMIT_FSIZE: the kernel fails the write with EFBIG, as a full disk fails it with ENOSPC)."""
    def limit():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "instantvir_cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          timeout=600, **kw)


def assert_one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------- 1. truncated files
@pytest.mark.parametrize("fraction,present", [(0.5, 12), (0.9, 21)])
def test_a_truncated_mkv_is_exit_5_with_the_frame(clip_mkv24, tmp_path, fraction, present):
    short = cut(clip_mkv24, tmp_path / "short.mkv", fraction)
    n = len(frames_of(short))
    assert abs(n - present) <= 2          # what was restored silently before
    for cmd in (("restore", short, "-o", tmp_path / "out.mp4", "--task", "deblur", *FAST),
                ("degrade", short, tmp_path / "out.mkv", "--task", "deblur", "--no-progress")):
        result = vir(*cmd)
        assert_one_line_error(result, 5)
        assert "before the 2.00s its header declares" in result.stderr and f"read {n} frames" in result.stderr
        assert litter(tmp_path, {"short.mkv"}) == []


def test_tolerate_damage_restores_what_decodes_and_says_what_was_lost(clip_mkv24, tmp_path):
    short = cut(clip_mkv24, tmp_path / "short.mkv", 0.5)
    n = len(frames_of(short))
    out = tmp_path / "out.mkv"
    result = vir("restore", short, "-o", out, "--task", "deblur", "--lossless", "--tolerate-damage", *FAST)
    assert result.exit_code == 0, result.stderr
    assert f"{24 - n} frames lost" in result.stderr and f"restored the {n} frames that decode" in result.stderr
    assert len(frames_of(out)) == n


def test_a_truncated_file_of_1056_frames_cut_in_half(clip_mkv1056, tmp_path):
    half = cut(clip_mkv1056, tmp_path / "half.mkv", 0.5)
    with VideoReader(half, block_size=64) as reader, pytest.raises(InputCorrupt) as e:
        for _ in reader:
            pass
    missing = 1056 - reader.frames_read
    assert 400 < missing < 650 and f"about {missing} frames missing" in str(e.value)
    with VideoReader(clip_mkv1056, block_size=64) as reader:   # and the whole file reads without complaint
        assert sum(b.frames for b in reader) == 1056 and not reader.damage


# ----------------------------------------------------------------------------- 2. corrupt FFV1
def test_every_byte_mutation_of_a_degraded_ffv1_file_is_caught(clip_mkv24, tmp_path):
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip_mkv24, low, "--task", "deblur", "--no-progress").exit_code == 0
    clean, data, rng = frames_of(low), low.read_bytes(), random.Random(16)
    caught = silent = 0
    for _ in range(25):
        b = bytearray(data)
        pos = rng.randrange(len(b))
        b[pos] = (b[pos] + rng.randrange(1, 256)) % 256
        bad = tmp_path / "bad.mkv"
        bad.write_bytes(bytes(b))
        try:
            with VideoReader(bad, block_size=8) as reader:
                got = np.concatenate([((blk.x[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round() for blk in reader])
        except (InputCorrupt, InputUnreadable) as e:
            assert "\n" not in str(e)
            caught += 1
            continue
        silent += got.shape != clean.shape or not np.array_equal(got.astype(np.uint8), clean)
    assert silent == 0 and caught >= 20, (caught, silent)   # 23 of 25 mutations went through before


def test_a_crc_failure_names_its_frame(clip_mkv24, tmp_path):
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip_mkv24, low, "--task", "deblur", "--no-progress").exit_code == 0
    with av.open(str(low)) as c:                 # flip a byte in the middle of frame 9's packet
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    pos, size = packets[9]
    data = bytearray(low.read_bytes())
    data[pos + size // 2] ^= 0x40
    (tmp_path / "bad.mkv").write_bytes(bytes(data))
    result = vir("restore", tmp_path / "bad.mkv", "-o", tmp_path / "out.mp4", "--task", "deblur", *FAST)
    assert_one_line_error(result, 5)
    assert "frame 9 (t=0.75s) is damaged" in result.stderr and "FFV1 slice CRC" in result.stderr


# ----------------------------------------------------------------------------- 3. frame-size limit
def test_a_huge_frame_is_refused_before_it_is_decoded(huge_frame, tmp_path, monkeypatch):
    result = vir("restore", huge_frame, "-o", tmp_path / "out.mp4", "--task", "deblur", *FAST)
    assert_one_line_error(result, 4)
    assert "16000x16000" in result.stderr and "VIR_MAX_PIXELS" in result.stderr
    monkeypatch.setenv("VIR_MAX_PIXELS", "300000000")        # allowed: then memory is estimated first
    result = vir("restore", huge_frame, "-o", tmp_path / "out.mp4", "--task", "deblur", *FAST)
    assert_one_line_error(result, 4)
    assert "GiB" in result.stderr and "--block-frames" in result.stderr
    assert litter(tmp_path, set()) == []


# ----------------------------------------------------------------------------- 4. sidecar values
def _degraded(src: Path, tmp_path: Path, task: str) -> tuple[Path, Path]:
    low = tmp_path / f"{task}.mkv"
    assert vir("degrade", src, low, "--task", task, "--no-progress").exit_code == 0
    return low, low.with_name(low.name + ".vir.json")


@pytest.mark.parametrize("task,key,value,named", [
    ("deblur", "sigma", 1e308, "operator.sigma: expected a number in [0.05, 100]"),
    ("deblur", "sigma_y", 1e300, "operator.sigma_y: expected a number in [0, 1]"),
    ("deblur", "sigma", 1e-300, "operator.sigma: expected a number in [0.05, 100]"),
    ("deblur", "kernel_size", 1000001, "operator.kernel_size: expected an odd integer in [1, 1023]"),
    ("sr4x", "scale", 1000, "operator.scale: expected 4"),
    ("inpaint", "seed", 1.5, "operator.seed: expected an integer"),
    ("deblur", "height", "abc", "operator.height: expected an integer"),
    ("deblur", "consistency", "no", "operator.consistency: unknown key for deblur"),
    ("deblur", "task", "denoise", "operator.task: expected one of inpaint, deblur, sr4x"),
    ("inpaint", "width", 100000, "operator.width: expected an integer in [1, 65536]"),
    ("deblur", "width", 80, "does not match the video's 160x96"),
])
def test_a_bad_sidecar_value_is_exit_9_naming_the_key(clip_mkv24, tmp_path, task, key, value, named):
    low, sidecar = _degraded(clip_mkv24, tmp_path, task)
    data = json.loads(sidecar.read_text())
    data["operator"][key] = value
    sidecar.write_text(json.dumps(data))
    result = vir("restore", low, "-o", tmp_path / "out.mp4", *FAST)
    assert_one_line_error(result, 9)
    assert named in result.stderr, result.stderr


def test_an_inpaint_sidecar_of_100000x100000_is_refused_without_memory(clip_mkv24, tmp_path):
    low, sidecar = _degraded(clip_mkv24, tmp_path, "inpaint")
    data = json.loads(sidecar.read_text())
    data["operator"].update(height=65536, width=65536)
    sidecar.write_text(json.dumps(data))
    result = vir("restore", low, "-o", tmp_path / "o.mp4", *FAST)
    assert_one_line_error(result, 9)
    assert "65536x65536 frames" in result.stderr and "over vir's limit" in result.stderr


# ----------------------------------------------------------------------------- 5. mask_file
@pytest.fixture
def masked(clip_mkv24, tmp_path):
    """A clip degraded with a mask video beside it: (degraded video, sidecar dict, sidecar path)."""
    keep = (np.random.default_rng(0).random((24, 96, 160)) < 0.5).astype(np.uint8) * 255
    write_mask(tmp_path / "keep.mkv", keep)
    low = tmp_path / "holes.mkv"
    result = vir("degrade", clip_mkv24, low, "--task", "inpaint", "--mask", tmp_path / "keep.mkv", "--no-progress")
    assert result.exit_code == 0, result.stderr
    sidecar = low.with_name(low.name + ".vir.json")
    data = json.loads(sidecar.read_text())
    assert data["operator"]["mask_file"] == "keep.mkv" and len(data["operator"]["mask_sha256"]) == 64
    return low, data, sidecar


@pytest.mark.parametrize("name", ["/etc/shadow", "/no/such/file.png", "../keep.mkv", "sub/../../keep.mkv"])
def test_a_mask_file_outside_the_folder_is_refused_untouched(masked, tmp_path, name):
    low, data, sidecar = masked
    data["operator"]["mask_file"] = name
    sidecar.write_text(json.dumps(data))
    result = vir("restore", low, "-o", tmp_path / "out.mkv", *FAST)
    assert_one_line_error(result, 9)
    assert "operator.mask_file: expected a path relative to the sidecar's folder" in result.stderr
    # the same words whether the file exists or not: the sidecar learns nothing about it
    assert "not found" not in result.stderr and "denied" not in result.stderr


def test_a_symlink_out_of_the_folder_is_refused(masked, tmp_path):
    low, data, sidecar = masked
    outside = tmp_path.parent / f"{tmp_path.name}-outside.mkv"
    shutil.copy(tmp_path / "keep.mkv", outside)
    (tmp_path / "link.mkv").symlink_to(outside)
    data["operator"]["mask_file"] = "link.mkv"
    sidecar.write_text(json.dumps(data))
    result = vir("restore", low, "-o", tmp_path / "out.mkv", *FAST)
    assert_one_line_error(result, 9)
    assert "leads out of the sidecar's folder" in result.stderr
    outside.unlink()


def test_a_mask_file_with_another_hash_is_refused(masked, tmp_path):
    low, data, sidecar = masked
    keep = (np.random.default_rng(1).random((24, 96, 160)) < 0.5).astype(np.uint8) * 255
    write_mask(tmp_path / "keep.mkv", keep)                   # same name, other masks
    result = vir("restore", low, "-o", tmp_path / "out.mkv", *FAST)
    assert_one_line_error(result, 7)
    assert "is not the file the sidecar recorded" in result.stderr
    (tmp_path / "keep.mkv").unlink()
    assert_one_line_error(vir("restore", low, "-o", tmp_path / "out.mkv", *FAST), 7)


def test_a_mask_video_outside_the_output_folder_is_refused_by_degrade(clip_mkv24, tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "out").mkdir()
    write_mask(tmp_path / "masks" / "keep.mkv", np.full((24, 96, 160), 255, np.uint8))
    result = vir("degrade", clip_mkv24, tmp_path / "out" / "holes.mkv", "--task", "inpaint",
                 "--mask", tmp_path / "masks" / "keep.mkv", "--no-progress")
    assert_one_line_error(result, 2)
    assert "must be in the output's folder" in result.stderr and litter(tmp_path / "out", set()) == []


def test_an_image_mask_is_held_inline_by_the_sidecar(clip_mkv24, tmp_path):
    (tmp_path / "masks").mkdir()
    keep = (np.random.default_rng(2).random((96, 160)) < 0.4).astype(np.uint8) * 255
    write_mask(tmp_path / "masks" / "keep.png", keep)
    low = tmp_path / "holes.mkv"
    assert vir("degrade", clip_mkv24, low, "--task", "inpaint", "--mask", tmp_path / "masks" / "keep.png",
               "--no-progress").exit_code == 0
    op = json.loads(low.with_name("holes.mkv.vir.json").read_text())["operator"]
    assert "mask_file" not in op and op["mask_shape"] == [96, 160]
    shutil.rmtree(tmp_path / "masks")                         # the sidecar needs no file
    out = tmp_path / "filled.mkv"
    assert vir("restore", low, "-o", out, "--lossless", *FAST).exit_code == 0
    assert np.array_equal(frames_of(out)[:, keep > 0], frames_of(low)[:, keep > 0])


# ----------------------------------------------------------------------------- 6. checkpoint headers
def _crafted(tmp_path: Path, change) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from tests.model_fixtures import save_tiny_checkpoint

    path = save_tiny_checkpoint(tmp_path / "good.safetensors", tasks=("deblur",))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    header = json.loads(meta["vir"])
    change(header)
    out = tmp_path / "crafted.safetensors"
    save_file(load_file(str(path)), str(out), metadata={**meta, "vir": json.dumps(header)})
    return out


@pytest.mark.parametrize("change,named", [
    (lambda h: h.update(tasks=["deblur"]), "tasks: expected a table"),
    (lambda h: h.update(modules=["vae"]), "modules: expected a table"),
    (lambda h: h["tasks"]["deblur"].update(correction_ema="abc"), "tasks.deblur.correction_ema: expected a number"),
    (lambda h: h["tasks"]["deblur"].update(still_ema=1.0), "tasks.deblur.still_ema: expected a number in [0, 1)"),
    (lambda h: h["dit"].update(heads=0), "dit.heads: expected an integer in [1, 128]"),
    (lambda h: h["dit"].update(dim=10**6), "dit.dim: expected an integer in [8, 8192]"),
    (lambda h: h["dit"].update(dim=96, heads=2), "shape mismatches"),       # in range, but not the file's tensors
    (lambda h: h["dit"].update(sigma=[0]), "unknown DiTConfig keys: sigma"),  # found by the parser fuzzing
])
def test_a_crafted_checkpoint_header_is_exit_8(clip_mkv24, tmp_path, change, named):
    ckpt = _crafted(tmp_path, change)
    result = vir("restore", clip_mkv24, "-o", tmp_path / "out.mp4", "--task", "deblur", "--checkpoint", ckpt,
                 "--no-progress")
    assert_one_line_error(result, 8)
    assert named in result.stderr, result.stderr


def test_a_header_that_lies_about_sizes_allocates_nothing_for_them(clip_mkv24, tmp_path):
    # dim 8192 and depth 128 are in range: built for real that is 100 B parameters
    ckpt = _crafted(tmp_path, lambda h: h["dit"].update(dim=8192, heads=64, depth=128, ffn_dim=32768))
    # VmHWM is this process's own peak (ru_maxrss would carry the parent's across exec)
    code = ("import sys\nfrom instantvir_cli.learned import learned_restorer\n"
            "from instantvir_cli.ops import build_operator\nfrom instantvir_cli.errors import CheckpointError\n"
            "try:\n    learned_restorer(build_operator('deblur', 96, 160), sys.argv[1])\n"
            "except CheckpointError as e:\n    print('refused', e)\n"
            "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))")
    proc = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "refused" in proc.stdout and "shape mismatches" in proc.stdout, proc.stderr
    assert int(proc.stdout.split()[-1]) < 1_500_000                      # KiB: far below its 400 GB


# ----------------------------------------------------------------------------- 7. distill configs
@pytest.mark.parametrize("table,line,named", [
    ("student.causal", "block_frames = 0", "student.causal.block_frames"),
    ("student.causal", "s_star = 5.0", "student.causal.s_star"),
    ("data", "crop = 65536", "data.crop"),
    ("student.deblur", "kernel_size = 4", "student.deblur.kernel_size"),
    ("student.deblur", "sigma = -1.0", "student.deblur.sigma"),
    ("student.sr4x", "sigma_y = -1.0", "student.sr4x.sigma_y"),
    ("teacher.model", "heads = 0", "teacher.model.heads"),
    ("vae.model", "dim_high = 10000000", "vae.model.dim_high"),
    ("run", "threads = 100000", "run.threads"),
])
def test_a_config_out_of_range_fails_the_dry_run(tmp_path, table, line, named):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[{table}]\n{line}\n')
    result = vir("distill", "--config", cfg, "--dry-run")
    assert_one_line_error(result, 9)
    assert f"{named}: expected" in result.stderr


# ----------------------------------------------------------------------------- 8. full disk
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_full_disk_while_restoring_is_exit_6_with_nothing_left(clip_mkv24, tmp_path, ext):
    for limit in (2000, 40_000):                      # in the header, and in the frames
        proc = run_vir("restore", clip_mkv24, "-o", tmp_path / f"out.{ext}", "--task", "deblur", *FAST, fsize=limit)
        assert "File too large" in assert_one_line(proc, 6)
        assert litter(tmp_path, set()) == []


def test_a_full_disk_while_degrading_keeps_the_old_pair(clip_mkv24, tmp_path):
    low = tmp_path / "low.mkv"
    assert vir("degrade", clip_mkv24, low, "--task", "sr4x", "--no-progress").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = run_vir("degrade", clip_mkv24, low, "--task", "deblur", "--no-progress", "-y", fsize=30_000)
    assert_one_line(proc, 6)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_sidecar_that_cannot_be_written_leaves_no_video(clip_mkv24, tmp_path, monkeypatch):
    import errno

    from instantvir_cli.sidecar import Sidecar

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Sidecar, "text", full)       # the disk fills exactly between video and sidecar
    result = vir("degrade", clip_mkv24, tmp_path / "low.mkv", "--task", "deblur", "--no-progress")
    assert_one_line_error(result, 6)
    assert "No space left on device" in result.stderr and litter(tmp_path, set()) == []


def test_a_full_disk_in_distill_is_exit_6_without_a_tmp(tmp_path):
    # no loader processes: the limit would also stop the shared-memory files they hand batches through
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[data]\nworkers = 0\n')
    proc = run_vir("--quiet", "distill", "--config", cfg, "--out", tmp_path / "run", "--max-steps", "1",
                   "--no-progress", fsize=200_000)
    assert "state.pt" in assert_one_line(proc, 6)
    assert not (tmp_path / "run").exists() and litter(tmp_path, {"c.toml"}) == []


# ----------------------------------------------------------------------------- 9. two runs, one output
def test_two_restores_to_one_output_cannot_both_succeed(tmp_path):
    clip = media.clip_h264_mkv(480, "64x48", 24, 24)     # long enough for a second vir to start meanwhile
    out = tmp_path / "out.mp4"
    args = [sys.executable, "-m", "instantvir_cli", "restore", str(clip), "-o", str(out), "--task", "deblur",
            *FAST]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.time() + 120
        while not (tmp_path / ".out.mp4.vir-lock").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        second = run_vir(*args[3:])
        line = assert_one_line(second, 6)
        # refused while the first one writes (or, on a machine so slow that it finished first, as existing)
        assert "another vir" in line or (first.poll() == 0 and "output exists" in line), line
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert len(frames_of(out)) == 480 and litter(tmp_path, {"out.mp4"}) == []
    third = run_vir(*args[3:])                        # and without --overwrite a finished one is kept
    assert "output exists" in assert_one_line(third, 6)


# ----------------------------------------------------------------------------- 10. distill leftovers
def test_a_failed_distill_start_leaves_nothing_and_a_rerun_says_the_same(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[data]\npaths = ["{tmp_path}/no-such-clips"]\n')
    for _ in range(2):
        result = vir("distill", "--config", cfg, "--out", tmp_path / "run", "--max-steps", "1", "--no-progress")
        assert_one_line_error(result, 9)
        assert "no-such-clips" in result.stderr and "already holds a run" not in result.stderr
        assert litter(tmp_path, {"c.toml"}) == []


def test_temporaries_of_a_killed_distill_are_removed_by_the_next_start(tmp_path):
    run = tmp_path / "run"
    (run / "vae").mkdir(parents=True)
    (run / "config.toml").write_text("")                    # what an older failed start left
    (run / "vae" / ".state.pt.4242.tmp").write_bytes(b"x" * 1000)   # what a SIGKILL left
    (run / ".vae.safetensors.vir-4242-abcdef.partial.safetensors").write_bytes(b"x")
    cfg = tmp_path / "c.toml"
    bad = tmp_path / "bad.toml"                             # a start that fails its checks touches nothing ...
    bad.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[data]\npaths = ["{tmp_path}/no-such-clips"]\n')
    assert_one_line_error(vir("distill", "--config", bad, "--out", run, "--max-steps", "1", "--no-progress"), 9)
    assert (run / "vae" / ".state.pt.4242.tmp").exists()
    cfg.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[data]\nworkers = 0\n[run]\nstages = ["vae"]\n')
    result = vir("distill", "--config", cfg, "--out", run, "--max-steps", "1", "--no-progress")
    assert result.exit_code == 0, result.stderr             # ... the next that starts: not 6 "already holds a run"
    assert not (run / "vae" / ".state.pt.4242.tmp").exists()
    assert not [p for p in run.rglob("*") if "partial" in p.name or p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- 11. small slips
@pytest.mark.parametrize("opt,said", [("crf=abc", "refused its options (crf=abc)"),
                                      ("nosuchoption=1", "unknown encoder option for libx264: nosuchoption")])
def test_a_bad_encoder_option_is_a_usage_error(clip_mkv24, tmp_path, opt, said):
    result = vir("restore", clip_mkv24, "-o", tmp_path / "out.mp4", "--task", "deblur", "-e", opt, *FAST)
    assert_one_line_error(result, 2)
    assert said in result.stderr and litter(tmp_path, set()) == []


def test_sidecars_and_checkpoints_take_the_umask_mode(clip_mkv24, tmp_path):
    from tests.model_fixtures import save_tiny_checkpoint

    old = os.umask(0o022)
    try:
        assert vir("degrade", clip_mkv24, tmp_path / "low.mkv", "--task", "deblur", "--no-progress").exit_code == 0
        ckpt = save_tiny_checkpoint(tmp_path / "m.safetensors", tasks=("deblur",))
    finally:
        os.umask(old)
    for p in (tmp_path / "low.mkv.vir.json", ckpt, tmp_path / "low.mkv"):
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_a_pickle_that_would_run_code_is_one_line(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, evil)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = "{REPO / "configs" / "tiny.toml"}"\n[vae]\ninit = "{evil}"\n[run]\nstages = ["vae"]\n')
    result = vir("--quiet", "distill", "--config", cfg, "--out", tmp_path / "run", "--max-steps", "1",
                 "--no-progress")
    assert_one_line_error(result, 8)
    assert "refused to load" in result.stderr and "weights_only" not in result.stderr
    assert "should-not-run" not in result.stdout + result.stderr


def test_a_module_name_with_a_newline_is_shown_on_one_line(clip_mkv24, tmp_path):
    # found by the parser fuzzing: modules = {"\n": null} printed the key raw, on two lines
    ckpt = _crafted(tmp_path, lambda h: h["modules"].update({"\n": None}))
    result = vir("restore", clip_mkv24, "-o", tmp_path / "out.mp4", "--task", "deblur", "--checkpoint", ckpt,
                 "--no-progress")
    assert_one_line_error(result, 8)
    assert "modules.'\\n': expected a table" in result.stderr, result.stderr
