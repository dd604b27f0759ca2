"""Fuzzing what vir reads: mutated real clips through `vir degrade` (the reader, the probe, the
writer), in a worker process held to a time and a memory bound, and generated values through the
sidecar, checkpoint-header, config and mask parsers (hypothesis, in `parsers.py`).

A mutated clip ends in one of these outcomes:

    same          exit 0, every frame identical to what the clean clip gives
    changed       exit 0, as many frames, some pixels differ: the format has no checksum that
                  could show it (H.264, MPEG-4, MJPEG, VP9, HEVC, FFV1 without slice CRCs)
    short-undeclared  exit 0 with exactly the first frames of an MPEG-TS cut short: TS declares
                  no length, so nothing tells that frames are missing at its end
    reindexed     exit 0 with another number of frames, exactly those an MP4/MOV edit list keeps:
                  the changed index describes another video (its discarded samples give no frame)
    exit-N        a documented refusal (N in 2..9) in one line on stderr
    FAIL-...      what must never happen: traceback (an exception, exit 1), lines (more than one
                  line on stderr), hang (over `TIME_BOUND_S`), memory (the peak RSS of one input over
                  `MEMORY_BOUND` above the worker's), count (exit 0 with another number of frames),
                  silent (exit 0 with other frames from FFV1 with slice CRCs, which vir checks)

`tests/fuzz/test_fuzz.py` runs a few dozen inputs in the test suite; `scripts/fuzz.py --minutes N`
runs for as long as asked and prints the counts (docs/robustness.md reports a run).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIME_BOUND_S = 60.0                # one input (a 2 s clip of 96x64): decoded in well under a second
MEMORY_BOUND = 1 << 30             # peak RSS of one input above the worker's resting RSS
AS_HEADROOM = 4 << 30              # address space the worker may add (RLIMIT_AS): the machine's guard

# seed clips: (name, ffmpeg output args, checksummed); 16 frames of testsrc2, 96x64, 8 fps, with
# a 1 s sine where the container holds audio. "ffv1-crc.mkv" is made by `vir degrade` instead.
_SRC = ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=8:duration=2"]
_AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2"]
CLIPS: dict[str, tuple[list[str], bool]] = {
    "h264.mp4": (_SRC + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "4",
                         "-movflags", "+faststart"], False),
    "h264-aac.mp4": (_SRC + _AUDIO + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                                      "-c:a", "aac", "-b:a", "32k", "-shortest"], False),
    "h264.mkv": (_SRC + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "2"], False),
    "h264.ts": (_SRC + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], False),
    "hevc.mp4": (_SRC + ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-x265-params",
                         "log-level=error"], False),
    "vp9.webm": (_SRC + ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"], False),
    "mpeg4.avi": (_SRC + ["-c:v", "mpeg4", "-q:v", "4"], False),
    "mjpeg.avi": (_SRC + ["-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p"], False),
    "prores.mov": (_SRC + ["-c:v", "prores_ks", "-profile:v", "0"], False),
    "ffv1-nocrc.mkv": (_SRC + ["-c:v", "ffv1", "-level", "1"], False),
    "ffv1-crc.mkv": ([], True),
}
DEGRADE = ["degrade", "{in}", "{out}", "--task", "inpaint", "--seed", "3", "--overwrite", "--no-progress"]


def seed_clips(folder: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Make (once) the seed clips in `folder` with imageio-ffmpeg's ffmpeg and `vir degrade`."""
    import imageio_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    out = {}
    for name in names or list(CLIPS):
        path = folder / name
        if not path.is_file():
            tmp = folder / f"tmp-{os.getpid()}-{name}"
            if name == "ffv1-crc.mkv":
                src = seed_clips(folder, ["h264.mkv"])["h264.mkv"]
                cmd = [sys.executable, "-m", "instantvir_cli", "degrade", str(src), str(tmp.with_suffix(".mkv")),
                       "--task", "deblur", "--no-progress", "--overwrite"]
                r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
                tmp = tmp.with_suffix(".mkv")
                for side in folder.glob(tmp.name + ".vir.json"):
                    side.unlink()
            else:
                fmt = {".mkv": "matroska", ".ts": "mpegts", ".webm": "webm", ".avi": "avi", ".mov": "mov",
                       ".mp4": "mp4"}[path.suffix]
                cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *CLIPS[name][0],
                       "-f", fmt, str(tmp)]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0 or not tmp.is_file():
                raise RuntimeError(f"could not make the seed clip {name}: {r.stderr.strip()[-300:]}")
            tmp.replace(path)
        out[name] = path
    return out


