"""The scanner: frames in, one scan per code presentation out.

A code held in front of the camera is decoded in every frame; the traveller
means it once. :class:`SeenFilter` turns per-frame detections into
presentations: a payload scans when it appears, and can scan again only after
it has been out of view for ``leave_s`` seconds (frame time), which also rides
out frames where a shaky code fails to decode.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

from edge.core.model import Credential
from edge.devices.frames import Frame, LatestFrame
from edge.scan.decoder import Decoder

log = logging.getLogger(__name__)


class SeenFilter:
    """Which payloads are new in a frame. Pure: time comes with each frame."""

    def __init__(self, leave_s: float) -> None:
        self.leave_s = leave_s
        self._last_seen: dict[bytes, float] = {}

    def update(self, payloads: list[bytes], t: float) -> list[bytes]:
        """Payloads seen at frame time ``t`` (seconds) that were not in view just before."""
        gone = [p for p, last in self._last_seen.items() if t - last > self.leave_s]
        for p in gone:
            del self._last_seen[p]
        new = [p for p in dict.fromkeys(payloads) if p not in self._last_seen]
        for p in payloads:
            self._last_seen[p] = t
        return new


class ScanThread(threading.Thread):
    """Decodes the newest frame, filters repeats, hands each new credential to ``on_scan``."""

    def __init__(
        self,
        slot: LatestFrame,
        decoder: Decoder,
        leave_s: float,
        on_scan: Callable[[Credential], None],
        read: Callable[[bytes], Credential],
    ) -> None:
        super().__init__(name="scanner", daemon=True)
        self.slot = slot
        self.decoder = decoder
        self.filter = SeenFilter(leave_s)
        self.on_scan = on_scan
        self.read = read
        self.stop_event = threading.Event()
        self.frames = 0
        self.scans = 0
        self.errors = 0
        self.decode_ms: deque[float] = deque(maxlen=200)

    def stop(self) -> None:
        self.stop_event.set()
        self.slot.close()

    def median_decode_ms(self) -> float | None:
        return statistics.median(self.decode_ms) if self.decode_ms else None

    def run(self) -> None:
        while not self.stop_event.is_set():
            frame = self.slot.get(timeout=0.5)
            if frame is None:
                continue
            try:
                self.process(frame)
            except Exception:  # a bug in verification must not end scanning
                self.errors += 1
                log.exception("scan: frame %d failed", frame.number)

    def process(self, frame: Frame) -> None:
        """Decode one frame and report the codes that just came into view."""
        started = time.perf_counter()
        try:
            payloads = self.decoder.decode(frame.image)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop scanning
            self.errors += 1
            log.warning(
                "scan: %s failed on frame %d: %s",
                self.decoder.name,
                frame.number,
                type(exc).__name__,
            )
            return
        self.decode_ms.append((time.perf_counter() - started) * 1000)
        self.frames += 1
        for raw in self.filter.update(payloads, frame.t):
            self.scans += 1
            self.on_scan(self.read(raw))
