"""`probe(path) -> VideoInfo`, colour conventions, and opening inputs with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from instantvir_cli.errors import InputUnreadable
from instantvir_cli.limits import check_frame_size, max_pixels

# AVColorSpace -> our matrix name. Unknown/unspecified -> None (then the size rule applies).
MATRIX_NAMES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
# our matrix name -> swscale colorspace, AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic tags
SWS_MATRIX = {"bt709": "ITU709", "bt601": "ITU601", "smpte240m": "SMPTE240M", "fcc": "FCC", "bt2020": "BT2020"}
MATRIX_TAG = {"bt709": 1, "bt601": 6, "smpte240m": 7, "fcc": 4, "bt2020": 9}
PRIMARIES_TAG = {"bt709": 1, "bt601": 6, "smpte240m": 7, "fcc": 4, "bt2020": 9}
TRC_TAG = {"bt709": 1, "bt601": 6, "smpte240m": 7, "fcc": 4, "bt2020": 14}
RANGE_NAMES = {1: "limited", 2: "full"}
RANGE_TAG = {"limited": 1, "full": 2}
SWS_RANGE = {"limited": "MPEG", "full": "JPEG"}
PRIMARIES_NAMES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
                   10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRC_NAMES = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 13: "iec61966-2-1",
             14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}


def default_matrix(height: int) -> str:
    """The matrix players assume for untagged video: BT.709 from 720 lines up, BT.601 below."""
    return "bt709" if height >= 720 else "bt601"


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video file (sizes in stored pixels, before display rotation)."""

    path: Path
    container: str                # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
    width: int
    height: int
    frames: int | None            # frame count: exact when `frames_exact`, else duration * fps, else None
    frames_exact: bool
    fps: Fraction                 # average frame rate (the nominal rate for VFR)
    vfr: bool                     # timestamps are not evenly spaced
    time_base: Fraction           # of the video stream's pts
    start_pts: int | None         # pts of the first frame, in time_base
    duration: float | None        # seconds
    codec: str                    # decoder name, e.g. "h264"
    pix_fmt: str                  # e.g. "yuv420p", "yuv420p10le"
    bit_depth: int                # bits per component (8, 10, 12, 16)
    colorspace: str               # matrix used to convert to RGB: bt709 | bt601 | bt2020 | smpte240m | fcc | rgb
    color_range: str              # limited | full
    colour_tagged: bool           # False when the file left matrix or range unspecified and defaults were used
    color_primaries: str | None   # tag as found (None: unspecified)
    color_trc: str | None         # transfer characteristic tag as found (None: unspecified)
    rotation: int                 # display rotation, degrees counter-clockwise, from the display matrix
    sample_aspect_ratio: Fraction | None
    has_audio: bool
    has_subtitles: bool
    # where the header says the video stream ends, in seconds on its pts clock: MP4/MOV and AVI
    # headers, Matroska's DURATION tag; None where the header declares no length (MPEG-TS/PS, raw
    # streams, a Matroska file without the tag), whose length FFmpeg can only estimate
    declared_end: float | None = None
    # Matroska: the pts of the keyframes its index (Cues) lists, a frame that must be in the file
    cues: tuple[int, ...] = ()
    interlaced: bool = False      # the first frame is interlaced (field-coded streams may put a field in a packet)

    @property
    def frame_duration(self) -> Fraction:
        """Nominal seconds per frame (1 / fps)."""
        return 1 / self.fps


def check_input_file(path: Path) -> Path:
    """Raise InputNotFound / InputUnreadable for a missing path, a folder or an empty file."""
    from instantvir_cli.paths import check_input_path

    return check_input_path(Path(path))


# containers whose header records the length of the file (MPEG-TS/PS and raw streams don't)
MOV = "mov,mp4,m4a,3gp,3g2,mj2"   # FFmpeg's name of the MP4/MOV demuxer
DECLARING = (MOV, "matroska,webm", "avi")


def open_input(path: Path) -> av.container.InputContainer:
    """av.open with our errors: InputNotFound / InputUnreadable, never a raw PyAV exception.

    Decoders refuse frames over `limits.max_pixels()` (FFmpeg's max_pixels), so a header that
    promises a huge frame costs no memory while the file is opened.
    """
    check_input_file(path)
    try:
        return av.open(str(path), mode="r", options={"max_pixels": str(max_pixels())})
    except PermissionError:
        raise InputUnreadable(f"input is not readable (permissions): {path}") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise InputUnreadable(f"not a readable video file: {path} ({_reason(e)})") from None


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream that is not a cover picture, or InputUnreadable."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise InputUnreadable(f"no video stream in {path} (streams: {', '.join(kinds)})")


