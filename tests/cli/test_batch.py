"""`vir restore IN... -O DIR`: several inputs and folders in one call."""

from __future__ import annotations

import shutil

import av
import pytest

from instantvir_cli.batch import folder_videos, plan_batch
from instantvir_cli.errors import UsageError
from tests.cli.helpers import assert_one_line_error, vir

CLASSICAL = ("--task", "deblur", "--model", "classical", "--preset", "ultrafast", "--no-progress")


def _frames(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture()
def clips(tmp_path, clip_odd, clip_testsrc_audio, bad_inputs, monkeypatch):
    """good.mkv, then a folder with a broken file between two good ones, and a text file and a
    hidden video that a folder does not contribute; the tests run in this folder and name paths
    as a user types them (the summary table folds long ones)."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(clip_odd, tmp_path / "good.mkv")
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(clip_testsrc_audio, folder / "a.mp4")
    shutil.copy(bad_inputs["random_bytes"], folder / "b-broken.mp4")
    shutil.copy(clip_odd, folder / "c.mkv")
    (folder / "notes.txt").write_text("not a video")
    shutil.copy(clip_odd, folder / ".hidden.mkv")
    return tmp_path


def test_a_broken_file_among_good_ones(clips):
    out = clips / "out"
    result = vir("restore", "good.mkv", "clips", "-O", "out", *CLASSICAL)
    assert result.exit_code == 4, result.stderr              # the broken file's code: unreadable
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mkv", "good.mkv"]
    assert _frames(out / "good.mkv") == 20 and _frames(out / "c.mkv") == 20 and _frames(out / "a.mp4") == 50
    table = result.stdout
    assert "3 restored, 0 skipped, 1 failed" in table
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "failed (exit 4)" in rows["clips/b-broken.mp4"] and "not a readable video" in table
    assert all("restored" in rows[name] for name in ("good.mkv", "clips/a.mp4", "clips/c.mkv"))
    assert "error:" in result.stderr and "b-broken.mp4" in result.stderr and "Traceback" not in result.stderr


def test_existing_outputs_are_skipped_unless_overwrite(clips):
    out = clips / "out"
    first = vir("restore", "good.mkv", "clips/c.mkv", "-O", "out", *CLASSICAL)
    assert first.exit_code == 0, first.stderr
    stamp = (out / "good.mkv").stat().st_mtime_ns
    (out / "c.mkv").unlink()
    again = vir("restore", "good.mkv", "clips/c.mkv", "-O", "out", *CLASSICAL)
    assert again.exit_code == 0, again.stderr
    assert "1 restored, 1 skipped, 0 failed" in again.stdout
    assert (out / "good.mkv").stat().st_mtime_ns == stamp and (out / "c.mkv").is_file()
    forced = vir("restore", "good.mkv", "-O", "out", "--overwrite", *CLASSICAL)
    assert forced.exit_code == 0 and "1 restored, 0 skipped" in forced.stdout
    assert (out / "good.mkv").stat().st_mtime_ns != stamp


def test_the_first_failure_gives_the_exit_code(clips):
    out = clips / "out"
    result = vir("restore", "missing.mp4", "clips/b-broken.mp4", "good.mkv", "-O", "out", *CLASSICAL)
    assert result.exit_code == 3, result.stderr              # not found, before the unreadable one's 4
    assert "1 restored, 0 skipped, 2 failed" in result.stdout and (out / "good.mkv").is_file()


def test_two_inputs_of_one_name_do_not_overwrite_each_other(clips):
    (clips / "other").mkdir()
    shutil.copy(clips / "good.mkv", clips / "other" / "good.mkv")
    result = vir("restore", "good.mkv", "other/good.mkv", "-O", "out", *CLASSICAL)
    assert result.exit_code == 6, result.stderr
    assert "would both be written" in result.stdout and "1 restored, 0 skipped, 1 failed" in result.stdout


@pytest.mark.parametrize("args", [["IN", "IN2", "-o", "x.mp4"], ["IN", "IN2"], ["FOLDER"], ["FOLDER", "-O", "FOLDER"]])
def test_usage_errors(clips, args):
    where = {"IN": clips / "good.mkv", "IN2": clips / "clips" / "c.mkv", "FOLDER": clips / "clips"}
    result = vir("restore", *[where.get(a, a) for a in args], *CLASSICAL)
    assert_one_line_error(result, 2)
    assert not (clips / "x.mp4").exists()


def test_a_single_input_with_o_is_unchanged(clips):
    result = vir("restore", clips / "good.mkv", "-o", clips / "one.mkv", *CLASSICAL)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("restored 20 frames") and "skipped" not in result.stdout


def test_folders_contribute_their_videos_once(clips):
    assert [p.name for p in folder_videos(clips / "clips")] == ["a.mp4", "b-broken.mp4", "c.mkv"]
    jobs = plan_batch([clips / "clips", clips / "clips" / "a.mp4"], clips / "out")
    assert [j.input.name for j in jobs] == ["a.mp4", "b-broken.mp4", "c.mkv"]
    assert [j.output for j in jobs] == [clips / "out" / n for n in ("a.mp4", "b-broken.mp4", "c.mkv")]
    (clips / "empty").mkdir()
    (empty,) = plan_batch([clips / "empty"], clips / "out")
    assert empty.output is None and empty.error.exit_code == 3
    with pytest.raises(UsageError):
        plan_batch([], clips / "out")


def test_ctrl_c_stops_the_batch_after_a_table_of_what_was_done(clips, monkeypatch):
    import instantvir_cli.batch as batch

    real = batch.restore_video

    def interrupted_on_the_second(inp, out, *args, **kwargs):
        if inp.name == "c.mkv":
            raise KeyboardInterrupt
        return real(inp, out, *args, **kwargs)

    monkeypatch.setattr(batch, "restore_video", interrupted_on_the_second)
    result = vir("restore", "good.mkv", "clips/c.mkv", "clips/a.mp4", "-O", "out", *CLASSICAL)
    assert result.exit_code == 130, result.stderr
    assert "interrupted" in result.stderr
    assert "1 restored, 0 skipped, 0 failed, 2 left by the interrupt" in result.stdout
    assert sorted(p.name for p in (clips / "out").iterdir()) == ["good.mkv"]


def test_a_missing_input_fails_even_where_its_output_exists(clips):
    (clips / "out").mkdir()
    (clips / "out" / "gone.mkv").write_bytes(b"an old output")
    (clips / "out" / "good.mkv").mkdir()                     # a folder where the output would go
    result = vir("restore", "gone.mkv", "good.mkv", "-O", "out", *CLASSICAL)
    assert result.exit_code == 3, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "failed (exit 3)" in rows["gone.mkv"] and "failed (exit 6)" in rows["good.mkv"]
    assert (clips / "out" / "gone.mkv").read_bytes() == b"an old output"
