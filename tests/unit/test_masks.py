"""instantvir_cli.masks: keep-masks from images and videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import media
from instantvir_cli.errors import MaskInvalid
from instantvir_cli.masks import load_mask
from instantvir_cli.video import EncodeOptions, VideoWriter


def moving_square(t: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """(H, W) bool: an observed 16x16 square moving right by 2 px per frame."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[8:24, 2 * t: 2 * t + 16] = True
    return m


def write_mask_video(path, frames: int, options: EncodeOptions) -> None:
    with VideoWriter(path, 64, 48, options=options, fps=10) as w:
        for t0 in range(0, frames, 4):
            masks = torch.stack([moving_square(t) for t in range(t0, min(frames, t0 + 4))])  # (T, H, W)
            w.write((masks.float() * 2 - 1)[None, None].expand(1, 3, -1, -1, -1))


def test_png_nonzero_is_observed(tmp_path):
    a = np.zeros((6, 8), np.uint8)
    a[1, 2], a[3, 5] = 1, 255
    src = load_mask(media.write_image(tmp_path / "m.png", a), 6, 8)
    assert not src.is_video
    expected = torch.from_numpy(a > 0)
    assert torch.equal(src.static_mask(), expected) and src.static_mask().dtype == torch.bool
    block = src.block(5, 3)
    assert block.shape == (3, 6, 8) and all(torch.equal(m, expected) for m in block)


def test_channels_reduced_with_max_alpha_ignored(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[2, 2, 2] = 1  # only blue
    assert load_mask(media.write_image(tmp_path / "rgb.png", rgb), 6, 8).static_mask().nonzero().tolist() == [[2, 2]]
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha alone does not make a pixel observed
    rgba[0, 7, 1] = 9
    assert load_mask(media.write_image(tmp_path / "rgba.png", rgba), 6, 8).static_mask().nonzero().tolist() == [[0, 7]]


def test_16bit_png_keeps_small_values(tmp_path):
    a = np.zeros((6, 8), np.uint16)
    a[5, 7] = 1  # would round to 0 in 8 bits
    assert load_mask(media.write_image(tmp_path / "m16.png", a), 6, 8).static_mask().nonzero().tolist() == [[5, 7]]


def test_jpeg_uses_half_threshold(tmp_path):
    a = np.zeros((64, 64, 3), np.uint8)
    a[16:48, 8:40] = 255
    path = media.write_image(tmp_path / "m.jpg", a)
    assert torch.equal(load_mask(path, 64, 64).static_mask(), torch.from_numpy(a[..., 0] > 0))


def test_wrong_size_names_both_sizes(tmp_path):
    path = media.write_image(tmp_path / "m.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(MaskInvalid) as e:
        load_mask(path, 48, 64)
    assert "8x6" in str(e.value) and "64x48" in str(e.value)


def test_unreadable_masks(tmp_path, bad_inputs):
    with pytest.raises(MaskInvalid, match="not found"):
        load_mask(tmp_path / "missing.png", 6, 8)
    with pytest.raises(MaskInvalid, match="folder"):
        load_mask(tmp_path, 6, 8)
    for name in ("empty", "random_bytes", "audio_only"):
        with pytest.raises(MaskInvalid, match="unreadable"):
            load_mask(bad_inputs[name], 6, 8)


@pytest.mark.parametrize("ext,options", [(".mkv", EncodeOptions(lossless=True)),
                                         (".mp4", EncodeOptions(preset="ultrafast", crf=23))])
def test_video_mask_streams_in_step(tmp_path, ext, options):
    path = tmp_path / f"mask{ext}"
    write_mask_video(path, 20, options)
    with load_mask(path, 48, 64) as src:
        assert src.is_video and torch.equal(src.static_mask(), moving_square(0))
        for t0, T in [(0, 4), (4, 8), (12, 3), (15, 5)]:
            block = src.block(t0, T)
            assert block.shape == (T, 48, 64) and block.dtype == torch.bool
            assert all(torch.equal(block[i], moving_square(t0 + i)) for i in range(T))
        with pytest.raises(MaskInvalid, match="only 20 frames"):
            src.block(20, 1)


def test_video_mask_order_and_skips(tmp_path):
    path = tmp_path / "mask.mkv"
    write_mask_video(path, 12, EncodeOptions(lossless=True))
    with load_mask(path, 48, 64) as src:
        assert torch.equal(src.block(6, 2)[1], moving_square(7))  # frames 0-5 skipped
        with pytest.raises(ValueError, match="in order"):
            src.block(0, 1)
        assert torch.equal(src.block(8, 4)[3], moving_square(11))


def test_video_mask_wrong_size(tmp_path):
    path = tmp_path / "mask.mkv"
    write_mask_video(path, 4, EncodeOptions(lossless=True))
    with pytest.raises(MaskInvalid, match="64x48.*80x60"):
        load_mask(path, 60, 80)
