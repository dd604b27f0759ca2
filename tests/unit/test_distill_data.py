"""Training windows: deterministic per-sample draws, rank/batch-independent sharding, seeking."""

from __future__ import annotations

import dataclasses
import itertools
import sys

import numpy as np
import pytest
import torch

from instantvir_cli.config import DataConfig
from instantvir_cli.distill.data import (
    StepSampler,
    WindowDataset,
    animate,
    find_sources,
    load_image,
    load_val_clip,
    make_loader,
    read_window,
    sample_seed,
)
from instantvir_cli.errors import ConfigError
from instantvir_cli.video import write_synthetic_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    write_synthetic_clip(d / "train_a.mp4", 96, 80, frames=30, seed=1)
    write_synthetic_clip(d / "val_b.mkv", 80, 64, frames=20, seed=2)
    return d


def data_cfg(clips, **kw) -> DataConfig:
    base = dict(paths=(str(clips),), footage=(), images=("astronaut",), val_clips=("val_b",), frames=5,
                crop=32, val_frames=9, val_size=32, workers=0)
    return DataConfig(**{**base, **kw})


def test_sources_split_by_name(clips):
    s = find_sources(data_cfg(clips))
    assert [v.name for v in s.train_videos] == ["train_a"] and [v.name for v in s.val] == ["val_b"]
    assert s.train_videos[0].frames == 30 and s.names["train_images"] == ["astronaut"]
    with pytest.raises(ConfigError, match="data.val_clips: 'nope' is not among the data's videos"):
        find_sources(data_cfg(clips, val_clips=("nope",)))
    with pytest.raises(ConfigError, match="data.paths: not found"):
        find_sources(data_cfg(clips, paths=(str(clips / "missing"),)))
    with pytest.raises(ConfigError, match="fewer than data.frames = 33"):
        find_sources(data_cfg(clips, frames=33))
    with pytest.raises(ConfigError, match="no training sources"):
        find_sources(data_cfg(clips, val_clips=("train_a", "val_b"), images=()))
    with pytest.raises(ConfigError, match=r"data.footage: unknown clip 'nope' \(known: bigbuckbunny, .*city"):
        find_sources(data_cfg(clips, footage=("nope",)))


def test_images_need_scikit_image(clips, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ConfigError, match="data.images needs scikit-image"):
        find_sources(data_cfg(clips))
    find_sources(data_cfg(clips, images=()))   # videos only: no scikit-image needed


def test_samples_are_pure_functions_of_their_index(clips):
    cfg = data_cfg(clips, image_share=0.5)
    s = find_sources(cfg)
    ds = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="teacher")
    a, b = ds[7], ds[7]
    assert a["x"].shape == (3, 5, 32, 32) and a["x"].dtype == torch.float32
    assert torch.equal(a["x"], b["x"]) and a["seed"] == b["seed"]
    assert float(a["x"].min()) >= -1.0 and float(a["x"].max()) <= 1.0
    xs = [ds[i]["x"] for i in range(8)]
    assert len({x.sum().item() for x in xs}) == 8                    # windows differ
    other = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="vae")
    assert not torch.equal(other[7]["x"], a["x"])                    # another stage, other windows
    assert sample_seed(0, "vae", 1) != sample_seed(1, "vae", 1) != sample_seed(0, "vae", 2)


def test_still_share_holds_the_camera_still_for_a_share_of_the_photographs(clips):
    cfg = data_cfg(clips, image_share=1.0)
    s = find_sources(cfg)
    moving = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="student")
    still = WindowDataset(s.train_videos, s.train_images, dataclasses.replace(cfg, still_share=1.0), seed=0,
                          stream="student")
    for i in range(4):
        x, y = moving[i]["x"], still[i]["x"]
        assert not torch.equal(x[:, 0], x[:, -1])                       # the camera moves
        assert all(torch.equal(y[:, 0], y[:, t]) for t in range(y.shape[1]))   # every frame the same
    half = WindowDataset(s.train_videos, s.train_images, dataclasses.replace(cfg, still_share=0.5), seed=0,
                         stream="student")
    kinds = {torch.equal(half[i]["x"][:, 0], half[i]["x"][:, -1]) for i in range(16)}
    assert kinds == {True, False}                                       # a share: some still, some moving
    with pytest.raises(ValueError, match="still_share"):
        dataclasses.replace(cfg, still_share=1.5)


