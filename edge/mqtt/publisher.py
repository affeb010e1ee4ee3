"""The publisher thread: feeds the delivery machine and carries out its actions.

What to send, and the outbox's delivery state, is :class:`~edge.mqtt.delivery.Delivery`
(pure: inputs in, actions out); this thread alone touches it. PUBACKs,
acknowledgements and status changes arrive on the network thread, new passages on
the lane's: they are only queued there. Each round this thread takes everything
queued (one bookkeeping batch for all of it), hands it to the machine, then ticks
it, and carries out what it answers: publishing through the :class:`MqttLink`,
reading payloads and writing bookkeeping through the :class:`StoreThread`
(reads ahead and bookkeeping without waiting: their answers come back as inputs
of a later round).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime

from edge.mqtt import topics
from edge.mqtt.delivery import BOOKKEEP_MAX, READ_AHEAD, SENT_MARK_S, Delivery
from edge.mqtt.delivery_events import (
    Acked,
    Acknowledged,
    Action,
    AlertRejected,
    AwaitReadAhead,
    Batch,
    Booked,
    BookFailed,
    Bookkeep,
    CentralStatus,
    Connected,
    Handed,
    Input,
    Log,
    PayloadsRead,
    Puback,
    Pubacks,
    Publish,
    ReadAhead,
    ReadFailed,
    ReadNow,
    Stored,
)
from edge.mqtt.link import MqttLink
from edge.store.journal import ranges
from edge.store.outbox import Payload
from edge.store.thread import StoreThread

__all__ = ["BOOKKEEP_MAX", "READ_AHEAD", "SENT_MARK_S", "Publisher"]

log = logging.getLogger(__name__)


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
        on_rejected: Callable[[int, str], None] | None = None,
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.store = store
        self.device_id = device_id
        self.topic = topics.passage(device_id)
        self.window = window  # (paho's queue is sized from it: mqtt/device.py)
        self.monotonic = monotonic
        self.on_rejected = on_rejected  # (how many so far, the last reason): raise an alert
        self.link: MqttLink | None = None
        # the tunables of this module (a test or bench may set them before construction)
        self.delivery = Delivery(
            window=window,
            ack_mode=ack_mode,
            ack_timeout_s=ack_timeout_s,
            retry_s=retry_s,
            read_ahead=READ_AHEAD,
            bookkeep_max=BOOKKEEP_MAX,
            sent_mark_s=SENT_MARK_S,
        )
        self._inbox: queue.Queue[Input | None] = queue.Queue()
        self._stopping = threading.Event()
        self._booking: Future[list[int]] | None = None  # the last Bookkeep's
        self._reading: Future[list[Payload]] | None = None  # the ReadAhead not yet answered
        # observable progress
        self.idle = threading.Event()
        self.last_ack: datetime | None = None
        self._progress = threading.Condition()
        self._wakes = itertools.count(1)
        self._last_wake = 0

    # -- called from any thread -----------------------------------------

    def stored(self, seq: int) -> None:
        """A new passage is in the outbox."""
        self._wake(Stored(seq))

    def wake(self) -> None:
        self._wake(None)

    def connected(self) -> None:
        self._wake(Connected())

    def on_puback(self, acks: list[tuple[int, bool, str]]) -> None:
        """The PUBACKs of one pass of the network loop: queue only."""
        self._inbox.put(Pubacks(tuple(Puback(*a) for a in acks)))

    def on_ack(self, pids: list[str], rejected: Mapping[str, str] | None = None) -> None:
        """The ingest stored ``pids`` and refused ``rejected`` (pid -> reason)."""
        self._wake(Acked(tuple(pids), tuple((rejected or {}).items())))

    def on_central(self, online: bool) -> None:
        self._wake(CentralStatus(online))

    def _wake(self, item: Input | None) -> None:
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
        return self.delivery.backlog

    @property
    def central_online(self) -> bool | None:
        """The central ingest as its retained status last said: online (True),
        offline (False), or unknown (None) while no status has been seen. In
        ``broker`` ack mode it is shown, never waited for."""
        return self.delivery.central_online

    @property
    def published(self) -> int:
        return self.delivery.published

    @property
    def acknowledged(self) -> int:
        return self.delivery.acknowledged

    @property
    def refused(self) -> int:
        """Passages the broker refused (a PUBACK failure code), each time."""
        return self.delivery.refused

    @property
    def rejected(self) -> int:
        """Passages the ingest refused to store (kept in the archive, marked)."""
        return self.delivery.rejected

    # -- publisher thread -----------------------------------------------

    def run(self) -> None:
        try:
            entries = self.store.entries()
        except Exception:
            log.exception("publisher: cannot read the outbox; nothing will be sent")
            return
        # others' passages are kept, with a store_foreign alert
        self.delivery.start({s: e.state for s, e in entries.items() if e.device == self.device_id})
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
                self._round([item for item in items if item is not None])
            except Exception:
                # A store or encoding error must not end delivery: try again soon.
                log.exception("publisher: error; retrying")
                self._stopping.wait(1.0)
            with self._progress:
                self._progress.notify_all()
        try:
            if self._booking is not None:  # the machine takes no new batch before its answer
                booked = Booked(tuple(self._booking.result(timeout=10)))
                self._carry_out(self.delivery.handle([booked], self.monotonic()))
            self._carry_out(self.delivery.close(self.monotonic()))
            if self._booking is not None:
                self._booking.result(timeout=10)
        except Exception:
            log.exception("publisher: could not record the last deliveries; they go again")

    def _round(self, inputs: list[Input]) -> None:
        if self._reading is not None and self._reading.done():
            inputs.append(self._read_ahead())
        self._carry_out(self.delivery.handle(inputs, self.monotonic()))
        link = self.link
        link_up = link is not None and link.connected
        seen_wake = self._last_wake
        self._carry_out(self.delivery.tick(self.monotonic(), link_up))
        if not link_up:
            return
        if self.delivery.busy:
            self.idle.clear()
        elif seen_wake == self._last_wake:  # no wake() since this round looked at the outbox
            self.idle.set()

    def _carry_out(self, actions: list[Action]) -> None:
        """In order; an answer the machine needs at once goes back to it at once."""
        for action in actions:
            answer = self._perform(action)
            if answer is not None:
                self._carry_out(self.delivery.handle([answer], self.monotonic()))

    def _perform(self, action: Action) -> Input | None:
        match action:
            case Publish(payloads=payloads):
                return self._publish(payloads)
            case ReadNow(seqs=seqs):
                return PayloadsRead(tuple(self.store.payloads(seqs)))
            case AwaitReadAhead():
                return self._read_ahead()
            case ReadAhead(seqs=seqs):
                try:
                    self._reading = self.store.read_payloads(seqs)
                except RuntimeError as exc:  # the store thread has stopped: read when needed
                    log.warning("publisher: cannot read ahead: %s", exc)
                    return ReadFailed(str(exc))
            case Bookkeep(batch=batch):
                return self._bookkeep(batch)
            case Log(level=level, message=message, args=args):
                log.log(level, message, *args)
            case Acknowledged(seqs=seqs, outbox_empty=empty):
                self.last_ack = datetime.now(UTC)
                log.info("passage(s) acknowledged by the ingest: seq %s", ranges(seqs))
                if empty:
                    log.info("outbox empty: every passage is with the ingest")
            case AlertRejected(count=count, reason=reason):
                if self.on_rejected is not None:
                    self.on_rejected(count, reason)
        return None

    def _publish(self, payloads: tuple[Payload, ...]) -> Handed:
        link = self.link
        taken: list[tuple[int, Payload]] = []
        for i, payload in enumerate(payloads):
            mid = link.publish(self.topic, payload.data, qos=1) if link is not None else None
            if mid is None:
                return Handed(tuple(taken), payloads[i:])
            taken.append((mid, payload))
        return Handed(tuple(taken))

    def _read_ahead(self) -> PayloadsRead | ReadFailed:
        """The read ahead's answer (waiting for it if it is not there yet)."""
        future, self._reading = self._reading, None
        if future is None:
            return ReadFailed("nothing is being read ahead")
        try:
            return PayloadsRead(tuple(future.result(timeout=30)), ahead=True)
        except Exception as exc:  # the read is made again when it is needed
            log.warning("publisher: reading ahead failed; reading again", exc_info=True)
            return ReadFailed(str(exc))

    def _bookkeep(self, batch: Batch) -> BookFailed | None:
        """To the store thread, without waiting: its answer comes in a later round."""
        try:
            future = self.store.record_delivery(
                batch.sent, batch.acked, dict(batch.rejected), batch.finished
            )
        except RuntimeError as exc:  # the store thread has stopped: tried again later
            return BookFailed(str(exc))
        self._booking = future

        def done(f: Future[list[int]]) -> None:
            error = f.exception()
            self._inbox.put(BookFailed(str(error)) if error else Booked(tuple(f.result())))

        future.add_done_callback(done)
        return None
