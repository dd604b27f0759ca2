"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from instantvir_cli.video import EncodeOptions, write_synthetic_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """A training clip and a validation clip (`val_b`) for the distill tests (test_distill_data
    has its own, longer pair). One encoder thread: libx264's automatic threading does not write
    the same bytes from run to run, and the learning test's baselines would move with them."""
    d = tmp_path_factory.mktemp("clips")
    one_thread = EncodeOptions(threads=1)
    write_synthetic_clip(d / "train_a.mp4", 96, 80, frames=24, seed=1, options=one_thread)
    write_synthetic_clip(d / "val_b.mp4", 64, 48, frames=12, seed=2, options=one_thread)
    return d
