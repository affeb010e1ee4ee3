"""Drains the outbox to the broker, oldest first, at QoS 1.

The outbox, not paho, is the source of truth: a passage is marked sent only
when its PUBACK carries a success reason code (below 0x80; ``0x10 no matching
subscribers`` is a success). A failed PUBACK leaves it stored and it is tried
again after ``retry_s``. At most ``window`` passages are in flight at once;
while the broker is away nothing new is handed to paho (paho itself re-sends
what was in flight when the connection comes back).

PUBACKs arrive on paho's network thread, which holds paho's message lock at
that moment; they are only queued there and handled on this thread, so the
two threads never wait on each other.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.mqtt import topics
from edge.mqtt.link import MqttLink
from edge.store import Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ack:
    mid: int
    ok: bool
    reason: str


class Publisher(threading.Thread):
    """The one thread that publishes passages and records their PUBACKs."""

    def __init__(
        self, outbox: Outbox, device_id: str, window: int = 10, retry_s: float = 5.0
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.outbox = outbox
        self.topic = topics.passage(device_id)
        self.window = window
        self.retry_s = retry_s
        self.link: MqttLink | None = None
        self._inbox: queue.Queue[_Ack | None] = queue.Queue()
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._held: dict[int, float] = {}  # seq -> monotonic time before which it is not retried
        self._unrecorded: set[int] = set()  # PUBACKed, not yet marked sent in the store
        self._stopping = threading.Event()
        self.idle = threading.Event()
        self.published = 0
        self.refused = 0
        self._progress = threading.Condition()
        self._wakes = itertools.count(1)
        self._last_wake = 0  # number of the latest wake(); a round that began before it is stale

    # -- called from any thread -----------------------------------------

    def wake(self) -> None:
        """New passages or a new connection: look at the outbox again."""
        self._last_wake = next(self._wakes)
        self.idle.clear()
        self._inbox.put(None)

    def on_puback(self, mid: int, ok: bool, reason: str) -> None:
        """paho's on_publish, via the link: queue only."""
        self._inbox.put(_Ack(mid, ok, reason))

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(None)

    def wait_until(self, condition: Callable[[Publisher], bool], timeout: float) -> bool:
        """Wait until ``condition(self)`` holds after a round of work (for shutdown and tests)."""
        with self._progress:
            return self._progress.wait_for(lambda: condition(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight and nothing unsent is left (while connected)."""
        return self.idle.wait(timeout)

    # -- publisher thread -----------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._inbox.get(timeout=1.0)
            except queue.Empty:
                item = None
            acks = [item] if isinstance(item, _Ack) else []
            while True:  # take everything already waiting: one store write per batch
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, _Ack):
                    acks.append(more)
            try:
                self._settle(acks)
                self._fill()
            except Exception:
                # A store or encoding error must not kill delivery: try again later.
                log.exception("publisher: error; retrying")
                self._stopping.wait(1.0)
            with self._progress:
                self._progress.notify_all()

    def _settle(self, acks: list[_Ack]) -> None:
        done: list[int] = sorted(self._unrecorded)
        for ack in acks:
            seq = self._inflight.pop(ack.mid, None)
            if seq is None:
                continue  # a status or other message, not a passage
            if ack.ok:
                done.append(seq)
            else:
                log.warning("publisher: broker refused passage seq=%d: %s", seq, ack.reason)
                self.refused += 1
                self._held[seq] = time.monotonic() + self.retry_s
        if done:
            # Until the store records them, they must not look unsent: that
            # would publish them again and again while the disk is full.
            self._unrecorded = set(done)
            self.outbox.mark_sent(done)
            self._unrecorded.clear()
            self.published += len(done)
            for seq in done:
                log.info("passage seq=%d published", seq)

    def _fill(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        seen_wake = self._last_wake
        now = time.monotonic()
        self._held = {s: t for s, t in self._held.items() if t > now}
        room = self.window - len(self._inflight)
        busy = set(self._inflight.values()) | set(self._held) | self._unrecorded
        pending = self.outbox.unsent(limit=max(room, 1), exclude=busy)
        for msg in pending[: max(room, 0)]:
            payload = json.dumps(msg, separators=(",", ":")).encode()
            mid = link.publish(self.topic, payload, qos=1)
            if mid is None:
                break
            self._inflight[mid] = int(msg["seq"])
        if self._inflight or pending or self._held or self._unrecorded:
            self.idle.clear()
        elif seen_wake == self._last_wake:  # no wake() since this round looked at the outbox
            self.idle.set()
