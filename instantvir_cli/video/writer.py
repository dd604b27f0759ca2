"""`VideoWriter`: encode (1, 3, T, H, W) blocks, copy audio/subtitles, rename into place on success.

The file is written to a hidden temporary beside the target (same folder, same extension) and
moved onto the target only when `close()` succeeds, through `atomic.AtomicOutput`: the target is
locked while it is written (a second vir to the same output is refused), an existing target is
never replaced without `overwrite`, a full disk at any point (encoding, the trailer, fsync) is
OutputRefused with nothing at the target, and the temporary is removed on an error, Ctrl-C,
SIGTERM/SIGHUP or exit (after SIGKILL the next vir writing into that folder removes it). A video
is one output with its sidecar `<name>.vir.json`: overwriting the video removes an old sidecar,
which described the old file.

A stream output (stdout, a URL: `video.endpoint.Sink`) has no temporary: packets go out as they
are encoded, and the stream is finished (encoder flushed, trailer written) whether the writer is
closed or aborted, so what reached it is playable up to the last frame written.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from instantvir_cli.atomic import AtomicOutput
from instantvir_cli.errors import InputUnreadable, OutputRefused, UsageError
from instantvir_cli.limits import check_frame_size
from instantvir_cli.paths import sidecar_path
from instantvir_cli.video.endpoint import Sink
from instantvir_cli.video.info import (MATRIX_TAG, PRIMARIES_NAMES, PRIMARIES_TAG, RANGE_TAG, SWS_MATRIX,
                                       SWS_RANGE, TRC_NAMES, TRC_TAG, VideoInfo, _reason)
from instantvir_cli.video.reader import SWS_FLAGS, VideoReader

WarnFn = Callable[[str], None]
# muxers whose codec list FFmpeg can't be asked for (PyAV's `supported_codecs` names only their
# defaults, MPEG-2 and MP2): the muxer itself decides when the stream is added
UNLISTED = {"mpegts", "rtp_mpegts"}


@dataclass
class EncodeOptions:
    """How `VideoWriter` encodes video. `extra` holds encoder options as strings (-e key=value)."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "yuv420p"
    lossless: bool = False          # exact RGB: FFV1 in .mkv, libx264rgb qp 0 in .mp4/.mov (16-bit FFV1 for > 8-bit)
    copy_streams: bool = True       # copy audio/subtitle packets from the source reader
    colorspace: str | None = None   # bt709 | bt601 | bt2020; None: the source's matrix, else bt709
    color_range: str = "limited"    # limited | full
    threads: int = 0                # encoder threads, 0 = automatic
    extra: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- writer
