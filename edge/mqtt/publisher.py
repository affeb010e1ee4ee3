"""Delivers the outbox to the central ingest: publish, PUBACK, acknowledgement.

A passage goes stored -> sent (the broker's PUBACK carried a success code,
below 0x80; ``0x10 no matching subscribers`` is one) -> acknowledged (the
ingest's ``cp/v1/<id>/ack`` names its pid; the passage then leaves the outbox
for the archive). With ``[mqtt] ack = "broker"`` there is no ingest and the
PUBACK is the end.

What is sent, in order:

1. **fresh** passages (stored since the current connection began): always, at
   once, oldest first;
2. the **backlog** (everything else not yet acknowledged: older stored
   passages, and sent ones due again) oldest first, only while the retained
   ``cp/v1/$central/status`` says the ingest is online, so that a long outage
   does not overflow the broker's queue for an absent ingest. Sent passages
   are due again after a reconnect, and when the ingest has not acknowledged
   them within ``ack_timeout_s`` while online (the broker may have dropped
   them); the ingest removes duplicates.

At most ``window`` passages are in flight; fresh ones go first, so a backlog
of thousands never delays a new one by more than a window. PUBACKs,
acknowledgements and status changes arrive on the network thread and are only
queued there; this thread does the work.
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
from datetime import UTC, datetime

from edge.mqtt import topics
from edge.mqtt.link import MqttLink
from edge.store import SENT, STORED
from edge.store_thread import StoreThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Puback:
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class _Acked:
    pids: tuple[str, ...]


@dataclass(frozen=True)
class _Central:
    online: bool


@dataclass(frozen=True)
class _Connected:
    pass


@dataclass(frozen=True)
class _Stored:
    seq: int


_Item = _Puback | _Acked | _Central | _Connected | _Stored | None


class Publisher(threading.Thread):
    """The one thread that decides what to publish and keeps the outbox's delivery state."""

    def __init__(
        self,
        store: StoreThread,
        device_id: str,
        *,
        window: int = 10,
        ack_mode: str = "ingest",
        ack_timeout_s: float = 120.0,
        retry_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.store = store
        self.topic = topics.passage(device_id)
        self.window = window
        self.ack_mode = ack_mode
        self.ack_timeout_s = ack_timeout_s
        self.retry_s = retry_s
        self.monotonic = monotonic
        self.link: MqttLink | None = None
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._stopping = threading.Event()
        # delivery state, owned by this thread
        self._unacked: dict[int, str] = {}  # seq -> stored | sent
        self._fresh: set[int] = set()
        self._due: set[int] = set()  # sent, to be sent again
        self._sent_at: dict[int, float] = {}
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._held: dict[int, float] = {}  # seq -> not before (after a refused PUBACK)
        self._unrecorded: set[int] = set()  # PUBACKed, not yet marked sent in the store
        self._central_online = ack_mode == "broker"
        self._central_since = 0.0
        # observable progress
        self.idle = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self.refused = 0
        self.last_ack: datetime | None = None
        self._progress = threading.Condition()
        self._wakes = itertools.count(1)
        self._last_wake = 0

    # -- called from any thread -----------------------------------------

    def stored(self, seq: int) -> None:
        """A new passage is in the outbox."""
        self._wake(_Stored(seq))

    def wake(self) -> None:
        self._wake(None)

    def connected(self) -> None:
        self._wake(_Connected())

    def on_puback(self, mid: int, ok: bool, reason: str) -> None:
        self._inbox.put(_Puback(mid, ok, reason))

    def on_ack(self, pids: list[str]) -> None:
        self._wake(_Acked(tuple(pids)))

    def on_central(self, online: bool) -> None:
        self._wake(_Central(online))

    def _wake(self, item: _Item) -> None:
        self._last_wake = next(self._wakes)
        self.idle.clear()
        self._inbox.put(item)

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(None)

    def wait_until(self, condition: Callable[[Publisher], bool], timeout: float) -> bool:
        """Wait until ``condition(self)`` holds after a round of work (shutdown, tests)."""
        with self._progress:
            return self._progress.wait_for(lambda: condition(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight and nothing fresh is left to send."""
        return self.idle.wait(timeout)

    @property
    def backlog(self) -> int:
        """Passages not yet acknowledged (or, in broker mode, not yet PUBACKed)."""
        return len(self._unacked)

    @property
    def central_online(self) -> bool:
        return self._central_online

    # -- publisher thread -----------------------------------------------

    def run(self) -> None:
        try:
            self._unacked = {seq: e.state for seq, e in self.store.entries().items()}
        except Exception:
            log.exception("publisher: cannot read the outbox; nothing will be sent")
            return
        while not self._stopping.is_set():
            try:
                first = self._inbox.get(timeout=1.0)
            except queue.Empty:
                first = None
            items = [first]
            while True:  # take everything waiting: one store write per batch
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._absorb(items)
                self._fill()
            except Exception:
                # A store or encoding error must not end delivery: try again soon.
                log.exception("publisher: error; retrying")
                self._stopping.wait(1.0)
            with self._progress:
                self._progress.notify_all()

    def _absorb(self, items: list[_Item]) -> None:
        done: list[int] = sorted(self._unrecorded)
        acked: list[str] = []
        now = self.monotonic()
        for item in items:
            match item:
                case _Stored(seq=seq):
                    self._unacked.setdefault(seq, STORED)
                    self._fresh.add(seq)
                case _Connected():
                    # whatever was sent before may be gone with the old connection
                    self._due |= {s for s, st in self._unacked.items() if st == SENT}
                    self._fresh.clear()
                    self._central_since = now
                case _Central(online=online):
                    self._central_changed(online, now)
                case _Acked(pids=pids):
                    acked.extend(pids)
                case _Puback(mid=mid, ok=ok, reason=reason) if mid in self._inflight:
                    seq = self._inflight.pop(mid)
                    if ok:
                        done.append(seq)
                    else:
                        log.warning("publisher: broker refused passage seq=%d: %s", seq, reason)
                        self.refused += 1
                        self._held[seq] = now + self.retry_s
        if done:
            self._record_sent(sorted(set(done)), now)
        if acked:
            self._record_acked(acked)

    def _central_changed(self, online: bool, now: float) -> None:
        if self.ack_mode == "broker":
            return  # no ingest: the broker is the end of the line
        if online and not self._central_online:
            self._central_since = now
            log.info("publisher: central ingest online; backlog %d", len(self._unacked))
        elif not online and self._central_online:
            log.info("publisher: central ingest offline; holding the backlog")
        self._central_online = online

    def _record_sent(self, seqs: list[int], now: float) -> None:
        # Until the store records them they must not look unsent: that would
        # publish them again and again while the disk is full.
        self._unrecorded = set(seqs)
        if self.ack_mode == "broker":
            pids = [m["pid"] for m in self.store.messages(seqs)]
            self.store.acknowledge(pids, datetime.now(UTC))
            for seq in seqs:
                self._forget(seq)
        else:
            self.store.mark_sent(seqs)
            for seq in seqs:
                if seq in self._unacked:
                    self._unacked[seq] = SENT
                self._sent_at[seq] = now
                self._fresh.discard(seq)
                self._due.discard(seq)
        self._unrecorded.clear()
        self.published += len(seqs)
        for seq in seqs:
            log.info("passage seq=%d published", seq)

    def _record_acked(self, pids: list[str]) -> None:
        seqs = self.store.acknowledge(pids, datetime.now(UTC))
        for seq in seqs:
            self._forget(seq)
        if seqs:
            self.acknowledged += len(seqs)
            self.last_ack = datetime.now(UTC)
            log.info("passage(s) acknowledged by the ingest: seq %s", _ranges(seqs))
            if not self._unacked:
                log.info("outbox empty: every passage is with the ingest")

    def _forget(self, seq: int) -> None:
        self._unacked.pop(seq, None)
        self._fresh.discard(seq)
        self._due.discard(seq)
        self._sent_at.pop(seq, None)
        self._held.pop(seq, None)

    def _candidates(self, now: float) -> list[int]:
        """What may be sent now, in order: fresh first, then the backlog if the ingest is up."""
        busy = set(self._inflight.values()) | self._unrecorded
        self._held = {s: t for s, t in self._held.items() if t > now}
        busy |= set(self._held)
        fresh = sorted(s for s in self._fresh if s not in busy and self._unacked.get(s) == STORED)
        if not self._central_online:
            return fresh
        if self.ack_mode == "ingest":
            since = max(self._central_since, 0.0)
            for seq, at in self._sent_at.items():
                if now - max(at, since) > self.ack_timeout_s:
                    self._due.add(seq)
        backlog = sorted(
            s
            for s, state in self._unacked.items()
            if s not in busy and s not in self._fresh and (state == STORED or s in self._due)
        )
        return fresh + backlog

    def _fill(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        seen_wake = self._last_wake
        now = self.monotonic()
        room = self.window - len(self._inflight)
        candidates = self._candidates(now)
        chosen = candidates[: max(room, 0)]
        for msg in self.store.messages(chosen):
            payload = json.dumps(msg, separators=(",", ":")).encode()
            mid = link.publish(self.topic, payload, qos=1)
            if mid is None:
                break
            seq = int(msg["seq"])
            self._inflight[mid] = seq
            self._due.discard(seq)
        fresh_left = any(s in self._fresh for s in candidates[len(chosen) :])
        if self._inflight or self._unrecorded or fresh_left:
            self.idle.clear()
        elif seen_wake == self._last_wake:  # no wake() since this round looked at the outbox
            self.idle.set()


def _ranges(seqs: list[int]) -> str:
    """1,2,3,7 -> '1-3,7' (acknowledgements come in runs)."""
    out: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(f"{start}-{prev}" if prev > start else str(start))
        if seq is not None:
            start = prev = seq
    return ",".join(out)
