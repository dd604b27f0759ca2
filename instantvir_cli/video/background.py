"""Encode restored blocks in a thread beside the restorer.

The restorer's torch kernels and the encoder (RGB -> YUV conversion, x264) then overlap on the
CPU's cores instead of taking turns. At most `depth` blocks wait in the queue, so memory stays
bounded by the block size; the first error the encoder raises comes back from the next `write`
or from `finish`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import torch

from instantvir_cli.video.writer import VideoWriter

_STOP = object()


class BackgroundWriter:
    """Feeds a `VideoWriter` from a thread: `write` queues a block, `finish` waits for the rest.

    Args:
        writer: the open writer (its own close stays with its owner).
        depth: blocks that may wait beside the one being encoded.
        on_written: called in the encoding thread with the frame count after each block.
        keep_on_error: when the caller fails, still encode what is queued (a stream output is
            finished with every frame restored before the failure); otherwise drop it (a file
            output is discarded whole).
    """

    def __init__(self, writer: VideoWriter, depth: int = 1, on_written: Callable[[int], None] | None = None,
                 keep_on_error: bool = False):
        self.writer = writer
        self.keep_on_error = keep_on_error
        self.seconds = 0.0                  # time spent encoding, beside the restorer
        self._on_written = on_written
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandon = False
        self._thread = threading.Thread(target=self._run, name="vir-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None or self._abandon:
                continue                     # drain: nothing more is written after a failure
            x, pts = item
            t0 = time.perf_counter()
            try:
                self.writer.write(x, pts)
            except BaseException as err:     # raised again in the caller's thread
                self._error = err
            self.seconds += time.perf_counter() - t0
            if self._error is None and self._on_written is not None:
                self._on_written(x.shape[2])

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            self._abandon = True
            raise err

    def write(self, x: torch.Tensor, pts: list[int]) -> None:
        """Queue x: (1, 3, T, H, W) float CPU frames with their timestamps; blocks while the queue is full."""
        self._raise()
        self._queue.put((x, pts))

    def finish(self) -> None:
        """Encode everything queued, stop the thread, and raise the encoder's error if it had one."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

    def abandon(self) -> None:
        """Stop without encoding what is still queued (the output is being discarded)."""
        self._abandon = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        elif self.keep_on_error:
            try:
                self.finish()
            except Exception:   # the caller's error is the one to report
                pass
        else:
            self.abandon()
