"""Telemetry's frame counters: camera rate, decoded rate, frames dropped, from a running
kiosk whose camera hands out frames only when the test says so."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from edge.devices.frames import Gray
from edge.scan.decoder import ZxingDecoder
from edge.service.view import KioskView

from .conftest import make_config, qr_frame
from .test_e2e import Kiosk


class SteppedCamera:
    """A camera (the :class:`~edge.devices.camera.FrameSource` interface) whose sensor
    delivers a frame when the test gives one; ``read`` blocks until then, like a
    hardware camera waiting for its next exposure."""

    description = "stepped"
    fps = 30.0
    self_paced = True

    def __init__(self) -> None:
        self.frames: queue.Queue[Gray | None] = queue.Queue()
        self.reads = 0
        self._read = threading.Condition()

    def open(self) -> None:
        pass

    def read(self) -> Gray | None:
        with self._read:
            self.reads += 1  # the frame before this read is in the slot
            self._read.notify_all()
        return self.frames.get()

    def close(self) -> None:
        pass

    def delivered(self, count: int, timeout: float = 10) -> bool:
        """Wait until ``count`` frames have been put into the slot by the capture thread."""
        with self._read:
            return self._read.wait_for(lambda: self.reads > count, timeout)


class GatedDecoder:
    """The real decoder, each call held until the test allows one more (a slow decoder).
    When call N has begun, the scanner has counted the N-1 before it."""

    def __init__(self) -> None:
        self.real = ZxingDecoder()
        self.name = self.real.name
        self.allowed = threading.Semaphore(0)
        self.calls = 0
        self._calls = threading.Condition()

    def decode(self, image: Gray) -> list[bytes]:
        with self._calls:
            self.calls += 1
            self._calls.notify_all()
        assert self.allowed.acquire(timeout=10)
        return self.real.decode(image)

    def began(self, count: int, timeout: float = 10) -> bool:
        with self._calls:
            return self._calls.wait_for(lambda: self.calls >= count, timeout)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_telemetry_counts_frames_captured_decoded_and_dropped(tmp_path: Path) -> None:
    camera, decoder = SteppedCamera(), GatedDecoder()
    kiosk = Kiosk(make_config(tmp_path), source=camera, decoder=decoder)
    clock = Clock()
    view = KioskView(kiosk.app.view.parts, monotonic=clock)
    kiosk.start()
    try:
        empty = qr_frame(None, (240, 320))
        camera.frames.put(empty)
        assert decoder.began(1)  # the scanner took frame 1 and is decoding it
        for _ in range(3):  # frames 2, 3, 4 while the decoder is busy
            camera.frames.put(empty)
        assert camera.delivered(4)
        # frame 3 replaced frame 2, frame 4 replaced frame 3: two dropped, never decoded
        decoder.allowed.release(2)  # frame 1, then the newest: frame 4
        assert decoder.began(2)
        camera.frames.put(empty)  # frame 5, whose decode waits: 1 and 4 are counted
        assert decoder.began(3)
        assert camera.delivered(5)
        clock.now += 2.0
        tele = view.telemetry()
        assert tele["camera_fps"] == tele["fps"] == 2.5  # 5 frames in 2 s
        assert tele["decoded_fps"] == 1.0  # 2 frames in 2 s
        assert tele["frames_dropped"] == 2

        decoder.allowed.release()  # the next second: frame 5 decoded, then frame 6
        camera.frames.put(empty)
        assert decoder.began(4)
        assert camera.delivered(6)
        clock.now += 1.0
        tele = view.telemetry()
        assert (tele["camera_fps"], tele["decoded_fps"], tele["frames_dropped"]) == (1.0, 1.0, 2)
        decoder.allowed.release(10)
    finally:
        camera.frames.put(None)  # the recording ends: the capture thread finishes
        kiosk.stop()
