"""Video I/O with PyAV: probe, a threaded block reader, an atomic writer, a synthetic clip.

Frames cross this API as torch float32 (1, 3, T, H, W) RGB in [-1, 1] with their pts.
"""

from instantvir_cli.video.info import VideoInfo, probe
from instantvir_cli.video.reader import FrameBlock, VideoReader
from instantvir_cli.video.synthetic import synthetic_frames, write_synthetic_clip
from instantvir_cli.video.writer import EncodeOptions, VideoWriter

__all__ = ["VideoInfo", "probe", "FrameBlock", "VideoReader", "EncodeOptions", "VideoWriter",
           "synthetic_frames", "write_synthetic_clip"]