def bit_depth(pix_fmt: str) -> int:
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8


def frame_colour(frame: av.VideoFrame, height: int) -> tuple[str, str, bool]:
    """(matrix, range, tagged) to convert `frame` to RGB; untagged -> BT.709 >= 720 lines else BT.601, limited."""
    fmt = frame.format
    if fmt.is_rgb:
        return "rgb", "full", True
    matrix = MATRIX_NAMES.get(int(frame.colorspace))
    rng = RANGE_NAMES.get(int(frame.color_range))
    if rng is None and fmt.name.startswith("yuvj"):
        rng = "full"
    tagged = matrix is not None and rng is not None
    return matrix or default_matrix(height), rng or "limited", tagged


def _fraction(value, fallback: Fraction | None = None) -> Fraction | None:
    if value is None or not value or value.denominator == 0:
        return fallback
    return Fraction(value.numerator, value.denominator)


def _is_vfr(pts: list[int]) -> bool:
    """Timestamps whose spacing varies by more than one tick (rounding) are variable frame rate."""
    if len(pts) < 3:
        return False
    d = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    d = d[d > 0]
    if d.size < 2:
        return False
    return int(d.max() - d.min()) > max(1, int(0.002 * float(np.median(d))))


def probe(path: str | Path, scan_packets: int = 240) -> VideoInfo:
    """Describe the video in `path`; reads the header, the first `scan_packets` packets, one frame.

    The frame count is exact when the container has one (MP4, MOV) or the video has fewer than
    `scan_packets` frames; otherwise it is estimated from duration * fps (MKV, WebM, TS).

    Raises:
        InputNotFound: missing path or a folder.
        InputUnreadable: empty, not a media file, no video stream, no decodable frame.
    """
    path = Path(path)
    with open_input(path) as container:
        stream = video_stream(container, path)
        cc = stream.codec_context
        if cc is None:
            raise InputUnreadable(f"no decoder for the video stream of {path} (an unknown codec)")
        check_frame_size(cc.width or 1, cc.height or 1, f"input {path.name}")
        cc.options = {"max_pixels": str(max_pixels())}
        stream.thread_type = "AUTO"
        tb = _fraction(stream.time_base, Fraction(1, 90000))
        first, pts, counted, complete = None, [], 0, False
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    pts.append(packet.pts)
                counted += packet.size > 0
                if first is None:
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError:
                        frames = []
                    first = frames[0] if frames else None
                if first is not None and len(pts) >= scan_packets:
                    break
            else:
                complete = True  # a short video: every packet was counted
        except av.error.FFmpegError as e:
            if first is None:
                raise InputUnreadable(f"no decodable video frame in {path} ({_reason(e)})") from None
        if first is None:
            raise InputUnreadable(f"no decodable video frame in {path}")
        width, height = first.width, first.height
        check_frame_size(width, height, f"input {path.name}")
        fps = (_fraction(stream.average_rate) or _fraction(stream.guessed_rate)
               or _fraction(stream.base_rate) or Fraction(25))
        duration = None
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        end = declared_end(container, stream, tb)
        cues = keyframe_cues(container, stream)
        frames, exact = None, False
        if stream.frames and stream.frames > 0:
            frames, exact = int(stream.frames), True
        elif complete:
            frames, exact = counted, True
            if end is not None and pts and (end - float(max(pts) * tb)) * fps > 1.5:
                # fewer packets than the header's length holds: a truncated file, not an exact count
                frames, exact = max(counted, round((end - float(min(pts) * tb)) * fps)), False
        elif duration:
            frames = max(1, round(duration * fps))
        matrix, rng, tagged = frame_colour(first, height)
        pix_fmt = first.format.name
        return VideoInfo(
            path=path,
            container=container.format.name,
            width=width,
            height=height,
            frames=frames,
            frames_exact=exact,
            fps=fps,
            vfr=_is_vfr(pts),
            time_base=tb,
            start_pts=first.pts,
            duration=duration,
            codec=cc.name,
            pix_fmt=pix_fmt,
            bit_depth=bit_depth(pix_fmt),
            colorspace=matrix,
            color_range=rng,
            colour_tagged=tagged,
            color_primaries=PRIMARIES_NAMES.get(int(first.color_primaries)),
            color_trc=TRC_NAMES.get(int(first.color_trc)),
            rotation=int(first.rotation or 0),
            sample_aspect_ratio=_fraction(stream.sample_aspect_ratio),
            has_audio=len(container.streams.audio) > 0,
            has_subtitles=len(container.streams.subtitles) > 0,
            declared_end=end,
            cues=cues,
            interlaced=bool(getattr(first, "interlaced_frame", False)),
        )