def test_sharding_does_not_depend_on_processes_or_accumulation():
    def step_indices(world, accumulate, batch=4, steps=3, start=0):
        per_rank = [list(itertools.islice(iter(StepSampler(start, batch, world, r, accumulate)),
                                          steps * batch // world)) for r in range(world)]
        micro = batch // (world * accumulate)
        out = []
        for s in range(steps):
            for m in range(accumulate):
                for r in range(world):
                    k = (s * accumulate + m) * micro
                    out += per_rank[r][k:k + micro]
        return out
    ref = list(range(12))
    assert step_indices(1, 1) == step_indices(2, 1) == step_indices(2, 2) == step_indices(1, 4) == ref
    assert list(itertools.islice(iter(StepSampler(5, 4, 2, 1, 1)), 2)) == [22, 23]   # resume at step 5, rank 1
    with pytest.raises(ConfigError, match="batch 3 is not divisible"):
        StepSampler(0, 3, 2, 0, 1)


def test_loader_with_a_worker_matches_the_dataset(clips):
    cfg = data_cfg(clips)
    s = find_sources(cfg)
    ds = WindowDataset(s.train_videos, s.train_images, cfg, seed=0, stream="vae")
    it = iter(make_loader(ds, StepSampler(2, 4, 2, 1, 1), workers=1))
    mb = next(it)
    assert mb["x"].shape == (2, 3, 5, 32, 32) and mb["index"].tolist() == [10, 11]
    assert torch.equal(mb["x"][1], ds[11]["x"]) and int(mb["seed"][0]) == ds[10]["seed"]


def test_seeked_window_equals_decoding_from_the_start(clips):
    src = find_sources(data_cfg(clips)).train_videos[0]
    full = read_window(src, 0, 30, 48, 40)
    for start in (0, 7, 25):
        assert np.array_equal(read_window(src, start, 5, 48, 40), full[:, start:start + 5])


def test_animated_photograph():
    img = load_image("astronaut")
    assert img.shape == (3, 512, 512) and -1.0 <= float(img.min()) and float(img.max()) <= 1.0
    x = animate(img, torch.Generator().manual_seed(3), frames=9, crop=32, min_scale=0.25, motion=3.0)
    assert x.shape == (3, 9, 32, 32)
    assert torch.equal(x, animate(img, torch.Generator().manual_seed(3), 9, 32, 0.25, 3.0))
    assert (x[:, 0] - x[:, -1]).abs().mean() > 0.01                   # the camera moves
    still = animate(img, torch.Generator().manual_seed(3), 9, 32, 0.25, 0.0)
    assert (still[:, 0] - still[:, -1]).abs().max() < 1e-5            # ... unless motion = 0


def test_validation_clip(clips):
    src = find_sources(data_cfg(clips)).val[0]
    x = load_val_clip(src, 9, 32)
    assert x.shape == (1, 3, 9, 32, 32)
    with pytest.raises(ConfigError, match="fewer than data.val_frames = 25"):
        load_val_clip(src, 25, 32)
    assert dataclasses.is_dataclass(src)


def test_non_square_crops(clips):
    cfg = data_cfg(clips, crop_height=40, crop_width=64)
    assert cfg.crop_size == (40, 64) and data_cfg(clips).crop_size == (32, 32)
    ds = WindowDataset(find_sources(cfg).train_videos, find_sources(cfg).train_images, cfg, 0, "train")
    shapes = {tuple(ds[i]["x"].shape) for i in range(6)}             # videos and animated photographs
    assert shapes == {(3, 5, 40, 64)}
    img = load_image("astronaut")
    a = animate(img, torch.Generator().manual_seed(3), 9, 32, 0.25, 3.0)
    assert torch.equal(a, animate(img, torch.Generator().manual_seed(3), 9, (32, 32), 0.25, 3.0))  # one side = square
    for bad, msg in ((dict(crop_height=44), "crop_height must be a multiple of 8"),
                     (dict(crop_width=4), "crop_width"), (dict(crop_width=4096), "crop_width")):
        with pytest.raises(ValueError, match=msg):
            data_cfg(clips, **bad)
