"""How the reader tells a damaged input from a good one, and its account of what was lost.

Signs of damage, each tied to a frame:

- the file ends before the length its header declares (`info.VideoInfo.declared_end`), or an
  MP4/MOV index lists more samples than the file holds;
- a packet that can't be demuxed or decoded;
- a frame the decoder returns with concealment (`frame.is_corrupt`: FFmpeg's decode_error_flags,
  e.g. H.264 macroblocks it could not decode);
- an FFV1 slice whose CRC does not match (`FFV1Check`; `vir degrade` writes FFV1 with slice CRCs);
- a Matroska element whose CRC-32 does not match (`matroska_crc_errors`: FFmpeg's muxer gives
  every top-level element, the track headers and every cluster, one; FFmpeg's demuxer ignores them);
- an MPEG-TS file whose packets lose their sync byte or that ends inside a packet
  (`mpegts_sync_errors`: FFmpeg's demuxer resynchronizes without a word);
- an AVI whose index (idx1) lists a video chunk where the file holds other data
  (`avi_index_errors`: FFmpeg skips the chunk, which then reads like a frame dropped at capture).

FFmpeg's own log lines ("slice CRC mismatch", "error while decoding MB") are not used: PyAV's log
callback takes the GIL in FFmpeg's decoder threads, and PyAV frees a codec context with the GIL
held while it waits for those threads, so a line logged during that wait deadlocks the process
(reproduced with frame-threaded H.264). The FFV1 check reads the slice CRCs itself instead.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import numpy as np

# bit-reversal of each byte: FFmpeg's AV_CRC_32_IEEE is the MSB-first CRC-32 (poly 0x04C11DB7,
# init 0, no final xor); over bit-reversed bytes it is zlib's reflected CRC-32, bit-reversed
_REVERSE = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)
FFV1_TRAILER = 8        # per slice: 3 bytes of slice size, 1 byte of error status, 4 bytes of CRC


def crc_is_zero(data: np.ndarray) -> bool:
    """Whether the MSB-first CRC-32 of `data` (uint8, its stored CRC included) is 0, i.e. intact."""
    return zlib.crc32(_REVERSE[data].tobytes(), 0xFFFFFFFF) == 0xFFFFFFFF


def ffv1_slices(data: np.ndarray, trailer: int = FFV1_TRAILER) -> list[tuple[int, int]] | None:
    """(start, end) byte ranges of the slices of an FFV1 version 3 packet, read from its end
    (each slice ends with its size), or None when the sizes do not chain back to byte 0."""
    out, p = [], len(data)
    while p > 0:
        if p < trailer:
            return None
        v = (int(data[p - trailer]) << 16 | int(data[p - trailer + 1]) << 8 | int(data[p - trailer + 2])) + trailer
        if v <= trailer or v > p:
            return None
        out.append((p - v, p))
        p -= v
    return out


class FFV1Check:
    """Slice CRCs of an FFV1 stream: `damage(packet_bytes, pts)` -> None, or (pts, reason) of a
    damaged packet (that one, or an earlier one the check held back).

    FFV1 version 3 with error correction ("slicecrc", what `vir degrade` writes) ends every slice
    with a CRC-32 and its global header with one too. A stream has slice CRCs when one of its
    packets chains back to its start with 8-byte slice trailers and every CRC of it matches; until
    one does, packets that don't are held back, and once one does they are damage (a damaged
    first packet must not turn the check off). A stream without slice CRCs (FFV1 version 0/1, or
    slicecrc=0) is not checked.
    """

    HOLD = 64         # packets held back while undecided: after that many, the stream has no CRCs

    def __init__(self, extradata: bytes | None):
        self.header_ok = True
        if extradata:
            self.header_ok = crc_is_zero(np.frombuffer(extradata, dtype=np.uint8))
        self.enabled: bool | None = None if extradata else False   # None: not decided yet
        self._held: list[tuple[int | None, str]] = []

    @staticmethod
    def _reason(data: np.ndarray) -> tuple[str | None, bool]:
        """(why the packet is damaged or None, whether its slices chain with 8-byte trailers)."""
        slices = ffv1_slices(data)
        if slices is None:
            return "the FFV1 slice sizes are broken", False
        bad = sum(not crc_is_zero(data[a:b]) for a, b in slices)
        return (f"{bad} of {len(slices)} FFV1 slice CRCs do not match" if bad else None), True

    def damage(self, packet: bytes, pts: int | None = None) -> tuple[int | None, str] | None:
        if self.enabled is False or not packet:
            return None
        why, chained = self._reason(np.frombuffer(packet, dtype=np.uint8))
        if self.enabled is None:
            if why is not None:
                self._held.append((pts, why))
                if len(self._held) >= self.HOLD:
                    self.enabled, self._held = False, []
                return None
            self.enabled = True
            if self._held:
                first, self._held = self._held[0], []
                return first
        if not self.header_ok:
            return pts, "the FFV1 header's CRC does not match"
        return None if why is None else (pts, why)


_SEGMENT, _CRC32, _CLUSTER, _TIMESTAMP = 0x18538067, 0xBF, 0x1F43B675, 0xE7
_CRC_CHUNK = 1 << 20                 # bytes an element's CRC-32 is computed over at a time (memory stays flat)
_NAMES = {0x114D9B74: "seek head", 0x1549A966: "segment info", 0x1654AE6B: "track headers", _CLUSTER: "cluster",
          0x1C53BB6B: "index (Cues)", 0x1254C367: "tags", 0x1043A770: "chapters", 0x1941A469: "attachments"}


def _vint(f, keep_marker: bool) -> tuple[int | None, int]:
    """An EBML variable-length integer from file `f`: (value or None when all ones, bytes read)."""
    first = f.read(1)
    if not first:
        raise EOFError
    b = first[0]
    n = 1
    while n <= 8 and not b & (0x80 >> (n - 1)):
        n += 1
    if n > 8:
        raise ValueError("bad EBML length")
    rest = f.read(n - 1)
    if len(rest) != n - 1:
        raise EOFError
    value = b if keep_marker else b & (0xFF >> n)
    for c in rest:
        value = (value << 8) | c
    if not keep_marker and value == (1 << (7 * n)) - 1:
        return None, n
    return value, n


def matroska_crc_errors(path, limit: int = 8):
    """Matroska top-level elements whose CRC-32 does not match, or whose ID no segment child has:
    [(byte offset, what, cluster time in ms or None)], at most `limit`. Elements without a CRC-32,
    and files whose layout can't be followed (unknown sizes, a file cut short: the reader's other
    checks see those), give none."""
    out = []
    try:
        with open(path, "rb") as f:
            file_end = os.fstat(f.fileno()).st_size
            eid, _ = _vint(f, True)
            size, _ = _vint(f, False)
            if eid != 0x1A45DFA3 or size is None:
                return out
            f.seek(size, 1)
            eid, _ = _vint(f, True)
            seg_size, _ = _vint(f, False)
            if eid != _SEGMENT:
                return out
            seg_end = file_end if seg_size is None else min(file_end, f.tell() + seg_size)
            while f.tell() < seg_end:
                start = f.tell()
                eid, _ = _vint(f, True)
                size, _ = _vint(f, False)
                if size is None or size > file_end - f.tell():      # unknown size, or past the file's end
                    return out
                body_end = f.tell() + size
                if eid not in _NAMES and eid not in (0xEC, _CRC32):      # not a child a segment can have
                    out.append((start, f"element of unknown kind 0x{eid:X} (a damaged ID: FFmpeg skips it)", None))
                    f.seek(body_end)
                    continue
                head = f.read(min(size, 6))
                if len(head) == 6 and head[0] == _CRC32 and head[1] == 0x84:
                    first = f.read(min(body_end - f.tell(), _CRC_CHUNK))
                    crc = zlib.crc32(first)
                    while f.tell() < body_end:
                        chunk = f.read(min(body_end - f.tell(), _CRC_CHUNK))
                        if not chunk:
                            return out
                        crc = zlib.crc32(chunk, crc)
                    if crc != int.from_bytes(head[2:6], "little"):
                        out.append((start, _NAMES.get(eid, f"element 0x{eid:X}"),
                                    _cluster_time(first) if eid == _CLUSTER else None))
                        if len(out) >= limit:
                            return out
                f.seek(body_end)
    except (EOFError, ValueError, OSError):
        pass
    return out


TS_PACKET_SIZES = (188, 192, 204)      # plain, M2TS (4-byte timestamp first), with Reed-Solomon parity
TS_SYNC = 0x47


def mpegts_sync_errors(path) -> tuple[int, int, str] | None:
    """Where an MPEG-TS file stops being a whole number of packets: (byte offset, packets
    damaged, what), or None when every packet starts with the sync byte and the file ends on a
    packet's boundary. A file whose packet size can't be found (not TS) gives None."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return None                                               # a pipe or URL: no file to walk
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None
    n = data.size
    for size in TS_PACKET_SIZES:
        sync = 4 if size == 192 else 0
        starts = data[sync: sync + size * 8: size]
        if n >= size * 2 and starts.size >= 2 and (starts == TS_SYNC).all():
            break
    else:
        return None
    marks = data[sync::size]                                          # one byte a packet, a strided view
    bad = np.flatnonzero(marks != TS_SYNC)
    whole = (n // size) * size
    if bad.size and bad[0] * size < whole:
        first = int(bad[0]) * size + sync
        return first, int(bad.size), f"its {size}-byte packets lose their sync byte from byte {first}"
    if n != whole:
        return whole, 1, f"it ends inside a packet ({n - whole} of {size} bytes at byte {whole})"
    return None


def _riff_chunks(f, start: int, end: int):
    """(id, body offset, body size) of the RIFF chunks in file `f` between `start` and `end`."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        size = int.from_bytes(head[4:], "little")
        yield head[:4], pos + 8, size
        pos += 8 + size + (size & 1)


def avi_index_errors(path) -> tuple[int, int] | None:
    """(frame, byte offset) of the first video chunk an AVI's idx1 lists that the file does not hold
    there (another chunk ID or size: a damaged chunk, which FFmpeg skips), or None. Files without an
    idx1 (OpenDML's indexes only) and layouts that can't be followed give None."""
    try:
        if not os.path.isfile(path):
            return None
        n = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"AVI ":
                return None
            movi = index = None
            for cid, body, size in _riff_chunks(f, 12, n):
                if cid == b"LIST" and movi is None:
                    f.seek(body)
                    if f.read(4) == b"movi":
                        movi = body                                   # offsets count from its 'movi'
                elif cid == b"idx1":
                    index = (body, min(size, n - body))
            if movi is None or index is None:
                return None
            f.seek(index[0])
            entries = np.frombuffer(f.read(index[1] - index[1] % 16), dtype="<u4").reshape(-1, 4)
            ids = entries[:, 0].astype("<u4").tobytes()
            video = [i for i in range(len(entries)) if ids[4 * i + 2: 4 * i + 4] in (b"dc", b"db")]
            if not video:
                return None
            first = int(entries[video[0], 2])
            base = 0 if first >= movi else movi                      # absolute offsets, or from 'movi'
            for frame, i in enumerate(video):
                ckid, _, offset, length = (int(v) for v in entries[i])
                if length == 0:                                       # a dropped frame: nothing to find
                    continue
                f.seek(base + offset)
                found = f.read(8)
                if (len(found) < 8 or int.from_bytes(found[:4], "little") != ckid
                        or int.from_bytes(found[4:], "little") != length):
                    return frame, base + offset
    except (OSError, ValueError):
        return None
    return None


def _cluster_time(body: bytes) -> int | None:
    """The Timestamp (ms at the default scale) a cluster's body starts with, if it does."""
    if len(body) < 3 or body[0] != _TIMESTAMP:
        return None
    n = body[1] & 0x7F if body[1] & 0x80 else 0
    return int.from_bytes(body[2:2 + n], "big") if 0 < n <= 8 else None


@dataclass
class Damage:
    """What a damaged input lost, as the reader saw it (`VideoReader.damage`).

    damaged: (frame index, reason) of frames that decoded with errors (kept with --tolerate-damage);
    lost: frames that did not decode or are missing, `lost_frames` the indexes known of them;
    notes: a phrase per event (where the file ends).
    """

    damaged: list[tuple[int, str]] = field(default_factory=list)
    lost: int = 0
    lost_frames: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.damaged or self.lost or self.notes)

    def mark(self, frame: int, reason: str) -> None:
        """Frame `frame` decoded with errors (kept)."""
        if frame not in {f for f, _ in self.damaged[-4:]}:
            self.damaged.append((frame, reason))

    def lose(self, frame: int, reason: str) -> None:
        """Frame `frame` did not decode (skipped)."""
        self.lost += 1
        self.lost_frames.append((frame, reason))

    def summary(self, name: str) -> str:
        """One line: how much was lost and where (the warning after --tolerate-damage)."""
        parts = []
        if self.damaged:
            idx = [f for f, _ in self.damaged]
            s = "s" if len(idx) != 1 else ""
            where = ", ".join(map(str, idx[:8])) + (f" and {len(idx) - 8} more" if len(idx) > 8 else "")
            parts.append(f"{len(idx)} frame{s} damaged (frame{s} {where}: {self.damaged[0][1]})")
        if self.lost:
            at = ""
            if self.lost_frames:
                idx = [f for f, _ in self.lost_frames]
                at = (" (frame" + ("s " if len(idx) > 1 else " ") + ", ".join(map(str, idx[:8]))
                      + (f" and {len(idx) - 8} more" if len(idx) > 8 else "") + f": {self.lost_frames[0][1]})")
            parts.append(f"{self.lost} frame{'s' if self.lost != 1 else ''} lost{at}")
        parts += self.notes
        return f"input damaged: {name}: " + "; ".join(parts)


__all__ = ["Damage", "FFV1Check", "crc_is_zero", "ffv1_slices", "avi_index_errors", "matroska_crc_errors", "mpegts_sync_errors"]
