"""The encoding thread beside the restorer: order, completeness, and errors in the caller's thread."""

from __future__ import annotations

import time

import pytest
import torch

from instantvir_cli.video import VideoReader, VideoWriter, probe
from instantvir_cli.video.background import BackgroundWriter


def _blocks(n: int, T: int = 3, H: int = 32, W: int = 48) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, T, H, W, generator=g) * 2 - 1 for _ in range(n)]


def test_every_queued_block_is_encoded_in_order(tmp_path):
    out, blocks, counts = tmp_path / "o.mkv", _blocks(5), []
    with VideoWriter(out, 48, 32, fps=25) as w:
        with BackgroundWriter(w, on_written=counts.append) as bg:
            for i, x in enumerate(blocks):
                bg.write(x, [3 * i + t for t in range(3)])
        assert w.frames_written == 15
    assert counts == [3] * 5 and probe(out).frames == 15
    with VideoReader(out, block_size=15) as r:
        got = next(iter(r)).x
    want = torch.cat(blocks, 2)
    # lossy, but each frame is nearest to its own source frame: nothing reordered or dropped
    err = (got[:, :, :, None] - want[:, :, None]).abs().mean(dim=(0, 1, 4, 5))   # (15, 15)
    assert torch.equal(err.argmin(1), torch.arange(15))


def test_the_encoders_error_comes_back_in_the_callers_thread(tmp_path):
    with VideoWriter(tmp_path / "o.mkv", 48, 32, fps=25) as w:
        w.write(torch.zeros(1, 3, 1, 32, 48), [0])
        bg = BackgroundWriter(w)
        bg.write(torch.zeros(1, 3, 2, 16, 16), [1, 2])     # the wrong size: the writer refuses it
        with pytest.raises(ValueError, match="expected"):
            bg.finish()
        bg2 = BackgroundWriter(w)
        bg2.write(torch.zeros(1, 3, 1, 16, 16), [5])
        with pytest.raises(ValueError, match="expected"):
            for i in range(50):                            # a later write raises it at the latest
                bg2.write(torch.zeros(1, 3, 1, 32, 48), [10 + i])
            bg2.finish()
        assert w.frames_written == 1                       # nothing after the failure was encoded


def test_on_the_callers_failure_a_file_output_stops_and_a_stream_keeps_its_frames(tmp_path):
    for keep in (False, True):
        bg = None

        def hold(frames: int, keep: bool = keep) -> None:  # the first block waits until abandon()
            while not keep and not bg._abandon:            # noqa: B023 (bg: this iteration's writer)
                time.sleep(0.001)

        with VideoWriter(tmp_path / f"o{keep}.mkv", 48, 32, fps=25) as w:
            with pytest.raises(RuntimeError):
                with BackgroundWriter(w, depth=4, keep_on_error=keep, on_written=hold) as bg:
                    for i, x in enumerate(_blocks(4)):
                        bg.write(x, [3 * i + t for t in range(3)])
                    while not keep and w.frames_written < 3:   # the first block is in the encoder
                        time.sleep(0.001)
                    raise RuntimeError("the restorer failed")
            written = w.frames_written
        assert written == (12 if keep else 3)
