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

import bisect
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from edge.mqtt import topics
from edge.mqtt.link import MqttLink
from edge.store.outbox import SENT, STORED, Payload
from edge.store.thread import BOOKKEEPING, READ, StoreThread

log = logging.getLogger(__name__)

SENT_MARK_S = 1.0  # a passage PUBACKed but not acknowledged this long is marked sent
READ_AHEAD = 500  # passages fetched from the store at once during a drain
# passages archived per bookkeeping batch at most (two segments of the default size):
# a batch of a drain is a run of fsyncs, and a read of what to publish next waits for it
BOOKKEEP_MAX = 500


@dataclass(frozen=True)
class _Puback:
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class _Pubacks:
    acks: tuple[_Puback, ...]


@dataclass(frozen=True)
class _Acked:
    pids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()  # (pid, reason): refused by the ingest


@dataclass(frozen=True)
class _Central:
    online: bool


@dataclass(frozen=True)
class _Connected:
    pass


@dataclass(frozen=True)
class _Stored:
    seq: int


@dataclass(frozen=True)
class _Flushed:
    """The store finished (or failed) a batch of delivery bookkeeping."""

    batch: _Batch
    acknowledged: tuple[int, ...] = ()
    error: BaseException | None = None


@dataclass(frozen=True)
class _Batch:
    sent: tuple[int, ...]  # mark sent
    acked: tuple[str, ...]  # pids the ingest acknowledged: archive them
    rejected: tuple[tuple[str, str], ...]  # (pid, reason) of those it refused to store
    finished: tuple[int, ...]  # broker mode: PUBACKed seqs to archive


