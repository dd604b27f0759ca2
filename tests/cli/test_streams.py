"""Pipes, URLs and live behaviour with real parts: imageio-ffmpeg's ffmpeg on both ends of a pipe,
an HTTP server on 127.0.0.1, a UDP receiver, SIGINT to a running vir, a real-time source."""

from __future__ import annotations

import functools
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from tests.cli.helpers import assert_one_line_error, vir

VIR = [sys.executable, "-m", "instantvir_cli"]
SR4X = ("--task", "sr4x", "--model", "classical", "--preset", "ultrafast", "--no-progress")
QUIET_FF = ("-hide_banner", "-loglevel", "error", "-nostdin")



def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default. A suite started as a background job
    (`.ci/run &`) hands its children SIGINT ignored, and Python then installs no handler for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _env() -> dict[str, str]:
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1", TERM="dumb")
    env.pop("VIR_PROGRESS", None)
    return env


def _streams(path) -> dict[str, int]:
    """kind -> decoded frames (video) or packets (audio) of a file."""
    with av.open(str(path)) as c:
        out = {"video": sum(1 for _ in c.decode(video=0))}
    with av.open(str(path)) as c:
        if c.streams.audio:
            out["audio"] = sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
        v = c.streams.video[0].codec_context
        out["size"] = (v.width, v.height)
    return out


def _pipeline(ffmpeg, src_args, vir_args, dst_args, wait=120):
    """ffmpeg SRC | vir VIR_ARGS | ffmpeg DST; returns (vir's returncode, its stderr, dst's returncode)."""
    src = subprocess.Popen([ffmpeg, *QUIET_FF, *src_args], stdout=subprocess.PIPE)
    proc = subprocess.Popen([*VIR, *vir_args], stdin=src.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())
    src.stdout.close()
    dst = subprocess.Popen([ffmpeg, *QUIET_FF[:-1], "-y", *dst_args], stdin=proc.stdout)
    proc.stdout.close()
    err = proc.communicate(timeout=wait)[1].decode()
    rc_dst = dst.wait(timeout=wait)
    src.wait(timeout=wait)
    return proc.returncode, err, rc_dst


# ----------------------------------------------------------------------------- pipes
def test_ffmpeg_to_vir_to_ffmpeg_keeps_video_and_audio(ffmpeg, clip_tiny_audio, tmp_path):
    """The issue's pipeline, with the default learned model."""
    out = tmp_path / "out.mp4"
    rc, err, rc_dst = _pipeline(
        ffmpeg, ["-i", str(clip_tiny_audio), "-c", "copy", "-f", "matroska", "-"],
        ["restore", "-", "-o", "-", "--task", "sr4x", "--format", "matroska", "--preset", "ultrafast"],
        ["-i", "-", "-c", "copy", str(out)])
    assert rc == 0 and rc_dst == 0, err
    assert "restored 20 frames (sr4x, instantvir) 64x48 -> 256x192: -" in err      # the summary on stderr
    got, want = _streams(out), _streams(clip_tiny_audio)
    assert got["video"] == 20 and got["size"] == (256, 192)
    assert got["audio"] == want["audio"] > 0


def test_stdout_carries_only_the_video(ffmpeg, clip_tiny_audio, tmp_path):
    """Every byte on stdout is the stream: FFmpeg reads it whole, and it starts with EBML's magic."""
    data = subprocess.run([ffmpeg, *QUIET_FF, "-i", str(clip_tiny_audio), "-c", "copy", "-f", "nut", "-"],
                          capture_output=True, check=True).stdout
    r = subprocess.run([*VIR, "restore", "-", "-o", "-", *SR4X], input=data, capture_output=True, env=_env(),
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:4] == b"\x1a\x45\xdf\xa3"                # matroska, the default for a pipe
    (tmp_path / "s.mkv").write_bytes(r.stdout)
    assert _streams(tmp_path / "s.mkv")["video"] == 20
    assert b"restored 20 frames" in r.stderr


def test_mp4_with_its_index_at_the_end_on_stdin_is_exit_4(clip_testsrc_audio):
    data = clip_testsrc_audio.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")           # the index after the media: needs seeking
    r = subprocess.run([*VIR, "restore", "-", "-o", "-", *SR4X], input=data, capture_output=True, env=_env(),
                       timeout=120)
    assert r.returncode == 4 and r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "+faststart" in lines[0], lines