# ----------------------------------------------------------------------------- mutations
def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random mutation of a file's bytes, and its name."""
    b = bytearray(data)
    n = len(b)
    kind = rng.choice(["bitflip", "byte", "bytes", "zero", "delete", "duplicate", "insert", "truncate",
                       "header", "swap", "int"])
    pos = rng.randrange(n)
    span = rng.choice([1, 2, 4, 16, 256, 4096])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(n)
            b[p] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        b[pos] = (b[pos] + rng.randrange(1, 256)) % 256
    elif kind == "bytes":
        b[pos:pos + span] = bytes(rng.randrange(256) for _ in range(min(span, n - pos)))
    elif kind == "zero":
        b[pos:pos + span] = bytes(min(span, n - pos))
    elif kind == "delete":
        del b[pos:pos + span]
    elif kind == "duplicate":
        b[pos:pos] = b[pos:pos + span]
    elif kind == "insert":
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(span))
    elif kind == "truncate":
        del b[rng.randrange(1, n):]
    elif kind == "header":        # the first kilobytes hold the header, the index, the codec setup
        p = rng.randrange(min(n, 2048))
        b[p] = rng.randrange(256)
    elif kind == "swap":
        q = rng.randrange(n)
        a, c = sorted((pos, q))
        if c - a > span:
            b[a:a + span], b[c:c + span] = b[c:c + span], b[a:a + span]
    else:                         # a length or count field: a big-endian integer made huge or zero
        width = rng.choice([2, 4, 8])
        value = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, (1 << (8 * width)) - 1, rng.randrange(1 << (8 * width))])
        b[pos:pos + width] = (value % (1 << (8 * width))).to_bytes(width, "big")[: max(0, n - pos)]
    return bytes(b), kind


# ----------------------------------------------------------------------------- the worker
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2", "NO_COLOR": "1", "TERM": "dumb",
            "COLUMNS": "200"}


def _rss_peak_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")           # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _frames(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _kept_samples(path: Path) -> int | None:
    """How many video samples an MP4/MOV edit list keeps (None: it discards none, or not MP4)."""
    import av

    with av.open(str(path)) as c:
        if "mp4" not in c.format.name:
            return None
        sizes = [(p.size, p.is_discard) for p in c.demux(video=0) if p.size]
    return sum(not d for _, d in sizes) if any(d for _, d in sizes) else None


def worker_main() -> None:
    """Run `vir degrade` on each input the parent sends (one JSON line each), reply with the outcome."""
    import resource

    from typer.testing import CliRunner

    from instantvir_cli.cli import app

    runner = CliRunner()
    with open("/proc/self/status") as f:
        vm = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + AS_HEADROOM, vm + AS_HEADROOM))
    for line in sys.stdin:
        job = json.loads(line)
        args = [a.replace("{in}", job["input"]).replace("{out}", job["out"]) for a in DEGRADE]
        _reset_peak()
        rest = _rss_peak_kib()
        t0 = time.perf_counter()
        res = runner.invoke(app, args, catch_exceptions=True)
        reply = {"code": res.exit_code, "stderr": res.stderr[-400:], "seconds": time.perf_counter() - t0,
                 "memory": (_rss_peak_kib() - rest) * 1024}
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            reply["exception"] = f"{type(res.exception).__name__}: {str(res.exception)[:200]}"
        if res.exit_code == 0:
            try:
                got, want = _frames(Path(job["out"])), _frames(Path(job["reference"]))
                reply["frames"] = int(got.shape[0])
                reply["same"] = bool(got.shape == want.shape and (got == want).all())
                reply["prefix"] = bool(0 < len(got) < len(want) and (got == want[: len(got)]).all())
                if got.shape[0] != want.shape[0]:
                    reply["kept"] = _kept_samples(Path(job["input"]))
            except Exception as e:  # noqa: BLE001 - reported as an outcome
                reply["exception"] = f"reading the output: {type(e).__name__}: {e}"
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Worker:
    """A worker process; `run(job)` returns its reply, or {"hang": True} after TIME_BOUND_S (and a restart)."""

    def __init__(self):
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.fuzz.harness import worker_main; worker_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=_env(), cwd=str(REPO))

    def run(self, job: dict, bound_s: float = TIME_BOUND_S) -> dict:
        import selectors

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=bound_s + 20)    # + the worker's start-up (imports) on a loaded machine
        sel.close()
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            died = self.proc.poll() is not None
            self.close()
            return {"died": True} if died else {"hang": True}
        reply = json.loads(line)
        if reply["seconds"] > bound_s:
            reply["hang"] = True
        return reply

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


