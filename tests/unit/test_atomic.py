"""atomic.AtomicOutput: outputs appear whole or not at all, one writer per output, no litter."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from instantvir_cli.atomic import AtomicOutput, atomic_write, remove_stale
from instantvir_cli.errors import OutputRefused

REPO = Path(__file__).resolve().parents[2]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_commit_moves_every_target_into_place_with_the_umask_mode(tmp_path):
    video, sidecar = tmp_path / "out.mkv", tmp_path / "out.mkv.vir.json"
    old = os.umask(0o022)
    try:
        with AtomicOutput([video, sidecar]) as out:
            out.temp(video).write_bytes(b"video")
            out.temp(sidecar).write_text("{}")
            assert not video.exists() and not sidecar.exists()
    finally:
        os.umask(old)
    assert names(tmp_path) == ["out.mkv", "out.mkv.vir.json"]
    assert video.read_bytes() == b"video"
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in (video, sidecar))


def test_an_error_leaves_the_targets_untouched(tmp_path):
    video = tmp_path / "out.mkv"
    video.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with AtomicOutput([video], overwrite=True) as out:
            out.temp(video).write_bytes(b"new")
            raise RuntimeError("boom")
    assert names(tmp_path) == ["out.mkv"] and video.read_bytes() == b"old"


def test_a_second_writer_of_the_same_output_is_refused_at_once(tmp_path):
    target = tmp_path / "out.mp4"
    first = AtomicOutput([target])
    first.temp(target).write_bytes(b"one")
    with pytest.raises(OutputRefused, match=f"another vir \\(pid {os.getpid()}\\) is writing"):
        AtomicOutput([target], overwrite=True)
    first.commit()
    with pytest.raises(OutputRefused, match="exists"):
        AtomicOutput([target])
    assert target.read_bytes() == b"one" and names(tmp_path) == ["out.mp4"]


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "out.mp4"
    out = AtomicOutput([target])
    out.temp(target).write_bytes(b"ours")
    target.write_bytes(b"another program's")
    with pytest.raises(OutputRefused, match="appeared"):
        out.commit()
    assert target.read_bytes() == b"another program's" and names(tmp_path) == ["out.mp4"]


def test_a_sidecar_never_outlives_the_file_it_describes(tmp_path):
    video, sidecar = tmp_path / "out.mkv", tmp_path / "out.mkv.vir.json"
    sidecar.write_text('{"operator": {"task": "sr4x"}}')
    with pytest.raises(OutputRefused, match="sidecar exists"):
        AtomicOutput([video], clears=[sidecar])
    with AtomicOutput([video], overwrite=True, clears=[sidecar]) as out:
        out.temp(video).write_bytes(b"restored")
    assert names(tmp_path) == ["out.mkv"]


def test_disk_full_while_writing_is_output_refused_without_litter(tmp_path):
    def fill(path):
        with open(path, "wb") as f:
            f.write(b"x" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputRefused, match="No space left on device"):
        atomic_write(tmp_path / "state.pt", fill)
    assert names(tmp_path) == []


def test_an_error_that_is_not_about_storage_is_not_disguised(tmp_path):
    def bug(path):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        atomic_write(tmp_path / "state.pt", bug)
    assert names(tmp_path) == []


KILLED = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from instantvir_cli.atomic import AtomicOutput
    out = AtomicOutput([Path(sys.argv[1])])
    out.temp(Path(sys.argv[1])).write_bytes(b"partial")
    if sys.argv[2] == "die":
        os._exit(9)          # no cleanup runs, as after SIGKILL
    print("holding", flush=True)
    sys.stdin.read()
""")


def _run(*args, **kw):
    return subprocess.Popen([sys.executable, "-c", KILLED, *map(str, args)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            text=True, **kw)


def test_leftovers_of_a_dead_writer_are_removed_and_a_live_ones_kept(tmp_path):
    dead = _run(tmp_path / "dead.mp4", "die")
    assert dead.wait(timeout=60) == 9
    left = names(tmp_path)
    assert len(left) == 2 and all(n.startswith(".dead.mp4.vir-") for n in left), left
    live = _run(tmp_path / "live.mp4", "hold", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert live.stdout.readline().strip() == "holding"
        held = names(tmp_path)                                  # the next writer there removed the dead one's
        assert len(held) == 2 and all(n.startswith(".live.mp4.vir-") for n in held), held
        assert remove_stale(tmp_path) == [] and names(tmp_path) == held   # and nobody removes a live one's
        with pytest.raises(OutputRefused, match="another vir"):  # and the live one still owns its output
            AtomicOutput([tmp_path / "live.mp4"])
    finally:
        live.communicate("", timeout=60)
    assert names(tmp_path) == []                                # the live writer cleaned up at exit