def test_a_stream_needs_a_task_and_an_output(clip_tiny_audio):
    data = clip_tiny_audio.read_bytes()
    assert_one_line_error(vir("restore", "-", "-o", "-", "--no-progress", input=data), 2)   # no sidecar
    assert_one_line_error(vir("restore", "-", "--task", "sr4x", input=data), 2)            # no -o
    assert_one_line_error(vir("restore", "-", "a.mkv", "-O", "out", "--task", "sr4x"), 2)   # not in a batch
    assert_one_line_error(vir("restore", clip_tiny_audio, "-o", "-", "--realtime", *SR4X), 2)  # a file: no pace


def test_format_names_a_stream_container_only(clip_tiny_audio, tmp_path):
    assert_one_line_error(vir("restore", clip_tiny_audio, "-o", tmp_path / "x.mkv", "--format", "nut", *SR4X), 2)
    assert_one_line_error(vir("restore", clip_tiny_audio, "-o", "-", "--format", "nosuch", *SR4X), 2)


def test_degrade_from_stdin_writes_the_sidecar_and_to_stdout_none(ffmpeg, clip_tiny_audio, tmp_path):
    low = tmp_path / "low.mkv"
    r = vir("degrade", "-", low, "--task", "sr4x", "--no-progress", input=clip_tiny_audio.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "low.mkv.vir.json").is_file() and _streams(low)["size"] == (16, 12)
    # to stdout: no sidecar, and a warning that names the options restoring needs; then restore from a pipe
    up = tmp_path / "up.mkv"
    deg = subprocess.Popen([*VIR, "degrade", clip_tiny_audio, "-", "--task", "sr4x", "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    res = subprocess.run([*VIR, "restore", "-", "-o", up, *SR4X], stdin=deg.stdout, capture_output=True, env=_env(),
                         timeout=120)
    deg.stdout.close()
    warning = deg.communicate(timeout=60)[1].decode()
    assert deg.returncode == 0 and res.returncode == 0, (warning, res.stderr.decode())
    assert "no sidecar for a stream output: restore it with --task sr4x" in warning
    assert sorted(p.name for p in tmp_path.iterdir()) == ["low.mkv", "low.mkv.vir.json", "up.mkv"]
    assert _streams(up)["video"] == 20 and _streams(up)["size"] == (64, 48)


def test_input_format_and_options_open_a_headerless_source(ffmpeg, clip_tiny_audio, tmp_path):
    """Raw YUV has no header: --input-format and --input-opt say what it is, as for a capture device."""
    raw = tmp_path / "frames.yuv"
    subprocess.run([ffmpeg, *QUIET_FF, "-i", str(clip_tiny_audio), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                    str(raw)], check=True)
    out = tmp_path / "up.mkv"
    opts = ("--input-opt", "video_size=64x48", "--input-opt", "pixel_format=yuv420p", "--input-opt", "framerate=10")
    r = vir("restore", raw, "--input-format", "rawvideo", *opts, "-o", out, *SR4X)
    assert r.exit_code == 0, r.stderr
    assert _streams(out)["video"] == 20 and _streams(out)["size"] == (256, 192)
    assert_one_line_error(vir("restore", raw, "--input-format", "nosuchformat", "-o", out, "-y", *SR4X), 4)
    assert_one_line_error(vir("restore", raw, "--input-opt", "novalue", "--input-format", "rawvideo", "-o", out,
                              "-y", *SR4X), 2)


# ----------------------------------------------------------------------------- URLs
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: ANN002 - no request log on stderr
        pass


@pytest.fixture()
def http_root(tmp_path, clip_tiny_audio):
    """http://127.0.0.1:PORT/ serving a folder with tiny.mkv, from a thread."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "tiny.mkv").write_bytes(clip_tiny_audio.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_restore_from_http(http_root, tmp_path):
    out = tmp_path / "up.mkv"
    r = vir("restore", f"{http_root}/tiny.mkv", "-o", out, *SR4X)
    assert r.exit_code == 0, r.stderr
    got = _streams(out)
    assert got["video"] == 20 and got["size"] == (256, 192) and got["audio"] > 0


class _CutShort(http.server.BaseHTTPRequestHandler):
    """Promises the whole clip, sends half of it and closes the connection."""

    data = b""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        self.wfile.write(self.data[: len(self.data) // 2])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):  # noqa: ANN002
        pass


def test_a_connection_lost_mid_stream_is_exit_10(clip_tiny_audio, tmp_path):
    handler = type("Cut", (_CutShort,), {"data": clip_tiny_audio.read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # to a pipe: exit 10, and what came through is a finished stream
        r = subprocess.run([*VIR, "restore", f"http://127.0.0.1:{server.server_address[1]}/tiny.mkv", "-o", "-",
                            *SR4X], capture_output=True, env=_env(), timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    err = r.stderr.decode()
    assert r.returncode == 10, err
    assert re.search(r"stopped after \d+ frames", err) and len(err.strip().splitlines()) == 1, err
    (tmp_path / "cut.mkv").write_bytes(r.stdout)
    assert 0 < _streams(tmp_path / "cut.mkv")["video"] < 20


def test_http_404_is_exit_10(http_root, tmp_path):
    r = vir("restore", f"{http_root}/missing.mkv", "-o", tmp_path / "x.mkv", *SR4X)
    assert_one_line_error(r, 10)
    assert "404" in r.stderr or "Not Found" in r.stderr, r.stderr
    assert not (tmp_path / "x.mkv").exists()


def test_refused_connection_is_exit_10(tmp_path):
    with socket.socket() as s:         # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = vir("restore", f"http://127.0.0.1:{port}/x.mkv", "-o", tmp_path / "x.mkv", *SR4X)
    assert_one_line_error(r, 10)
    assert "refused" in r.stderr.lower()


@pytest.mark.parametrize("scheme, fmt", [("tcp", "mpegts"), ("rtmp", None)])
def test_a_refused_output_url_is_exit_10(clip_tiny_audio, scheme, fmt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ("--format", fmt) if fmt else ()
    r = vir("restore", clip_tiny_audio, "-o", f"{scheme}://127.0.0.1:{port}/live/x", *args, *SR4X)
    assert_one_line_error(r, 10)
    assert "refused" in r.stderr.lower()


def test_a_silent_server_times_out_with_exit_10(tmp_path):
    with socket.socket() as s:         # accepts connections (the backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.monotonic()
        r = vir("restore", f"http://127.0.0.1:{s.getsockname()[1]}/x.mkv", "-o", tmp_path / "x.mkv",
                "--timeout", "1", *SR4X)
        seconds = time.monotonic() - t0
    assert_one_line_error(r, 10)
    assert "--timeout" in r.stderr and seconds < 10, (r.stderr, seconds)


def test_file_url_output(clip_tiny_audio, tmp_path):
    out = tmp_path / "out.ts"
    r = vir("restore", clip_tiny_audio, "-o", f"file:{out}", *SR4X)       # mpegts from the .ts name
    assert r.exit_code == 0, r.stderr
    with av.open(str(out)) as c:
        assert c.format.name == "mpegts" and c.streams.audio
    assert _streams(out)["video"] == 20


def test_udp_output(clip_tiny_audio, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.5)
        got = bytearray()

        def receive():
            idle = time.monotonic()
            while time.monotonic() - idle < 20:
                try:
                    got.extend(rx.recv(65536))
                    idle = time.monotonic()
                except socket.timeout:
                    if got and time.monotonic() - idle > 2:
                        return

        thread = threading.Thread(target=receive)
        thread.start()
        r = vir("restore", clip_tiny_audio, "-o", f"udp://127.0.0.1:{rx.getsockname()[1]}", *SR4X)
        thread.join()
    assert r.exit_code == 0, r.stderr
    (tmp_path / "rx.ts").write_bytes(bytes(got))        # mpegts, the default for udp
    got_streams = _streams(tmp_path / "rx.ts")
    assert got_streams["video"] == 20 and got_streams["size"] == (256, 192) and got_streams["audio"] > 0


# ----------------------------------------------------------------------------- live behaviour
def _wait_for(condition, seconds: float = 90.0) -> None:
    """Poll until `condition()` holds (vir's start-up time varies with the machine's load)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix == ".mkv")

