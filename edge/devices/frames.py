"""Frames and the one-slot latest-frame hand-off between camera and scanner.

The camera thread must never block on a slow decoder, and the decoder must
always work on the newest frame: :class:`LatestFrame` holds one frame; a new
one replaces an untaken one, which is counted as dropped, never queued.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

Gray = npt.NDArray[np.uint8]


def as_gray(image: Any) -> Gray:
    """A C-contiguous 2-D uint8 array, as the decoders want it (no copy when it already is)."""
    return cast(Gray, np.ascontiguousarray(image, dtype=np.uint8))


@dataclass(frozen=True)
class Frame:
    """One grayscale camera frame.

    ``image`` is a 2-D uint8 array (height x width, the luminance plane);
    ``number`` counts frames from the source's start; ``t`` is the
    ``time.monotonic()`` at capture, in seconds.
    """

    image: Gray = field(repr=False)
    number: int
    t: float


class LatestFrame:
    """A one-slot mailbox: ``put`` never blocks, ``get`` waits for a newer frame."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.delivered = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest untaken frame; None on timeout or once closed and empty."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self.delivered += 1
            return frame

    def close(self) -> None:
        """Wake waiting readers; later ``get`` calls return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
