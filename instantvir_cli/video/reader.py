"""`VideoReader`: demux every stream in one loop, decode video in a background thread.

Frames come out as blocks `(1, 3, T, H, W)` float32 in [-1, 1] with their pts. Decoding runs in
a thread that fills a small bounded queue, so it overlaps the consumer's compute and memory
stays bounded by `block_size * (queue_depth + 2)` frames whatever the video length: a consumer
slower than the source holds the reader back (back-pressure), or with `realtime` the reader drops
whole blocks that find the queue full, counted in `dropped` (their timestamps are skipped, so the
output timeline stays valid).
A stream (stdin, a URL, a device: `video.endpoint.Source`) is opened once and read in order; the
checks that need the whole file (the Matroska CRCs and index) are left out for it. Packets of
the other streams (audio, subtitles) are not decoded: once a writer asks for them they are
queued for it to copy (`forward_packets` / `take_packets`).
"""

from __future__ import annotations

import bisect
import heapq
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation, VideoReformatter

from instantvir_cli.errors import InputCorrupt, NetworkError
from instantvir_cli.limits import check_memory, max_pixels
from instantvir_cli.video.damage import Damage, FFV1Check, avi_index_errors, matroska_crc_errors, mpegts_sync_errors
from instantvir_cli.video.endpoint import Source, network_failure
from instantvir_cli.video.info import (MOV, SWS_MATRIX, SWS_RANGE, VideoInfo, _reason, frame_colour, open_input, probe,
                                      probe_stream, video_stream)

ONE_BLOCK = {"ffv1", "vp9", "av1", "mjpeg", "prores", "utvideo", "huffyuv", "ffvhuff", "rawvideo", "dnxhd", "png"}
PROGRESSIVE_ONE_PACKET = {"h264", "hevc", "mpeg2video", "mpeg4"}

_END = object()
# exact rounding in swscale: about 0.5 instead of 1.3 levels mean error against the textbook equations
SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


class _Damaged(Exception):
    """A damaged frame without --tolerate-damage: stop, deliver the good frames, raise InputCorrupt.

    `drain`: the damage was found in a packet, so the decoder still holds the frames before it."""

    def __init__(self, message: str, drain: bool = False):
        super().__init__(message)
        self.drain = drain


class _FrameIndex:
    """The frame index of a pts, and the frames missing between packets.

    Packets arrive in decode order, so the index of a pts counts the pts seen that are smaller; a
    window of recent pts keeps memory flat on long videos. The intervals between neighbouring pts
    are counted too: in a constant-rate video (at least 75 % of at least 4 intervals within a tick
    of the commonest one, d) an interval over 1.5 d is frames missing from the file, which a
    demuxer that skipped a damaged cluster does not report. A variable-rate video's gaps can't be
    told from lost frames and are not judged; nor are those of MP4/MOV and AVI, whose indexes
    declare their gaps (frames dropped at capture), and are checked by count instead.
    """

    WINDOW = 256
    MAX_KINDS = 64        # distinct intervals kept: more is variable rate
    MAX_GAPS = 10_000

    def __init__(self):
        self._pts: list[int] = []
        self._before = 0      # packets that left the window (all earlier than it)
        self._prev: int | None = None
        self._steps: Counter = Counter()
        self._gaps: list[tuple[int, int, int]] = []      # (frame index after it, pts before, pts after)
        self.missing = 0
        self.first_gap: tuple[int, int, int] | None = None

    def add(self, p: int) -> bool:
        """Count pts `p`; False when it was seen already (two frames at one instant: damage)."""
        i = bisect.bisect_left(self._pts, p)
        if i < len(self._pts) and self._pts[i] == p:
            return False
        self._pts.insert(i, p)
        if len(self._pts) > 2 * self.WINDOW:
            self._scan(self._pts[: self.WINDOW], self._before)
            self._before += self.WINDOW
            del self._pts[: self.WINDOW]
        return True

    def of(self, p: int) -> int:
        return self._before + bisect.bisect_left(self._pts, p)

    def finish(self) -> None:
        """Judge the gaps once every packet is in (sets `missing` and `first_gap`)."""
        self._scan(self._pts, self._before)
        self._pts = []
        total = sum(self._steps.values())
        if total < 4 or len(self._steps) > self.MAX_KINDS:
            return
        d = self._steps.most_common(1)[0][0]
        if d <= 0 or sum(n for k, n in self._steps.items() if abs(k - d) <= 1) < 0.75 * total:
            return
        for at, before, after in self._gaps:
            if after - before > 1.5 * d:
                self.missing += max(1, round((after - before) / d) - 1)
                self.first_gap = self.first_gap or (at, before, after)

    def _scan(self, pts: list[int], first: int) -> None:
        for i, p in enumerate(pts):
            if self._prev is not None and p > self._prev:
                step = p - self._prev
                if len(self._steps) <= self.MAX_KINDS:
                    self._steps[step] += 1
                if len(self._gaps) < self.MAX_GAPS and (not self._gaps or step > min(self._steps)):
                    self._gaps.append((first + i, self._prev, p))
            self._prev = p


