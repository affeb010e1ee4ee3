"""The one thread that owns the outbox.

Every other thread asks it to do outbox work and waits for the answer (the
publisher, for its reads ahead and bookkeeping, goes on and takes it later). New
passages go first: the lane waits on an append before the barrier may move,
so an append overtakes queued delivery bookkeeping (acknowledgements,
``sent`` marks) and maintenance. When it has had nothing to do for
:data:`~edge.store.outbox.CHECKPOINT_AFTER` seconds after an append, it makes a
checkpoint (:meth:`Outbox.checkpoint`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, TypeVar

from edge.core.model import Passage, PassageDraft
from edge.store.outbox import CHECKPOINT_AFTER, Entry, Outbox, OutboxStatus, Payload
from edge.store.retention import Purge

log = logging.getLogger(__name__)

T = TypeVar("T")

APPEND, READ, BOOKKEEPING, MAINTENANCE = 0, 1, 2, 3


class StoreThread(threading.Thread):
    """Runs outbox operations in priority order on its own thread."""

    def __init__(self, outbox: Outbox, checkpoint_after: float = CHECKPOINT_AFTER) -> None:
        super().__init__(name="store", daemon=True)
        self.outbox = outbox
        self.checkpoint_after = checkpoint_after
        self.checkpointed = threading.Event()  # set by each idle checkpoint (for tests)
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any]]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()

    def _call(self, priority: int, work: Callable[[], T]) -> T:
        return self.submit(priority, work).result()

    def submit(self, priority: int, work: Callable[[], T]) -> Future[T]:
        """Queue ``work`` for the store thread; its future (for callers that go on)."""
        if not self.is_alive():
            raise RuntimeError("the store thread is not running")
        future: Future[T] = Future()
        self._queue.put((priority, next(self._order), work, future))
        return future

    def run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_wait())
            except queue.Empty:
                self._checkpoint()
                continue
            _, _, work, future = item
            if work is None:
                future.set_result(None)
                return
            try:
                future.set_result(work())
            except Exception as exc:  # noqa: BLE001 - the caller gets it, the thread lives on
                future.set_exception(exc)

    def _idle_wait(self) -> float | None:
        """How long to wait for work before a checkpoint is due (None: none is)."""
        return self.checkpoint_after if self.outbox.unsynced else None

    def _checkpoint(self) -> None:
        if self.outbox.checkpoint_or_log():
            self.checkpointed.set()

    def stop(self) -> None:
        """Finish what is queued, close the outbox, end."""
        if not self.is_alive():
            return
        done: Future[Any] = Future()
        self._queue.put((MAINTENANCE + 1, next(self._order), None, done))
        done.result()
        self.join(timeout=5)
        self.outbox.close()

    # -- the outbox, through the thread ---------------------------------

    def append(self, draft: PassageDraft) -> Passage:
        return self._call(APPEND, lambda: self.outbox.append(draft))

    def entries(self) -> dict[int, Entry]:
        return self._call(READ, self.outbox.entries)

    def payloads(self, seqs: Iterable[int]) -> list[Payload]:
        wanted = list(seqs)
        return self._call(READ, lambda: self.outbox.payloads(wanted))

    def read_payloads(self, seqs: Iterable[int]) -> Future[list[Payload]]:
        """:meth:`payloads` without waiting: the publisher reads ahead while it publishes."""
        wanted = list(seqs)
        return self.submit(READ, lambda: self.outbox.payloads(wanted))

    def status(self) -> OutboxStatus:
        return self._call(READ, self.outbox.status)

    def approved_since(self, since: datetime) -> list[tuple[str, datetime]]:
        return self._call(READ, lambda: self.outbox.approved_since(since))

    def record_delivery(
        self,
        sent: Iterable[int],
        acked: Iterable[str],
        rejected: Mapping[str, str],
        finished: Iterable[int],
    ) -> Future[list[int]]:
        """A batch of delivery bookkeeping, without waiting: mark ``sent``, archive the
        ``acked`` pids (``rejected`` among them marked with the ingest's reason) and, in
        broker mode, the ``finished`` seqs. One job, so a failure fails all of it and the
        publisher sends the whole batch again; the seqs that left the outbox."""
        marks, pids, refused, done = list(sent), list(acked), dict(rejected), list(finished)

        def work() -> list[int]:
            now = datetime.now(UTC)
            self.outbox.mark_sent(marks)
            archive = pids + self.outbox.pids(done) if done else pids
            return self.outbox.acknowledge(archive, now, refused) if archive else []

        return self.submit(BOOKKEEPING, work)

    def purge(self, now: datetime, synchronised: bool | None = None) -> Purge:
        return self._call(MAINTENANCE, lambda: self.outbox.purge(now, synchronised))

    def check_writable(self) -> None:
        self._call(MAINTENANCE, self.outbox.check_writable)

    @property
    def last_seq(self) -> int:
        return self.outbox.last_seq
