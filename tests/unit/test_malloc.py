"""glibc malloc settings: applied on Linux/glibc, skipped on request."""

from __future__ import annotations

import platform
import sys

import pytest

from instantvir_cli import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_accepts_the_settings(monkeypatch):
    monkeypatch.delenv(malloc.DISABLE_ENV, raising=False)
    assert malloc.tune_malloc() is True


def test_the_environment_can_keep_the_defaults(monkeypatch):
    monkeypatch.setenv(malloc.DISABLE_ENV, "1")
    assert malloc.tune_malloc() is False


def test_settings_fit_glibc_limits():
    assert malloc.MMAP_THRESHOLD <= 32 << 20          # glibc refuses a larger mmap threshold
    assert 0 < malloc.TRIM_THRESHOLD < 2**31 and 0 < malloc.TOP_PAD < 2**31   # mallopt takes an int
