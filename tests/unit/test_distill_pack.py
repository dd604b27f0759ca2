"""Data packs (distill.pack, distill.packing) and the time budget: a pack is deterministic and checked, is sampled
by the same code as the videos it came from, trains with PyAV blocked, and a budget stops every
stage cleanly (state, file, export) where --resume continues."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from instantvir_cli.config import DistillConfig, from_dict, to_dict
from instantvir_cli.distill.data import WindowDataset, find_sources
from instantvir_cli.distill.pack import open_pack
from instantvir_cli.distill.packing import build_pack, recipe_clips, video_scale
from instantvir_cli.distill.trainer import run_distill, stage_budget
from instantvir_cli.errors import ConfigError
from instantvir_cli.models.checkpoint import read_header

ROOT = Path(__file__).parents[2]


def tiny(out: Path, data: dict, **tables) -> DistillConfig:
    """Every stage at test size (as test_distill_trainer's), on `data`."""
    d = {
        "run": {"out": str(out), "log_every": 1, "checkpoint_every": 2, "val_every": 0, "threads": 1},
        "data": {"footage": [], "images": ["astronaut"], "val_clips": ["val_b"], "frames": 5, "crop": 32,
                 "val_frames": 5, "val_size": 32, "workers": 0, **data},
        "vae": {"preset": "tiny", "steps": 2, "batch": 2, "lr": 1e-3},
        "teacher": {"preset": "tiny", "steps": 2, "batch": 2, "lr": 1e-3},
        "student": {"tasks": ["sr4x"], "steps": 3, "batch": 2, "lr": 1e-3, "dmd_weight": 0.0,
                    "causal": {"block_frames": 1, "cache_blocks": 1}},
    }
    for table, values in tables.items():
        d[table] = {**d[table], **values}
    return from_dict(DistillConfig, d)


@pytest.fixture(scope="module")
def pack(clips, tmp_path_factory) -> Path:
    """A pack of the synthetic clips: train_a (96x80, 24 frames), val_b, one photograph."""
    cfg = tiny(Path("unused"), {"paths": [str(clips)]}).data
    root = tmp_path_factory.mktemp("pack") / "p"
    build_pack(root, cfg, find_sources(cfg), 4 << 20)
    return root


def packed(root: Path, **data) -> dict:
    return {"pack": str(root), "footage": ["train_a", "val_b"], **data}


def test_pack_holds_the_sources_and_is_deterministic(pack, clips, tmp_path):
    m = json.loads((pack / "manifest.json").read_text())
    kinds = {(e["kind"], e["name"]): e for e in m["entries"]}
    assert set(kinds) == {("val", "val_b"), ("image", "astronaut"), ("video", "train_a")}
    assert kinds[("video", "train_a")]["shape"] == [24, 80, 96, 3] and kinds[("video", "train_a")]["scale"] == 1.0
    assert kinds[("val", "val_b")]["shape"] == [5, 32, 32, 3] and m["data"]["val_frames"] == 5
    cfg = tiny(Path("unused"), {"paths": [str(clips)]}).data
    again = tmp_path / "again"
    build_pack(again, cfg, find_sources(cfg), 4 << 20)
    for f in sorted(pack.iterdir()):
        assert f.read_bytes() == (again / f.name).read_bytes(), f.name


def test_a_packed_video_is_sampled_as_the_video(pack, clips):
    """With no resize (min_scale 1), the same draws give the same windows, bit for bit, and the
    validation clip is the one load_val_clip cuts, to the 8-bit rounding."""
    video = tiny(Path("unused"), {"paths": [str(clips)], "min_scale": 1.0}).data
    from_pack = dataclasses.replace(video, paths=(), **packed(pack))
    a, b = find_sources(video), find_sources(from_pack)
    assert [s.name for s in b.train_videos] == ["train_a"] and b.train_images[0].packed
    da = WindowDataset(a.train_videos, a.train_images, video, 0, "teacher")
    db = WindowDataset(b.train_videos, b.train_images, from_pack, 0, "teacher")
    for i in range(6):
        sa, sb = da[i], db[i]
        assert sa["seed"] == sb["seed"] and torch.equal(sa["x"], sb["x"]), i
    from instantvir_cli.distill.data import load_val_clip

    va, vb = load_val_clip(a.val[0], 5, 32), load_val_clip(b.val[0], 5, 32)
    assert va.shape == vb.shape == (1, 3, 5, 32, 32) and float((va - vb).abs().max()) <= 1 / 255 + 1e-6


def test_video_scale_fits_the_budget():
    assert video_scale(10**9, [(10, 100, 200)]) == 1.0
    s = video_scale(100_000, [(10, 100, 200), (5, 50, 50)])
    assert 0 < s < 1 and sum(T * round(H * s) * round(W * s) * 3 for T, H, W in [(10, 100, 200), (5, 50, 50)]) <= 100_000


def test_recipe_splits_are_checked():
    base = tiny(Path("unused"), {}).data
    ok = dataclasses.replace(base, footage=("bikes", "carphone_pristine"), val_clips=("carphone_pristine",))
    assert recipe_clips(ok) == (("bikes",), ("carphone_pristine",))
    for footage, val, why in [(("earth",), (), "test clip"), (("bigbuckbunny",), (), "val clip"),
                              (("bikes", "earth"), ("earth",), "test clips are never packed")]:
        with pytest.raises(ConfigError, match=why):
            recipe_clips(dataclasses.replace(base, footage=footage, val_clips=val))
    with pytest.raises(ConfigError, match="data.paths"):
        recipe_clips(dataclasses.replace(base, paths=("x.mp4",)))


BLOCK_AV = """
import sys
class NoAV:
    def find_spec(self, name, path=None, target=None):
        if name == "av" or name.startswith("av."):
            raise ImportError("PyAV is blocked in this test")
sys.meta_path.insert(0, NoAV())
"""


def test_training_from_a_pack_needs_no_pyav(pack, tmp_path):
    out = tmp_path / "run"
    cfg = tiny(out, packed(pack))
    (tmp_path / "cfg.json").write_text(json.dumps(to_dict(cfg)))
    code = BLOCK_AV + textwrap.dedent(f"""
        import json
        from instantvir_cli.config import DistillConfig, from_dict
        from instantvir_cli.distill.trainer import run_distill
        r = run_distill(from_dict(DistillConfig, json.load(open({str(tmp_path / 'cfg.json')!r}))))
        assert "av" not in sys.modules
        print("export", r.export)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"export {out / 'instantvir.safetensors'}" in p.stdout
    h = read_header(out / "instantvir.safetensors")
    assert set(h["tasks"]) == {"sr4x"} and h["provenance"]["data"]["train_videos"] == ["train_a"]


def test_a_bad_pack_is_a_config_error(pack, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pack, bad)
    f = bad / "video-train_a.npy"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ConfigError, match="does not match its SHA-256"):
        open_pack(bad)
    with pytest.raises(ConfigError, match="no manifest.json"):
        open_pack(tmp_path / "none")
    cfg = tiny(tmp_path / "run", packed(pack, val_frames=9))
    with pytest.raises(ConfigError, match="data.val_frames: 9, but the pack"):
        find_sources(cfg.data)
    with pytest.raises(ConfigError, match="data.images: 'coffee' is not in the pack"):
        find_sources(tiny(tmp_path / "run", packed(pack, images=["coffee"])).data)


def test_stage_budget_shares_the_time_left_by_steps():
    assert stage_budget(100.0, [1, 1, 2]) == 25.0
    assert stage_budget(-5.0, [3]) == 0.0 and stage_budget(60.0, [0, 0]) == 30.0


def test_the_budget_stops_each_stage_and_still_exports(pack, tmp_path):
    """A budget that is spent at once: every stage stops after its first step, validates, keeps its
    state and file, and the export holds the student; --resume without a budget finishes them."""
    out = tmp_path / "run"
    cfg = tiny(out, packed(pack), run={"max_minutes": 1e-6})
    r = run_distill(cfg)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    stops = {x["stage"]: x["step"] for x in log if x["kind"] == "budget"}
    assert stops == {"vae": 1, "teacher": 1, "student_sr4x": 1}
    done = {x["stage"]: x["step"] for x in log if x["kind"] == "done"}
    assert done == stops and r.export is not None
    assert read_header(r.export)["provenance"]["steps"]["student_sr4x"] == 1
    assert torch.load(out / "student_sr4x" / "state.pt", weights_only=True)["step"] == 1
    run_distill(cfg, resume=True, max_minutes=0)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if x["kind"] == "done"][-3:] == [2, 2, 3]