def _live_source(ffmpeg, seconds, size="64x48", rate=10, fmt="matroska"):
    """ffmpeg reading a generated source at its own rate (-re), with audio, as FMT on stdout."""
    return [ffmpeg, *QUIET_FF, "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", fmt, "-"]


@pytest.mark.parametrize("to", ["pipe", "file"])
def test_sigint_mid_pipe_leaves_a_playable_output(ffmpeg, tmp_path, to):
    out = tmp_path / "part.mkv"
    src = subprocess.Popen(_live_source(ffmpeg, 60), stdout=subprocess.PIPE)
    target = ["-o", "-"] if to == "pipe" else ["-o", str(out)]
    proc = subprocess.Popen([*VIR, "restore", "-", *target, *SR4X], stdin=src.stdout, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default,
                            stdout=subprocess.PIPE if to == "pipe" else subprocess.DEVNULL, env=_env())
    src.stdout.close()
    dst = None
    if to == "pipe":
        dst = subprocess.Popen([ffmpeg, *QUIET_FF[:-1], "-y", "-i", "-", "-c", "copy", str(out)], stdin=proc.stdout)
        proc.stdout.close()
    try:
        _wait_for(lambda: _bytes_under(tmp_path) > 0)      # restored frames reached the output (or its temporary)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1].decode()
        if dst is not None:
            assert dst.wait(timeout=60) == 0
    finally:
        src.kill()
        src.wait()
    assert proc.returncode == 130, err
    m = re.search(r"interrupted: (stdout|part\.mkv) holds the (\d+) frames restored before it", err)
    assert m, err
    frames = int(m.group(2))
    got = _streams(out)
    assert 0 < frames < 600 and got["video"] == frames and got["size"] == (256, 192), (frames, got)
    assert got["audio"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.mkv"]    # no temporary left behind


def test_a_slow_restorer_holds_a_fast_pipe_back(ffmpeg, tmp_path):
    """Back-pressure: ffmpeg could write 15000 raw frames at once, but gets only as far ahead of the
    restorer as the pipe, the reader's buffer and its queue of blocks hold."""
    progress = tmp_path / "ffmpeg-progress.txt"
    src = subprocess.Popen([ffmpeg, *QUIET_FF, "-progress", str(progress), "-stats_period", "0.2", "-f", "lavfi",
                            "-i", "testsrc2=size=64x48:rate=25:duration=600", "-c:v", "rawvideo", "-pix_fmt",
                            "yuv420p", "-f", "nut", "-"], stdout=subprocess.PIPE)
    proc = subprocess.Popen([*VIR, "restore", "-", "-o", str(tmp_path / "up.mkv"), *SR4X], stdin=src.stdout,
                            preexec_fn=_sigint_default,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    src.stdout.close()
    def frames_out() -> int:        # what ffmpeg got out so far
        text = progress.read_text() if progress.exists() else ""
        return int((re.findall(r"^frame=(\d+)", text, re.M) or ["0"])[-1])

    try:
        _wait_for(lambda: frames_out() > 300)       # vir took 300 - 120 frames at least: it is restoring
        time.sleep(2)
        written = frames_out()
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        src.kill()
        src.wait()
    m = re.search(r"holds the (\d+) frames", err)
    assert m, err
    restored = int(m.group(1))
    # 4608 bytes a frame: the 64 KiB pipe holds 14, FFmpeg's read buffer 7, the queue and the block
    # being filled 36, the restorer's block 12
    print(f"back-pressure: ffmpeg wrote {written} frames while vir restored {restored}")
    assert restored > 0 and written < restored + 120 and written < 15000, (restored, written)   # (stats lag 0.2 s)


def test_realtime_drops_whole_blocks_and_says_how_many(ffmpeg, tmp_path):
    """A 500 fps real-time source into a restorer that can't keep up (about 10 to 150 fps here): blocks
    are dropped, the rest keeps its timestamps."""
    out = tmp_path / "rt.mkv"
    src = subprocess.Popen(_live_source(ffmpeg, 2, rate=500, fmt="mpegts"), stdout=subprocess.PIPE)
    r = subprocess.run([*VIR, "restore", "-", "-o", out, "--realtime", "--block-frames", "4", *SR4X],
                       stdin=src.stdout, capture_output=True, env=_env(), timeout=120)
    src.stdout.close()
    src.wait()
    err = r.stdout.decode() + r.stderr.decode()      # the summary is on stdout for a file output
    assert r.returncode == 0, err
    m = re.search(r"restored (\d+) frames .* dropped (\d+) input frames to keep up", err)
    assert m, err
    kept, dropped = int(m.group(1)), int(m.group(2))
    print(f"--realtime: kept {kept}, dropped {dropped} of 1000")
    assert kept + dropped == 1000 and dropped > 0 and kept % 4 == 0, (kept, dropped)
    with av.open(str(out)) as c:
        tb = c.streams.video[0].time_base
        pts = [f.pts for f in c.decode(video=0)]
        assert c.streams.audio
    assert len(pts) == kept and all(b > a for a, b in zip(pts, pts[1:]))
    assert float((pts[-1] - pts[0]) * tb) > 1.2       # the kept frames span the 2 s source, with gaps