def probe_stream(container: av.container.InputContainer, name: str) -> VideoInfo:
    """Describe the video of a stream opened once (stdin, a URL, a device), from what FFmpeg's own
    probe found when it opened it: nothing is read ahead, so no packet is lost. The frame count is
    unknown (None) and nothing is declared about the length; rotation is taken as 0.

    Raises InputUnreadable: no video stream, no decoder, no frame size or pixel format.
    """
    path = Path(name)
    stream = video_stream(container, path)
    cc = stream.codec_context
    if cc is None:
        raise InputUnreadable(f"no decoder for the video stream of {name} (an unknown codec)")
    if not cc.width or not cc.height or cc.format is None:
        raise InputUnreadable(f"no decodable video frame in {name} (FFmpeg's probe found no frame size)")
    width, height = cc.width, cc.height
    check_frame_size(width, height, f"input {name}")
    pix_fmt = cc.format.name
    fps = (_fraction(stream.average_rate) or _fraction(stream.guessed_rate) or _fraction(stream.base_rate)
           or Fraction(25))
    if pix_fmt.startswith(("rgb", "bgr", "gbr")):
        matrix, rng, tagged = "rgb", "full", True
    else:
        matrix = MATRIX_NAMES.get(int(cc.colorspace or 2))
        rng = RANGE_NAMES.get(int(cc.color_range or 0)) or ("full" if pix_fmt.startswith("yuvj") else None)
        tagged = matrix is not None and rng is not None
        matrix, rng = matrix or default_matrix(height), rng or "limited"
    return VideoInfo(
        path=path, container=container.format.name, width=width, height=height, frames=None, frames_exact=False,
        fps=fps, vfr=False, time_base=_fraction(stream.time_base, Fraction(1, 90000)), start_pts=stream.start_time,
        duration=None, codec=cc.name, pix_fmt=pix_fmt, bit_depth=bit_depth(pix_fmt), colorspace=matrix,
        color_range=rng, colour_tagged=tagged, color_primaries=PRIMARIES_NAMES.get(int(cc.color_primaries or 2)),
        color_trc=TRC_NAMES.get(int(cc.color_trc or 2)), rotation=0,
        sample_aspect_ratio=_fraction(stream.sample_aspect_ratio),
        has_audio=len(container.streams.audio) > 0, has_subtitles=len(container.streams.subtitles) > 0,
    )


def keyframe_cues(container, stream, limit: int = 100_000) -> tuple[int, ...]:
    """The pts of the keyframes a Matroska file's index (Cues) lists; FFmpeg reads the index on
    the first seek. () for other containers, or where there is none."""
    if container.format.name != "matroska,webm":
        return ()
    try:
        container.seek(0, stream=stream)
        entries = stream.index_entries
        return tuple(sorted({int(e.timestamp) for e in list(entries)[:limit]}))
    except (av.error.FFmpegError, OSError, ValueError, OverflowError):
        return ()


def _tag_seconds(text: str | None) -> float | None:
    """Matroska's DURATION tag "HH:MM:SS.nnnnnnnnn" in seconds, or None."""
    try:
        h, m, sec = str(text).split(":")
        value = int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, TypeError):
        return None
    return value if value > 0 else None


def declared_end(container, stream, tb: Fraction) -> float | None:
    """Where the header says the video stream ends (seconds), or None when it says nothing.

    Only the stream's own length counts: a file-level duration is the latest of all streams, and
    FFmpeg estimates one (from the bit rate) when the header has none.
    """
    if container.format.name not in DECLARING:
        return None
    start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    if container.format.name != "matroska,webm" and stream.duration and stream.duration > 0:
        return start + float(stream.duration * tb)
    # Matroska's DURATION tag is where the track ends on the file's clock (muxers shift every
    # timestamp by the same offset, e.g. an audio track's priming), not a length after its start
    return _tag_seconds(stream.metadata.get("DURATION") or stream.metadata.get("duration"))


def _reason(e: BaseException) -> str:
    """A short one-line reason from a PyAV/OS error."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