@dataclass
class FrameBlock:
    """Consecutive decoded frames.

    x: (1, 3, T, H, W) float32 RGB in [-1, 1]; pts: T presentation timestamps in `time_base`;
    index: position of the first frame in the video (0-based).
    """

    x: torch.Tensor
    pts: list[int]
    time_base: Fraction
    index: int

    @property
    def frames(self) -> int:
        return self.x.shape[2]


class RGBConverter:
    """Decoded frame -> three (H, W) planes R, G, B (uint8, or uint16 for > 8-bit input).

    Colour is handled explicitly: the frame's matrix and range tags are used; untagged frames get
    BT.709 (>= 720 lines) or BT.601 (below), limited range. RGB-coded frames (FFV1 bgr0, H.264
    RGB) are only repacked. Frames of another size are scaled to (width, height).
    """

    def __init__(self, width: int, height: int, deep: bool):
        self.width, self.height = width, height
        self.format, self.dtype = ("gbrp16le", np.dtype("<u2")) if deep else ("gbrp", np.dtype(np.uint8))
        self.scale = 2.0 / (65535.0 if deep else 255.0)
        self._sws = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        matrix, rng, _ = frame_colour(frame, frame.height)
        kw = {} if matrix == "rgb" else dict(src_colorspace=SWS_MATRIX[matrix], src_color_range=SWS_RANGE[rng],
                                             dst_color_range="JPEG")
        out = self._sws.reformat(frame, width=self.width, height=self.height, format=self.format,
                                 interpolation=SWS_FLAGS, **kw)
        g, b, r = (self._plane(p) for p in out.planes)
        return r, g, b

    def _plane(self, plane) -> np.ndarray:
        stride = plane.line_size // self.dtype.itemsize
        a = np.frombuffer(plane, dtype=self.dtype, count=self.height * stride)  # zero-copy view
        return a.reshape(self.height, stride)[:, : self.width]

    def fill(self, x: np.ndarray, frame: av.VideoFrame) -> None:
        """Write `frame` as raw integer values into x: (3, H, W) float32 (scale with `self.scale` later)."""
        for c, plane in enumerate(self(frame)):
            np.copyto(x[c], plane, casting="unsafe")