def outcome(reply: dict, checksummed: bool, clean_frames: int, declares_length: bool = True) -> str:
    """The outcome name of a worker reply (module docstring)."""
    if reply.get("hang"):
        return "FAIL-hang"
    if reply.get("died"):
        return "FAIL-died"
    if reply.get("memory", 0) > MEMORY_BOUND:
        return "FAIL-memory"
    if "exception" in reply or reply["code"] == 1:
        return "FAIL-traceback"
    lines = [ln for ln in reply["stderr"].splitlines() if ln.strip() and not ln.startswith("warning:")]
    if reply["code"] != 0:
        if len(lines) != 1 or not lines[0].startswith("error:"):
            return "FAIL-lines"
        return f"exit-{reply['code']}"
    if reply["same"]:
        return "same"
    if reply["frames"] != clean_frames:
        if reply.get("kept") is not None and reply["frames"] == reply["kept"]:
            return "reindexed"             # what the changed edit list keeps, no more and no fewer
        if reply.get("prefix") and not declares_length:
            return "short-undeclared"      # exactly the first frames, of a format with no declared length
        return "FAIL-count"
    return "FAIL-silent" if checksummed else "changed"


@dataclass
class Tally:
    """Counts of a fuzzing run: per outcome, per clip and outcome, and the failing inputs."""

    outcomes: Counter = field(default_factory=Counter)
    by_clip: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    inputs: int = 0

    def add(self, clip: str, kind: str, result: str, reply: dict, path: Path | None) -> None:
        self.inputs += 1
        self.outcomes[result] += 1
        self.by_clip.setdefault(clip, Counter())[result] += 1
        if result.startswith("FAIL"):
            self.failures.append({"clip": clip, "mutation": kind, "outcome": result, "input": str(path),
                                  "reply": {k: v for k, v in reply.items() if k != "stderr"},
                                  "stderr": reply.get("stderr", "")})


def fuzz_clips(work: Path, seconds: float | None = None, count: int | None = None, seed: int = 0,
               clips: list[str] | None = None, keep_failures: Path | None = None, progress=None) -> Tally:
    """Mutate the seed clips round robin and run each through the worker, for `seconds` or `count` inputs."""
    seeds = seed_clips(work / "seeds", clips)
    worker, tally, rng = Worker(), Tally(), random.Random(seed)
    refs, clean = {}, {}
    try:
        for name, path in seeds.items():        # what the clean clip gives
            ref = work / f"ref-{name}.mkv"
            reply = worker.run({"input": str(path), "out": str(ref), "reference": str(path)}, bound_s=120)
            if reply.get("code") != 0:
                raise RuntimeError(f"the clean seed clip {name} does not degrade: {reply}")
            refs[name], clean[name] = ref, reply["frames"]
        names = list(seeds)
        t_end = None if seconds is None else time.monotonic() + seconds
        i = 0
        while (count is None or i < count) and (t_end is None or time.monotonic() < t_end):
            name = names[i % len(names)]
            data, kind = mutate(seeds[name].read_bytes(), rng)
            inp = work / f"in{Path(name).suffix}"
            inp.write_bytes(data)
            out = work / "out.mkv"
            reply = worker.run({"input": str(inp), "out": str(out), "reference": str(refs[name])})
            result = outcome(reply, CLIPS[name][1], clean[name], not name.endswith(".ts"))
            kept = None
            if result.startswith("FAIL") and keep_failures is not None:
                keep_failures.mkdir(parents=True, exist_ok=True)
                kept = keep_failures / f"{seed}-{i:05d}-{result}-{kind}-{name}"
                kept.write_bytes(data)
            tally.add(name, kind, result, reply, kept)
            i += 1
            if progress:
                progress(tally)
    finally:
        worker.close()
    return tally


__all__ = ["CLIPS", "MEMORY_BOUND", "TIME_BOUND_S", "Tally", "Worker", "fuzz_clips", "mutate", "outcome",
           "seed_clips", "worker_main"]
