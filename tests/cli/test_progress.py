"""The progress bar: frames done/total, fps and ETA on stderr; an unknown total is handled."""

from __future__ import annotations

from instantvir_cli.cli import _common
from instantvir_cli.cli._common import FrameProgress


def _render(total_given, updates, monkeypatch):
    monkeypatch.setenv("VIR_PROGRESS", "1")
    monkeypatch.setattr(_common.STATE, "quiet", False)
    with _common.err_console.capture() as cap:
        with FrameProgress("restore", total_given) as bar:
            for done, total in updates:
                bar(done, total)
    return cap.get()


def test_known_total_shows_done_of_total_and_fps(monkeypatch):
    text = _render(None, [(12, 48), (24, 48), (48, 48)], monkeypatch)
    assert "restore" in text and "48/48" in text and "fps" in text and "100%" in text


def test_unknown_total_shows_frames_fps_and_elapsed_time(monkeypatch):
    text = _render(None, [(12, None), (30, None)], monkeypatch)
    assert "30 frames" in text and "fps" in text and "0:00:0" in text      # elapsed h:mm:ss
    assert "eta" not in text and "%" not in text and "/" not in text


def test_quiet_disables_the_bar(monkeypatch):
    monkeypatch.setenv("VIR_PROGRESS", "1")
    monkeypatch.setattr(_common.STATE, "quiet", True)
    with _common.err_console.capture() as cap:
        with FrameProgress("restore", 10) as bar:
            bar(10, 10)
    assert cap.get() == ""