class VideoReader:
    """Iterate `FrameBlock`s of a video; a context manager (always close it).

    Args:
        path: input video: a file, or a `Source` (a file, stdin, a URL, a device).
        block_size: frames per block (the last block may be shorter).
        queue_depth: decoded blocks buffered ahead of the consumer.
        tolerate_damage: deliver what decodes from a damaged input (frames decoded with errors
            kept, frames that don't decode skipped) and account for it in `damage`, instead of
            raising InputCorrupt at the first damaged frame.
        realtime: drop a decoded block when the consumer is behind (the queue is full) instead of
            waiting for it; `dropped` counts the frames dropped.

    Raises (from the constructor): InputNotFound, InputUnreadable (also for frames over the size
    limit, or blocks that would not fit in memory).
    Raises (while iterating, after every good frame before it was delivered): InputCorrupt naming
    the frame, when a packet can't be demuxed or decoded, a frame decodes with errors or an FFV1
    slice CRC fails (see `video.damage`), or the file ends before the length its header declares.
    """

    def __init__(self, path: str | Path | Source, block_size: int = 16, queue_depth: int = 2,
                 tolerate_damage: bool = False, realtime: bool = False):
        if block_size < 1 or queue_depth < 1:
            raise ValueError("block_size and queue_depth must be >= 1")
        source = path if isinstance(path, Source) else Source.parse(Path(path))
        self.source = source
        self.live = not source.is_file   # read once, in order: no whole-file checks
        self.path = source.path
        self.block_size = block_size
        self.tolerate_damage = tolerate_damage
        self.realtime = realtime
        self.damage = Damage()    # what a damaged input lost (filled with tolerate_damage)
        self.frames_read = 0      # frames handed to the consumer
        self.dropped = 0          # frames dropped with realtime
        self.ended: str | None = None   # a stream that broke off: how (its frames up to there delivered)
        # the frames the file holds by a record beside it (the sidecar `vir degrade` wrote): set
        # before iterating, it makes a Matroska or MPEG-TS file's timestamp gaps frames dropped at
        # capture (degraded from a source whose index declared them), and checks the frames by count
        self.declared_frames: int | None = None
        if self.live:
            self._container = source.open()
            try:
                self.info: VideoInfo = probe_stream(self._container, source.name)
            except BaseException:
                self._container.close()
                raise
        else:
            self.info = probe(self.path)
        info = self.info
        # the blocks in the queue, the one being filled and the consumer's: (3, T, H, W) float32 each
        try:
            check_memory(4 * 3 * block_size * info.height * info.width * (queue_depth + 2),
                         f"reading {source.name} ({info.width}x{info.height}) in blocks of {block_size} frames",
                         "lower --block-frames")
        except BaseException:
            if self.live:
                self._container.close()
            raise
        if not self.live:
            self._container = open_input(self.path)
        self._video = video_stream(self._container, self.path)
        self._video.codec_context.options = {"max_pixels": str(max_pixels())}  # a header may lie
        self._video.thread_type = "AUTO"
        self.time_base: Fraction = self.info.time_base
        self._blocks: queue.Queue = queue.Queue(maxsize=queue_depth)
        self._packets: queue.Queue = queue.Queue()
        self._forward: set[int] = set()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ stream copy
    def side_streams(self) -> list[av.stream.Stream]:
        """Audio and subtitle streams of the input, in file order (candidates for copying)."""
        return [s for s in self._container.streams if s.type in ("audio", "subtitle")]

    def forward_packets(self, streams: list[av.stream.Stream]) -> None:
        """Queue the packets of `streams` for `take_packets`; call before reading the first block."""
        if self._thread is not None:
            raise RuntimeError("forward_packets must be called before the first block is read")
        self._forward = {s.index for s in streams}

    def take_packets(self) -> list[av.Packet]:
        """Packets of the forwarded streams demuxed so far (in demux order), removed from the queue."""
        out = []
        while True:
            try:
                out.append(self._packets.get_nowait())
            except queue.Empty:
                return out

    @property
    def exhausted(self) -> bool:
        """True once the demuxer reached the end (every forwarded packet has been queued)."""
        return self._done.is_set()

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> FrameBlock:
        if self._closed:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vir-decode-{self.path.name}", daemon=True)
            self._thread.start()
        item = self._blocks.get()
        if item is _END:
            self._blocks.put(_END)  # later calls stop too
            raise StopIteration
        if isinstance(item, BaseException):
            self._blocks.put(_END)
            raise item
        self.frames_read += item.frames
        return item

    def close(self) -> None:
        """Stop the decode thread and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            # a stream's worker may be blocked reading a silent source: give up on it after a while
            # (a daemon thread), leaving the container to it
            deadline = time.monotonic() + (2.0 if self.live else float("inf"))
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:  # unblock a worker waiting on a full queue
                    self._blocks.get(timeout=0.05)
                except queue.Empty:
                    pass
            if self._thread.is_alive():
                return
            self._thread.join()
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ worker
    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        item = _END
        try:
            self._decode_all()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer's thread
            item = e
            if isinstance(e, (av.error.FFmpegError, OSError)):
                item = InputCorrupt(f"input corrupt: {self.source.name}: decoding failed: {_reason(e)}")
        self._done.set()  # before the consumer can see the end: every forwarded packet is queued
        self._put(item)

    def _decode_all(self) -> None:
        video, tb, T = self._video, self.time_base, self.block_size
        info = self.info
        convert = RGBConverter(info.width, info.height, deep=info.bit_depth > 8)
        step = max(1, round((1 / info.fps) / tb)) if tb else 1
        ffv1 = FFV1Check(video.codec_context.extradata) if video.codec_context.name == "ffv1" else None
        tolerant, damage = self.tolerate_damage, self.damage
        # The worker computes with numpy only: torch ops here would start a second intra-op thread
        # pool next to the consumer's, and oversubscribed OpenMP pools slow both down badly.
        x: np.ndarray | None = None     # (3, T, H, W) float32 block being filled, raw integer values
        pts: list[int] = []
        emitted = 0        # frames put into blocks so far
        packets = 0        # video packets with data demuxed (to be shown)
        samples = 0        # ... and those an edit list discards
        avi_last = None    # pts of the last AVI chunk
        cues = set(info.cues)   # the keyframes a Matroska index lists, not yet seen
        last_pts = None
        index = _FrameIndex()
        read_end = None    # pts: end of the last video packet demuxed
        failure: str | None = None
        breakoff: str | None = None
        stream_end: BaseException | None = None   # the error a stream broke off with

        def flush_block(last: bool = False) -> bool:
            nonlocal x, pts, emitted
            if not pts:
                return True
            n = len(pts)
            if self.realtime and not last and self._blocks.full():   # behind a live source: drop it
                self.dropped += n
                emitted += n
                pts = []
                return True
            xb = x if n == T else np.ascontiguousarray(x[:, :n])
            xb *= np.float32(convert.scale)
            xb -= np.float32(1.0)
            block = FrameBlock(torch.from_numpy(xb).unsqueeze(0), pts, tb, emitted)  # (1, 3, n, H, W) in [-1, 1]
            emitted += n
            x, pts = None, []
            return self._put(block)

        def where(frame: int, p: int | None) -> str:
            return f"frame {frame}" + ("" if p is None else f" (t={float(p * tb):.2f}s)")

        def damaged(frame: int, p: int | None, reason: str, drain: bool = False) -> None:
            """A frame that decodes with errors: kept with tolerate_damage, else the end."""
            if not tolerant:
                raise _Damaged(f"{where(frame, p)} is damaged ({reason})", drain)
            damage.mark(frame, reason)

        times: list[int] = []    # pts of the video packets demuxed whose frames are not out yet (a heap)

        def take(frames) -> bool:
            nonlocal x, last_pts
            for f in frames:
                if f.is_corrupt:
                    damaged(emitted + len(pts), f.pts, "the decoder concealed errors in it")
                # a frame's time: the smallest packet time not yet given out. The decoder returns frames
                # in display order, the same as f.pts where its headers are right; where a stream
                # misdeclares its reordering (box.mp4 of OpenCV's samples), f.pts goes backwards, but
                # the sorted packet times still give each frame its own
                p = heapq.heappop(times) if times else f.pts
                if p is None:
                    p = last_pts + step if last_pts is not None else 0
                if last_pts is not None and p <= last_pts:
                    p = last_pts + 1  # keep pts strictly increasing for the encoder
                if x is None:
                    x = np.empty((3, T, info.height, info.width), dtype=np.float32)
                convert.fill(x[:, len(pts)], f)
                pts.append(p)
                last_pts = p
                if len(pts) == T and not flush_block():
                    return False
            return True

        streams = [video] + [s for s in self._container.streams if s.index in self._forward]
        demux = self._container.demux(*streams)
        try:
            while not self._stop.is_set():
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                except av.error.FFmpegError as e:
                    breakoff = f"the file breaks off ({_reason(e)})"
                    if self.live:
                        stream_end = e
                    try:
                        frames = video.decode(None)  # drain what the decoder still holds
                    except av.error.FFmpegError:
                        frames = []
                    take(frames)
                    break
                # (the flush packet PyAV yields at the end has stream_index 0 whatever its stream: only
                # `packet.stream` tells the video's, and without it the decoder's last frames are lost)
                if packet.stream.index != video.index:
                    if packet.is_corrupt and packet.pts is not None:   # e.g. MPEG-TS continuity errors
                        damaged(emitted + len(pts), None, f"its {packet.stream.type} packet at "
                                f"t={float(packet.pts * packet.time_base):.2f}s is marked corrupt by the demuxer")
                    if packet.dts is not None:
                        self._packets.put(packet)
                    continue
                if packet.size and packet.is_corrupt:       # the demuxer knows the data is damaged
                    damaged(index.of(packet.pts) if packet.pts is not None else emitted + len(pts), packet.pts,
                            "the demuxer marks its packet corrupt", drain=True)
                if packet.size and info.container == "avi" and packet.pts is not None:
                    if avi_last is not None and packet.pts <= avi_last:   # AVI chunks are in display order
                        damaged(index.of(packet.pts), packet.pts, "its chunk is out of order (a damaged index)",
                                drain=True)
                    avi_last = packet.pts
                if packet.size and cues and packet.pts in cues:
                    cues.discard(packet.pts)
                if packet.size:
                    samples += 1
                    packets += not packet.is_discard    # (an edit list's discarded samples give no frame)
                    if packet.pts is not None:
                        if not packet.is_discard:
                            heapq.heappush(times, packet.pts)
                        if not index.add(packet.pts):
                            damaged(index.of(packet.pts), packet.pts, "a second packet has its timestamp", drain=True)
                        end = packet.pts + (packet.duration or step)
                        read_end = end if read_end is None else max(read_end, end)
                    if ffv1 is not None and (hit := ffv1.damage(bytes(packet), packet.pts)):
                        at, why = hit
                        damaged(index.of(at) if at is not None else emitted + len(pts), at, why, drain=True)
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    frame = index.of(packet.pts) if packet.pts is not None else emitted + len(pts)
                    if not tolerant:
                        raise _Damaged(f"{where(frame, packet.pts)} does not decode ({_reason(e)})", True) from None
                    damage.lose(frame, f"it does not decode: {_reason(e)}")
                    if packet.pts in times:              # no frame will take its time
                        times.remove(packet.pts)
                        heapq.heapify(times)
                    continue
                if not take(frames):
                    return
        except _Damaged as e:
            failure = str(e)
            if e.drain:     # the frames before the damaged packet, still in the decoder's pipeline
                try:
                    take(video.decode(None))
                except (_Damaged, av.error.FFmpegError):
                    pass
        if self._stop.is_set():
            return
        n = emitted + len(pts)
        ended = stream_end
        if ended is not None:       # a stream that stops is its end: a lost connection is reported
            if not flush_block(last=True):
                return
            if network_failure(ended) or self.source.kind == "url":   # a URL's transfer cut short
                raise NetworkError(f"{self.source.name} stopped after {n} frames: {_reason(ended)}")
            self.ended = f"{self.source.name} broke off after {n} frames ({_reason(ended)})"
            return
        if failure is None:
            failure = self._check_length(packets, read_end, breakoff, index, n, samples, cues)
        if failure is None and n == 0:
            failure = "no frame could be decoded"
        if not flush_block(last=True):
            return
        if failure is not None:
            hint = "" if tolerant else "; --tolerate-damage restores what decodes"
            raise InputCorrupt(f"input corrupt: {self.source.name}: read {n} frames{self._where(last_pts)}, "
                               f"then {failure}{hint}")

    def _check_length(self, packets: int, read_end: int | None, breakoff: str | None,
                      index: _FrameIndex, decoded: int, samples: int, cues: set[int]) -> str | None:
        """Whether frames are missing: a gap in a constant-rate video, or the file ends before its
        header's length. The reason (None: none are, or with tolerate_damage, where the loss is
        counted in `damage` instead)."""
        info, tb = self.info, self.time_base
        missing, reason = 0, None
        index.finish()
        declared = self.declared_frames
        if index.missing and info.container in ("matroska,webm", "mpegts") and declared is None:   # stream's own times
            at, before, after = index.first_gap
            gap = (f"{index.missing} frame{'s' if index.missing != 1 else ''} missing from the file, the first "
                   f"before frame {at} (no frame between t={float(before * tb):.2f}s and t={float(after * tb):.2f}s)")
            if not self.tolerate_damage:
                return gap
            self.damage.lost += index.missing
            self.damage.notes.append(gap)
        if info.container == "matroska,webm" and not self.live and (bad := matroska_crc_errors(self.path)):
            offset, what, ms = bad[0]
            at = f" at t={ms / 1000:.2f}s" if ms is not None else ""
            crc = (f"{len(bad)} Matroska element{'s are' if len(bad) != 1 else ' is'} damaged (CRC-32 or ID), the "
                   f"first its {what}{at} (byte {offset})")
            if not self.tolerate_damage:
                return crc
            self.damage.notes.append(crc)
        if info.container == "mpegts" and not self.live and (lost := mpegts_sync_errors(self.path)):
            ts = f"the MPEG-TS file is damaged: {lost[2]}" + (f" ({lost[1]} packets)" if lost[1] > 1 else "")
            if not self.tolerate_damage:
                return ts
            self.damage.notes.append(ts)
        if info.container == "avi" and not self.live and (hole := avi_index_errors(self.path)):
            avi = (f"frame {hole[0]}'s chunk is missing: the AVI index lists it at byte {hole[1]}, where the "
                   f"file holds other data")
            if not self.tolerate_damage:
                return avi
            self.damage.notes.append(avi)
        if cues and breakoff is None:
            first = min(cues)
            lost = (f"{len(cues)} keyframe{'s' if len(cues) != 1 else ''} its index lists "
                    f"{'are' if len(cues) != 1 else 'is'} not in the file, the first at t={float(first * tb):.2f}s")
            if not self.tolerate_damage:
                return lost
            self.damage.notes.append(lost)
        # one chunk a frame: MP4/MOV and AVI (the count in the header), and Matroska and MPEG-TS of
        # codecs that put each frame in one packet (not VP8, whose hidden frames have packets of
        # their own, nor field-coded H.264, HEVC and MPEG-2, where a packet may hold one field)
        one_packet = info.codec in ONE_BLOCK or (info.codec in PROGRESSIVE_ONE_PACKET and not info.interlaced)
        indexed = info.container in (MOV, "avi") or (info.container in ("matroska,webm", "mpegts") and one_packet)
        if info.container == MOV and info.frames_exact and info.frames and samples < info.frames:
            missing = info.frames - samples
            reason = f"the file is truncated: {samples} of {info.frames} frames present"
        if (info.container == "avi" and info.frames_exact and info.frames and read_end is not None and info.fps
                and (short := info.frames - round(float((read_end - info.start_pts) * tb * info.fps))) >= 1):
            # an AVI header's dwLength counts the frames, dropped ones (empty chunks) included, and a
            # chunk's pts is its frame number: frames missing at the end leave the last pts short of it
            # (FFmpeg takes the stream's duration from the chunks it finds when the index is lost)
            missing = short
            reason = f"the file is truncated: it ends at frame {info.frames - short} of the {info.frames} its header declares"
        if indexed and info.frames_exact and info.frames and samples > info.frames:
            reason = f"it holds {samples} frames, more than the {info.frames} its header declares"
        undecoded = packets - decoded - self.damage.lost
        if indexed and breakoff is None and undecoded > 0 and reason is None:
            # every MP4/MOV sample and AVI chunk is one frame: a decoder that returns fewer dropped some
            # (a frame-threaded decoder drops a frame it can't decode without an error)
            reason = f"{undecoded} of its {packets} frames did not decode (the decoder dropped them)"
            missing = undecoded
        if info.declared_end is not None and read_end is not None and info.fps:
            ends = float(read_end * tb)
            if ends > info.declared_end + 3 / float(info.fps) + 0.25:
                reason = (f"its frames run to t={ends:.2f}s, past the {info.declared_end:.2f}s its header "
                          f"declares (damaged timestamps)")
            short = (info.declared_end - ends) * float(info.fps)
            if short > 0.5 and round(short) >= missing:
                missing = max(1, round(short))
                reason = (f"the file ends at {ends:.2f}s, before the {info.declared_end:.2f}s its header "
                          f"declares (about {missing} frame{'s' if missing != 1 else ''} missing)")
        if declared is not None and reason is None and decoded + self.damage.lost < declared:
            missing = declared - decoded - self.damage.lost
            reason = f"it holds {decoded} of the {declared} frames its sidecar records"
        if breakoff is not None and reason is None:
            reason = breakoff
        if reason is None:
            return None
        if not self.tolerate_damage:
            return reason
        self.damage.lost += missing
        self.damage.notes.append(reason)
        return None

    def _where(self, last_pts: int | None) -> str:
        return "" if last_pts is None else f" (up to t={float(last_pts * self.time_base):.2f}s)"