class VideoWriter:
    """Write frame blocks to `path`; a context manager that renames into place on success.

    Args:
        path: target file, whose extension picks the container (.mp4, .mkv, .mov, ...), or a `Sink`
            (a file, stdout, a URL: the sink's format).
        width, height: frame size of the blocks that will be written.
        source: the `VideoReader` being processed (timestamps, colour, rotation and the audio/
            subtitle packets to copy), or its `VideoInfo` (no stream copy), or None.
        options: `EncodeOptions`.
        overwrite: replace an existing target.
        warn: called with a one-line message for each choice the user should know about.
        fps: frame rate when there is no source (pts then count frames).
        output: an `AtomicOutput` this video is one target of (its owner commits it, e.g. with a
            sidecar); None: the writer makes its own and commits it in `close()`.
    Raises: OutputRefused (target exists or is being written / folder / unknown container / frames
        over the size limit), UsageError (codec, pixel format or encoder option the encoder refuses).
    """

    def __init__(
        self,
        path: str | Path | Sink,
        width: int,
        height: int,
        source: VideoReader | VideoInfo | None = None,
        options: EncodeOptions | None = None,
        overwrite: bool = False,
        warn: WarnFn | None = None,
        fps: Fraction | int | float | None = None,
        output: AtomicOutput | None = None,
    ):
        self.sink = path if isinstance(path, Sink) else Sink.parse(Path(path))
        self.stream_out = not self.sink.is_file
        self.path = self.sink.path
        self._suffix = self.sink.suffix
        self.width, self.height = int(width), int(height)
        self.options = options or EncodeOptions()
        self._warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
        self.reader = source if isinstance(source, VideoReader) else None
        self.info: VideoInfo | None = source.info if isinstance(source, VideoReader) else source
        self.frames_written = 0
        self._closed = False
        self._fps = fps if fps is not None else 25
        if self.stream_out:
            self._open_stream(width, height)
            return
        if self.path.is_dir():
            raise OutputRefused(f"output is a folder: {self.path}")
        if self.path.exists() and not overwrite:
            raise OutputRefused(f"output exists: {self.path} (pass --overwrite to replace it)")
        if not self.path.parent.is_dir():
            raise OutputRefused(f"output folder does not exist: {self.path.parent}")
        if width < 1 or height < 1:
            raise UsageError(f"output size {width}x{height} is empty")
        check_frame_size(self.width, self.height, f"output {self.path.name}", OutputRefused)
        self._own = output is None
        self.output = output or AtomicOutput([self.path], overwrite, clears=[sidecar_path(self.path)])
        try:
            self.tmp_path = self.output.temp(self.path)
            mov = self.path.suffix.lower() in (".mp4", ".mov", ".m4v")
            self._container = av.open(str(self.tmp_path), mode="w",
                                      container_options={"movflags": "+faststart"} if mov else None)
        except (ValueError, av.error.FFmpegError, OSError) as e:
            self.output.abort()
            raise OutputRefused(f"can't write {self.path}: {_reason(e)} (use .mp4, .mkv or .mov)") from None
        except BaseException:
            self.output.abort()
            raise
        self._start()

    def _start(self) -> None:
        """Set up the video stream and the copied ones on the open container (aborting on failure)."""
        try:
            self._setup_video()
            self._copies = self._setup_copies()
        except BaseException:
            self.abort()
            raise
        self._held: deque = deque()     # side packets waiting for the video to catch up
        self._last_pts: int | None = None
        self._video_end = float("-inf")  # seconds: end of the last frame written

    def _open_stream(self, width: int, height: int) -> None:
        """Open stdout or a URL: no temporary, no lock, nothing to rename."""
        if width < 1 or height < 1:
            raise UsageError(f"output size {width}x{height} is empty")
        check_frame_size(self.width, self.height, f"output {self.sink.name}", OutputRefused)
        self._own, self.output = False, None
        self._container = self.sink.open()
        self._start()

    # ------------------------------------------------------------------ setup
    def _setup_video(self) -> None:
        opts, info, c = self.options, self.info, self._container
        fps = info.fps if info else Fraction(self._fps).limit_denominator(1001)
        self.time_base = info.time_base if info else 1 / fps
        self.fps = fps
        codec, pix_fmt, enc_opts = self._choose_codec()
        try:
            stream = c.add_stream(codec, rate=fps)
        except (ValueError, av.error.FFmpegError) as e:
            raise UsageError(f"can't encode {codec} into {self._suffix or 'this'} files: {_reason(e)}") from None
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, pix_fmt
        stream.time_base = self.time_base
        cc = stream.codec_context
        cc.time_base = self.time_base
        cc.framerate = fps
        cc.thread_count = opts.threads
        if info and info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        stream.options = enc_opts
        fmt = av.VideoFormat(pix_fmt)
        self.deep = max(comp.bits for comp in fmt.components) > 8
        self._rgb_format, self._dtype = ("gbrp16le", np.dtype("<u2")) if self.deep else ("gbrp", np.dtype(np.uint8))
        # colour: matrix and range for RGB -> YUV, and the tags players read
        src_matrix = info.colorspace if info else None
        matrix = opts.colorspace or (src_matrix if src_matrix in MATRIX_TAG else "bt709")
        if matrix not in MATRIX_TAG:
            raise UsageError(f"unknown colorspace {matrix!r} (use one of {', '.join(MATRIX_TAG)})")
        if opts.color_range not in RANGE_TAG:
            raise UsageError(f"unknown colour range {opts.color_range!r} (use limited or full)")
        self.colorspace, self.color_range = ("rgb", "full") if fmt.is_rgb else (matrix, opts.color_range)
        prim = _tag(info.color_primaries if info else None, PRIMARIES_NAMES) or PRIMARIES_TAG[matrix]
        trc = _tag(info.color_trc if info else None, TRC_NAMES) or TRC_TAG[matrix]
        cc.color_primaries, cc.color_trc = prim, trc
        if fmt.is_rgb:
            cc.colorspace, cc.color_range = 0, RANGE_TAG["full"]
        else:
            cc.colorspace, cc.color_range = MATRIX_TAG[matrix], RANGE_TAG[opts.color_range]
        self._sws_kw = {} if fmt.is_rgb else dict(
            dst_colorspace=SWS_MATRIX[matrix], dst_color_range=SWS_RANGE[opts.color_range],
            src_color_range="JPEG")
        if info and info.rotation:
            stream.set_display_rotation(info.rotation)
        self._open_encoder(cc, codec, enc_opts)
        self.codec, self.pix_fmt, self._stream = codec, pix_fmt, stream
        self._sws = VideoReformatter()

    def _open_encoder(self, cc, codec: str, enc_opts: dict[str, str]) -> None:
        """Open the encoder now, so that a bad `-e KEY=VALUE` is a usage error before any work.

        A value the encoder rejects, or a key it does not know (left unused), is UsageError.
        """
        cc.options = dict(enc_opts)
        try:
            cc.open()
        except (av.error.FFmpegError, ValueError) as e:
            extra = ", ".join(f"{k}={v}" for k, v in self.options.extra.items())
            raise UsageError(f"the {codec} encoder refused its options ({extra or 'the defaults'}): {_reason(e)}"
                             + (f" (see ffmpeg -h encoder={codec})" if extra else "")) from None
        unused = sorted(k for k in (cc.options or {}) if k in self.options.extra)
        if unused:
            raise UsageError(f"unknown encoder option{'s' if len(unused) > 1 else ''} for {codec}: "
                             f"{', '.join(unused)} (see ffmpeg -h encoder={codec})")

    def _choose_codec(self) -> tuple[str, str, dict[str, str]]:
        opts, suffix = self.options, self._suffix
        supported = self._container.supported_codecs
        deep = bool(self.info and self.info.bit_depth > 8)
        if opts.lossless:
            if suffix in (".mp4", ".mov", ".m4v") and not deep:
                codec, pix_fmt, enc = "libx264rgb", "rgb24", {"qp": "0", "preset": opts.preset or "medium"}
            elif "ffv1" in supported and suffix != ".mov":
                codec, pix_fmt, enc = "ffv1", ("gbrp16le" if deep else "bgr0"), {"level": "3", "slicecrc": "1"}
                if suffix in (".mp4", ".m4v"):
                    self._warn("16-bit lossless in .mp4 uses FFV1, which only FFmpeg-based players read; "
                               "prefer .mkv")
            else:
                raise UsageError(f"lossless {'16-bit ' if deep else ''}output can't go into {suffix or 'this'} "
                                 f"files: use .mkv")
            enc.update(opts.extra)
            return codec, pix_fmt, enc
        codec, pix_fmt = opts.codec, opts.pix_fmt
        try:
            formats = {f.name for f in av.codec.Codec(codec, "w").video_formats or []}
        except (ValueError, av.error.FFmpegError):
            raise UsageError(f"unknown video encoder: {codec}") from None
        try:
            fmt = av.VideoFormat(pix_fmt)
        except ValueError:
            raise UsageError(f"unknown pixel format: {pix_fmt}") from None
        if (self.width % 2 and fmt.chroma_width(2) < 2) or (self.height % 2 and fmt.chroma_height(2) < 2):
            full = _full_chroma(pix_fmt)
            if full not in formats:
                raise UsageError(f"{self.width}x{self.height} is odd-sized: {codec} can't encode {pix_fmt} "
                                 f"(4:2:0 needs even sizes) nor {full}")
            self._warn(f"{self.width}x{self.height} has an odd side, which {pix_fmt} can't hold: "
                       f"encoding {full} (full-resolution chroma) to keep the exact size")
            pix_fmt = full
        if formats and pix_fmt not in formats:
            raise UsageError(f"{codec} can't encode pixel format {pix_fmt} "
                             f"(it takes {', '.join(sorted(formats)[:8])}...)")
        if (codec not in supported and av.codec.Codec(codec, "w").name not in supported
                and self._container.format.name not in UNLISTED):
            raise UsageError(f"{self._suffix or 'this'} files can't hold {codec} video")
        enc: dict[str, str] = {}
        if opts.crf is not None:
            enc["crf"] = str(opts.crf)
        if opts.preset:
            enc["preset"] = str(opts.preset)
        enc.update({str(k): str(v) for k, v in opts.extra.items()})
        return codec, pix_fmt, enc

    def _setup_copies(self) -> dict[int, av.stream.Stream]:
        if not (self.reader and self.options.copy_streams):
            return {}
        copies, sources, supported = {}, [], self._container.supported_codecs
        for s in self.reader.side_streams():
            name = s.codec_context.name if s.codec_context else "unknown"
            listed = name in supported or self._container.format.name in UNLISTED
            if not listed or not _can_mux(self._container.format.name, s):
                self._warn(f"dropping {s.type} stream #{s.index} ({name}): {self._suffix or 'these'} files can't hold it"
                           + ("; use .mkv to keep it" if s.type == "subtitle" else ""))
                continue
            try:
                out = self._container.add_stream_from_template(s)
            except (ValueError, av.error.FFmpegError) as e:
                self._warn(f"dropping {s.type} stream #{s.index} ({name}): {_reason(e)}")
                continue
            out.time_base = s.time_base
            copies[s.index] = out
            sources.append(s)
        self.reader.forward_packets(sources)
        return copies

    # ------------------------------------------------------------------ writing
    def write(self, x: torch.Tensor, pts: list[int] | None = None) -> None:
        """Encode x: (1, 3, T, H, W) float in [-1, 1]; pts: T timestamps in the source time base
        (None: consecutive frames at the nominal rate)."""
        if self._closed:
            raise RuntimeError("write() on a closed VideoWriter")
        if x.dim() != 5 or x.shape[0] != 1 or x.shape[1] != 3 or tuple(x.shape[3:]) != (self.height, self.width):
            raise ValueError(f"expected (1, 3, T, {self.height}, {self.width}) frames, got {tuple(x.shape)}")
        T = x.shape[2]
        if pts is not None and len(pts) != T:
            raise ValueError(f"{T} frames but {len(pts)} pts")
        xn = x[0].detach().to("cpu", torch.float32).numpy()  # (3, T, H, W)
        step = max(1, round((1 / self.fps) / self.time_base))
        for t in range(T):
            p = int(pts[t]) if pts is not None else (0 if self._last_pts is None else self._last_pts + step)
            if self._last_pts is not None and p <= self._last_pts:
                raise ValueError(f"pts must increase: {p} after {self._last_pts}")
            frame = self._sws.reformat(self._rgb_frame(xn[:, t]), format=self.pix_fmt, interpolation=SWS_FLAGS,
                                       **self._sws_kw)
            frame.pts, frame.time_base, frame.duration = p, self.time_base, step
            self._encode(frame)
            self._last_pts = p
            self.frames_written += 1
        self._video_end = float((self._last_pts + step) * self.time_base)
        self._mux_side(final=False)

    def _rgb_frame(self, a: np.ndarray) -> av.VideoFrame:
        """a: (3, H, W) float32 RGB in [-1, 1] -> planar gbrp / gbrp16le frame, rounded to nearest.

        numpy rather than torch: single-threaded and predictable beside the caller's compute.
        """
        peak = 65535.0 if self.deep else 255.0
        q = a * np.float32(peak / 2)
        q += np.float32(peak / 2 + 0.5)  # + 0.5: the integer cast below truncates
        np.clip(q, 0, peak, out=q)
        frame = av.VideoFrame(self.width, self.height, self._rgb_format)
        for plane, c in zip(frame.planes, (1, 2, 0)):  # planes are G, B, R
            rows = np.asarray(memoryview(plane)).view(self._dtype).reshape(self.height, -1)
            np.copyto(rows[:, : self.width], q[c], casting="unsafe")
        return frame

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise self._write_error(e) from None

    def _write_error(self, e: BaseException) -> Exception:
        if self.stream_out:
            return self.sink.error(e, "write to")
        return OutputRefused(f"writing {self.path.name} failed: {_reason(e)}")

    def _mux_side(self, final: bool) -> None:
        """Mux copied packets up to the video written so far (all of them at the end of the source)."""
        if not self._copies:
            return
        self._held.extend(self.reader.take_packets())
        while self._held:
            packet = self._held[0]
            t = float(packet.pts * packet.time_base) if packet.pts is not None else float("-inf")
            if t > self._video_end and not (final and self.reader.exhausted):
                if final:  # the video stopped early: drop the rest
                    self._held.clear()
                break
            self._held.popleft()
            packet.stream = self._copies[packet.stream_index]
            try:
                self._container.mux(packet)
            except (av.error.FFmpegError, OSError) as e:
                if self.stream_out:
                    raise self._write_error(e) from None
                t = f" at t={float(packet.pts * packet.time_base):.2f}s" if packet.pts is not None else ""
                raise OutputRefused(f"{self.path.name} refused the input's {packet.stream.type} packet{t} "
                                    f"({_reason(e)}): --no-copy-streams writes the video alone") from None

    # ------------------------------------------------------------------ finishing
    def close(self) -> None:
        """Flush the encoder and finish the file; with its own output, move it onto the target.

        (With an `output` given to the constructor its owner commits it.)
        """
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise InputUnreadable(f"no frames to write to {self.path.name}: the input gave none")
            self._encode(None)
            if self.reader is not None and self._copies and not self.reader.exhausted:
                self._mux_side(final=False)
            self._mux_side(final=True)
            try:
                self._container.close()      # the trailer and the last buffered bytes: a full disk shows here
                if self.stream_out:
                    self.sink.flush()
            except (av.error.FFmpegError, OSError) as e:
                raise self._write_error(e) from None
            if self._own:
                self.output.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Give up: close quietly and remove the temporary (and the rest of its output); the
        target is left untouched. A stream is finished instead: what it received stays playable."""
        if self._closed:
            return
        self._closed = True
        if self.stream_out:
            self._finish_stream()
            return
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing
            pass
        self.output.abort()

    def _finish_stream(self) -> None:
        """Flush the encoder and write the trailer, quietly (the writer is already failing)."""
        try:
            if getattr(self, "frames_written", 0):
                self._encode(None)
                self._mux_side(final=True)
        except Exception:  # noqa: BLE001 - already failing
            pass
        try:
            self._container.close()
            self.sink.flush()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _can_mux(format_name: str, stream: av.stream.Stream) -> bool:
    """Whether a `format_name` file accepts a copy of `stream` (a header written to memory decides:
    `supported_codecs` lists some codecs the muxer then refuses, e.g. Opus or FLAC in .mov)."""
    scratch = av.open(io.BytesIO(), mode="w", format=format_name)
    try:
        out = scratch.add_stream_from_template(stream)
        out.time_base = stream.time_base
        scratch.start_encoding()
        return True
    except (ValueError, av.error.FFmpegError):
        return False
    finally:
        try:
            scratch.close()
        except (ValueError, av.error.FFmpegError):
            pass


def _tag(name: str | None, names: dict[int, str]) -> int | None:
    for k, v in names.items():
        if v == name:
            return k
    return None


def _full_chroma(pix_fmt: str) -> str:
    """yuv420p -> yuv444p, yuv420p10le -> yuv444p10le, nv12 -> yuv444p."""
    if pix_fmt.startswith(("nv12", "nv21", "nv16")):
        return "yuv444p"
    return re.sub(r"^(yuvj?a?)4[12][0-2]p", r"\g<1>444p", pix_fmt)