_Item = _Pubacks | _Acked | _Central | _Connected | _Stored | _Flushed | None


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
        self.window = window
        self.ack_mode = ack_mode
        self.ack_timeout_s = ack_timeout_s
        self.retry_s = retry_s
        self.monotonic = monotonic
        self.on_rejected = on_rejected  # (how many so far, the last reason): raise an alert
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
        # PUBACKed, not yet written to the store (written in batches: see _flush)
        self._to_mark_sent: dict[int, float] = {}  # seq -> when PUBACKed
        self._to_finish: set[int] = set()  # broker mode: done, to move to the archive
        # acknowledged by the ingest, to move to the archive: pid -> seq (0: not known)
        self._to_ack: dict[str, int] = {}
        self._to_reject: dict[str, str] = {}  # of those, refused by it: pid -> reason
        self._flushing: Future[tuple[int, ...]] | None = None
        self._pid_seq: dict[str, int] = {}  # of passages published by this process
        self._flush_after = 0.0  # after a failed flush: not before this
        self._central_online = ack_mode == "broker"  # delivery: may the backlog go?
        self._central_seen: bool | None = None  # display: None until a status is seen
        self._central_since = 0.0
        self._order: list[int] = []  # unacknowledged seqs, ascending (acknowledged ones linger)
        self._cursor = 0  # where the backlog walk goes on
        self._read_ahead: dict[int, Payload] = {}  # fetched early
        self._prefetching: Future[list[Payload]] | None = None  # the next chunk, on its way
        self._prefetch_none: tuple[int, int, int] | None = None  # where nothing was left
        self._last_sweep = 0.0
        # observable progress
        self.idle = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self.refused = 0
        self.rejected = 0  # refused by the ingest (kept in the archive, marked)
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

    def on_puback(self, acks: list[tuple[int, bool, str]]) -> None:
        """The PUBACKs of one pass of the network loop: queue only."""
        self._inbox.put(_Pubacks(tuple(_Puback(*a) for a in acks)))

    def on_ack(self, pids: list[str], rejected: Mapping[str, str] | None = None) -> None:
        """The ingest stored ``pids`` and refused ``rejected`` (pid -> reason)."""
        self._wake(_Acked(tuple(pids), tuple((rejected or {}).items())))

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
    def central_online(self) -> bool | None:
        """The central ingest as its retained status last said: online (True),
        offline (False), or unknown (None) while no status has been seen. In
        ``broker`` ack mode it is shown, never waited for."""
        return self._central_seen

    # -- publisher thread -----------------------------------------------

    def run(self) -> None:
        try:
            self._unacked = {
                seq: e.state
                for seq, e in self.store.entries().items()
                if e.device == self.device_id  # others: kept, with a store_foreign alert
            }
            self._order = sorted(self._unacked)
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
                self._flush(self.monotonic())
                self._fill()
            except Exception:
                # A store or encoding error must not end delivery: try again soon.
                log.exception("publisher: error; retrying")
                self._stopping.wait(1.0)
            with self._progress:
                self._progress.notify_all()
        try:
            if self._flushing is not None:
                self._flushing.result(timeout=10)
            self._flush(self.monotonic(), force=True)
            if self._flushing is not None:
                self._flushing.result(timeout=10)
        except Exception:
            log.exception("publisher: could not record the last deliveries; they go again")

    def _absorb(self, items: list[_Item]) -> None:
        done: list[int] = []
        acked: list[str] = []
        now = self.monotonic()
        for item in items:
            match item:
                case _Stored(seq=seq):
                    if seq not in self._unacked:
                        self._unacked[seq] = STORED
                        self._order.append(seq)  # seqs only grow
                    self._fresh.add(seq)
                case _Connected():
                    # whatever was sent before may be gone with the old connection
                    self._due |= {s for s, st in self._unacked.items() if st == SENT}
                    self._fresh.clear()
                    self._central_since = now
                    self._rewind()
                case _Central(online=online):
                    self._central_changed(online, now)
                case _Acked(pids=pids, rejected=rejected):
                    acked.extend(pids)
                    if rejected:
                        self._rejected_by_ingest(rejected)
                        acked.extend(pid for pid, _ in rejected)
                case _Flushed() as flushed:
                    self._flushed(flushed)
                case _Pubacks(acks=acks):
                    done.extend(self._pubacks(acks, now))
        if done:
            self._record_sent(sorted(set(done)), now)
        if acked:
            self._record_acked(acked)

    def _pubacks(self, acks: tuple[_Puback, ...], now: float) -> list[int]:
        """The seqs the broker accepted; refused ones are held back for ``retry_s``."""
        done = []
        for ack in acks:
            if ack.mid not in self._inflight:
                continue  # a status or other message, not a passage
            seq = self._inflight.pop(ack.mid)
            if ack.ok:
                done.append(seq)
                continue
            log.warning("publisher: broker refused passage seq=%d: %s", seq, ack.reason)
            self.refused += 1
            self._held[seq] = now + self.retry_s
            self._rewind()
        return done

    def _central_changed(self, online: bool, now: float) -> None:
        self._central_seen = online
        if self.ack_mode == "broker":
            return  # no ingest: the broker is the end of the line
        if online and not self._central_online:
            self._central_since = now
            self._rewind()
            log.info("publisher: central ingest online; backlog %d", len(self._unacked))
        elif not online and self._central_online:
            log.info("publisher: central ingest offline; holding the backlog")
        self._central_online = online

    def _record_sent(self, seqs: list[int], now: float) -> None:
        # Memory is updated at once (so nothing is published twice); the store in
        # batches (_flush): its "sent" mark is for people, the outbox's delivery
        # does not depend on it, and a disk that cannot take it now loses nothing.
        for seq in seqs:
            if self.ack_mode == "broker":
                self._forget(seq)
                self._to_finish.add(seq)
            elif seq in self._unacked:
                self._unacked[seq] = SENT
                self._sent_at[seq] = now
                self._fresh.discard(seq)
                self._due.discard(seq)
                self._to_mark_sent[seq] = now
        self.published += len(seqs)
        for seq in seqs:
            log.info("passage seq=%d published", seq)

    def _flush(self, now: float, force: bool = False) -> None:
        """Hand delivery bookkeeping to the store thread, one batch at a time, without
        waiting for the disk: whatever gathered while the last batch was written goes
        in the next (so a drain writes in large batches, a quiet lane at once)."""
        for seq in [s for s in self._to_mark_sent if s not in self._unacked]:
            del self._to_mark_sent[seq]  # acknowledged meanwhile: it leaves the outbox
        # the "sent" mark is for people (outbox status); the ingest's ack usually comes
        # within milliseconds, so marking at once would rewrite a segment for nothing
        marks = [s for s, at in self._to_mark_sent.items() if force or now - at >= SENT_MARK_S]
        if not (marks or self._to_finish or self._to_ack):
            return
        if self._flushing is not None and not self._flushing.done():
            return
        if now < self._flush_after and not force:
            return
        # oldest first, at most BOOKKEEP_MAX (the rest goes in the next batch, at once)
        acked = sorted(self._to_ack, key=self._to_ack.__getitem__)
        finished = sorted(self._to_finish)
        if not force:
            acked, finished = acked[:BOOKKEEP_MAX], finished[:BOOKKEEP_MAX]
        batch = _Batch(
            tuple(sorted(marks)),
            tuple(acked),
            tuple((p, self._to_reject.pop(p)) for p in acked if p in self._to_reject),
            tuple(finished),
        )
        for seq in marks:
            del self._to_mark_sent[seq]
        for pid in acked:
            del self._to_ack[pid]
        self._to_finish.difference_update(finished)
        future = self.store.submit(BOOKKEEPING, lambda: self._bookkeep(batch))
        self._flushing = future

        def done(f: Future[tuple[int, ...]]) -> None:
            error = f.exception()
            self._inbox.put(_Flushed(batch, () if error else f.result(), error))

        future.add_done_callback(done)

    def _bookkeep(self, batch: _Batch) -> tuple[int, ...]:
        """On the store thread: the writes a batch needs; the seqs that left the outbox."""
        outbox = self.store.outbox
        now = datetime.now(UTC)
        outbox.mark_sent(batch.sent)
        pids = list(batch.acked)
        if batch.finished:
            pids += outbox.pids(batch.finished)
        return tuple(outbox.acknowledge(pids, now, dict(batch.rejected))) if pids else ()

    def _flushed(self, item: _Flushed) -> None:
        if item.error is not None:
            # nothing is lost: try the same writes again with the next batch
            log.error("publisher: could not record delivery: %s; retrying", item.error)
            self._to_mark_sent.update(dict.fromkeys(item.batch.sent, 0.0))
            self._to_ack.update(dict.fromkeys(item.batch.acked, 0))
            self._to_reject.update(item.batch.rejected)
            self._to_finish.update(item.batch.finished)
            self._flush_after = self.monotonic() + 1.0  # not at once: the disk may need a while
            return
        late = [s for s in item.acknowledged if s in self._unacked]
        self._count_acknowledged(late)  # acknowledged passages this process had not published

    def _rejected_by_ingest(self, rejected: tuple[tuple[str, str], ...]) -> None:
        """Passages the ingest will never store: archived marked, never sent again, and an
        alert, since someone must look (a device bug, or a store that restarted its
        numbering)."""
        mine = [(p, r) for p, r in rejected if p not in self._to_reject]
        self._to_reject.update(mine)
        self.rejected += len(mine)
        for pid, reason in mine:
            seq = self._pid_seq.get(pid)
            log.error(
                "publisher: the ingest rejected passage %s: %s; kept in the archive, marked",
                f"seq={seq}" if seq is not None else "(from an earlier run)",
                reason,
            )
        if mine and self.on_rejected is not None:
            self.on_rejected(self.rejected, mine[-1][1])

    def _record_acked(self, pids: list[str]) -> None:
        """The ingest has them: done in memory now, in the store with the next batch."""
        known = []
        for pid in pids:
            seq = self._pid_seq.pop(pid, 0)
            self._to_ack[pid] = seq
            if seq:
                known.append(seq)
        self._count_acknowledged([s for s in known if s in self._unacked])

    def _count_acknowledged(self, seqs: list[int]) -> None:
        if not seqs:
            return
        for seq in seqs:
            self._forget(seq)
        self.acknowledged += len(seqs)
        self.last_ack = datetime.now(UTC)
        log.info("passage(s) acknowledged by the ingest: seq %s", _ranges(sorted(seqs)))
        if not self._unacked:
            log.info("outbox empty: every passage is with the ingest")

    def _forget(self, seq: int) -> None:
        self._unacked.pop(seq, None)
        self._fresh.discard(seq)
        self._due.discard(seq)
        self._sent_at.pop(seq, None)
        self._held.pop(seq, None)

    def _candidates(self, now: float, room: int) -> list[int]:
        """Up to ``room`` passages to send now, in order: fresh first, then the backlog
        if the ingest is up. The backlog is walked from a cursor, not sorted each time:
        a drain of thousands costs no more per message than a single passage."""
        if room <= 0:
            return []
        busy = set(self._inflight.values())
        if self._held:
            released = [s for s, t in self._held.items() if t <= now]
            for seq in released:
                del self._held[seq]
            if released:
                self._rewind()
            busy |= set(self._held)
        fresh = sorted(s for s in self._fresh if s not in busy and self._unacked.get(s) == STORED)
        chosen = fresh[:room]
        if not self._central_online or len(chosen) >= room:
            return chosen
        self._sweep_ack_timeouts(now)
        order = self._order
        while self._cursor < len(order) and len(chosen) < room:
            seq = order[self._cursor]
            state = self._unacked.get(seq)
            eligible = state == STORED or (state == SENT and seq in self._due)
            if state is None or not eligible or seq in self._fresh:
                self._cursor += 1  # acknowledged, sent and not due, or fresh: past it
                continue
            if seq in busy:
                self._cursor += 1
                continue
            chosen.append(seq)
            self._cursor += 1
        return chosen

    def _payloads(self, seqs: list[int]) -> list[Payload]:
        """What to publish, read from the store ahead in chunks: a drain asks the store
        thread once per READ_AHEAD passages, not once per PUBACK, and asks for the next
        chunk before it is needed (:meth:`_prefetch`), so that publishing does not wait
        for the store thread to finish a batch of bookkeeping first."""
        missing = [s for s in seqs if s not in self._read_ahead]
        if missing and self._prefetching is not None:
            self._take_prefetch()
            missing = [s for s in missing if s not in self._read_ahead]
        if missing:
            ahead = self._order[self._cursor : self._cursor + READ_AHEAD]
            wanted = sorted({*missing, *(s for s in ahead if s in self._unacked)})
            for payload in self.store.payloads(wanted):
                self._read_ahead[payload.seq] = payload
        out = [self._read_ahead.pop(s) for s in seqs if s in self._read_ahead]
        if len(self._read_ahead) > 4 * max(READ_AHEAD, self.window):
            self._read_ahead.clear()  # the walk moved on (a rewind): start afresh
        self._prefetch()
        return out

    def _prefetch(self) -> None:
        """Keep a publisher's window of the backlog walk read ahead: once fewer are
        ready, ask the store thread for the next chunk without waiting (its READ
        priority goes before queued bookkeeping, but not before a batch already being
        written, which may take a tenth of a second of fsyncs in a drain);
        :meth:`_payloads` takes it when it needs it."""
        if self._prefetching is not None:
            if self._prefetching.done():
                self._take_prefetch()
            return
        depth = max(READ_AHEAD, self.window)
        if not self._central_online or len(self._read_ahead) >= depth:
            return
        mark = (self._cursor, len(self._order), len(self._unacked))
        if mark == self._prefetch_none:
            return  # nothing more to read since the last look
        wanted: list[int] = []
        for seq in itertools.islice(self._order, self._cursor, None):
            if seq in self._unacked and seq not in self._read_ahead:
                wanted.append(seq)
                if len(wanted) == READ_AHEAD:
                    break
        if not wanted:
            self._prefetch_none = mark
            return
        outbox = self.store.outbox
        self._prefetching = self.store.submit(READ, lambda: outbox.payloads(wanted))

    def _take_prefetch(self) -> None:
        """The prefetched chunk into the read-ahead (waiting for it if it is not there yet)."""
        future, self._prefetching = self._prefetching, None
        if future is None:
            return
        try:
            payloads = future.result(timeout=30)
        except Exception:  # the read is made again when it is needed
            log.warning("publisher: reading ahead failed; reading again", exc_info=True)
            return
        for payload in payloads:
            self._read_ahead[payload.seq] = payload

    def _not_taken(self, payloads: list[Payload]) -> None:
        """paho refused these (its queue is full): the walk goes back to the first, so
        they go with the next round instead of waiting for a rewind."""
        for payload in payloads:
            self._read_ahead[payload.seq] = payload
        self._cursor = min(self._cursor, bisect.bisect_left(self._order, payloads[0].seq))

    def _rewind(self) -> None:
        """Something before the cursor may be sendable again: walk from the start."""
        if len(self._order) > 2 * len(self._unacked) + 64:
            self._order = sorted(self._unacked)  # drop the acknowledged
        self._cursor = 0

    def _sweep_ack_timeouts(self, now: float) -> None:
        """Sent passages the ingest has not acknowledged in time are due again (at most
        once a second: it looks at every one)."""
        if self.ack_mode != "ingest" or now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        since = max(self._central_since, 0.0)
        late = [s for s, at in self._sent_at.items() if now - max(at, since) > self.ack_timeout_s]
        if late:
            self._due.update(late)
            for seq in late:
                self._sent_at[seq] = now  # due once more, not at every sweep
            self._rewind()

    def _fill(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        seen_wake = self._last_wake
        now = self.monotonic()
        room = self.window - len(self._inflight)
        fresh_waiting = any(self._unacked.get(s) == STORED for s in self._fresh)
        if room < self.window // 2 and not fresh_waiting:
            return  # paho still holds half a window: top it up in bulk later, not per PUBACK
        chosen = self._candidates(now, room)
        payloads = self._payloads(chosen)
        for i, payload in enumerate(payloads):
            mid = link.publish(self.topic, payload.data, qos=1)
            if mid is None:
                self._not_taken(payloads[i:])
                break
            self._inflight[mid] = payload.seq
            self._due.discard(payload.seq)
            if self.ack_mode == "ingest":
                self._pid_seq[payload.pid] = payload.seq
        fresh_left = any(self._unacked.get(s) == STORED for s in self._fresh)
        flushing = self._flushing is not None and not self._flushing.done()
        pending = self._to_mark_sent or self._to_finish or self._to_ack or flushing
        if self._inflight or fresh_left or pending:
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
