"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from instantvir_cli.video import write_synthetic_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """A training clip and a validation clip (`val_b`) for the distill tests (test_distill_data
    has its own, longer pair)."""
    d = tmp_path_factory.mktemp("clips")
    write_synthetic_clip(d / "train_a.mp4", 96, 80, frames=24, seed=1)
    write_synthetic_clip(d / "val_b.mp4", 64, 48, frames=12, seed=2)
    return d
