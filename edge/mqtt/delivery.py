"""Delivery of the outbox to the central ingest: a pure state machine, inputs to actions.

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
of thousands never delays a new one by more than a window.

:class:`Delivery` does no I/O, starts no thread and keeps no clock: one thread
(:class:`~edge.mqtt.publisher.Publisher`) feeds it inputs with the current
monotonic time (:meth:`Delivery.handle`, then :meth:`Delivery.tick` once a
round) and carries out the actions it answers with, in order; which action is
answered how is in :mod:`edge.mqtt.delivery_events`.
"""

from __future__ import annotations

import itertools
import logging
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
from edge.store.journal import ranges
from edge.store.outbox import SENT, STORED, Payload

SENT_MARK_S = 1.0  # a passage PUBACKed but not acknowledged this long is marked sent
READ_AHEAD = 500  # passages fetched from the store at once during a drain
# passages archived per bookkeeping batch at most (two segments of the default size):
# a batch of a drain is a run of fsyncs, and a read of what to publish next waits for it
BOOKKEEP_MAX = 500
BOOKKEEP_RETRY_S = 1.0  # after a failed batch: the disk may need a while
SWEEP_S = 1.0  # ack timeouts are looked for at most this often: it looks at every sent one


@dataclass
class _Fill:
    """The passages chosen by the last :meth:`Delivery.tick`, while their payloads are read."""

    seqs: list[int]
    awaiting: bool = False  # for the read ahead under way (AwaitReadAhead)
    read: bool = False  # the store was asked for the missing (ReadNow): publish what there is


class Delivery:
    """Which passages to publish, and the outbox's delivery state. Not thread-safe."""

    def __init__(
        self,
        *,
        window: int = 10,
        ack_mode: str = "ingest",
        ack_timeout_s: float = 120.0,
        retry_s: float = 5.0,
        read_ahead: int = READ_AHEAD,
        bookkeep_max: int = BOOKKEEP_MAX,
        sent_mark_s: float = SENT_MARK_S,
    ) -> None:
        self.window = window
        self.ack_mode = ack_mode
        self.ack_timeout_s = ack_timeout_s
        self.retry_s = retry_s  # a passage the broker refused waits this long
        self.read_ahead = read_ahead
        self.bookkeep_max = bookkeep_max
        self.sent_mark_s = sent_mark_s
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
        self._booking: Batch | None = None  # with the store, not yet answered
        self._pid_seq: dict[str, int] = {}  # of passages published by this process
        self._book_after = 0.0  # after a failed batch: not before this
        self._central_online = ack_mode == "broker"  # delivery: may the backlog go?
        self._central_seen: bool | None = None  # display: None until a status is seen
        self._central_since = 0.0
        self._order: list[int] = []  # unacknowledged seqs, ascending (acknowledged ones linger)
        self._cursor = 0  # where the backlog walk goes on
        self._read: dict[int, Payload] = {}  # read ahead
        self._reading_ahead = False  # a ReadAhead not yet answered
        self._read_none: tuple[int, int, int] | None = None  # where nothing was left to read
        self._fill: _Fill | None = None
        self._last_sweep = 0.0
        self.published = 0
        self.acknowledged = 0
        self.refused = 0  # PUBACKs with a failure code
        self.rejected = 0  # refused by the ingest (kept in the archive, marked)

    def start(self, states: Mapping[int, str]) -> None:
        """The outbox as found: this device's live passages, seq -> stored | sent."""
        self._unacked = dict(states)
        self._order = sorted(self._unacked)

    @property
    def backlog(self) -> int:
        """Passages not yet acknowledged (or, in broker mode, not yet PUBACKed)."""
        return len(self._unacked)

    @property
    def central_online(self) -> bool | None:
        """The central ingest as its retained status last said, None until one is seen."""
        return self._central_seen

    @property
    def busy(self) -> bool:
        """Something in flight, fresh to send, or bookkeeping not yet written."""
        fresh_left = any(self._unacked.get(s) == STORED for s in self._fresh)
        pending = self._to_mark_sent or self._to_finish or self._to_ack
        return bool(self._inflight or fresh_left or pending or self._booking is not None)

    # -- inputs ------------------------------------------------------------------

    def handle(self, inputs: Iterable[Input], now: float) -> list[Action]:
        """Take a round's inputs as one batch (PUBACKs and acknowledgements are recorded
        after all of them), or the answer of an action; what to do about them."""
        out: list[Action] = []
        done: list[int] = []
        acked: list[str] = []
        for item in inputs:
            match item:
                case Pubacks(acks=acks):
                    done.extend(self._pubacks(acks, now, out))
                case Acked(pids=pids, rejected=rejected):
                    acked.extend(pids)
                    if rejected:
                        out += self._rejected_by_ingest(rejected)
                        acked.extend(pid for pid, _ in rejected)
                case _:
                    out += self._take(item, now)
        if done:
            out += self._record_sent(sorted(set(done)), now)
        if acked:
            out += self._record_acked(acked)
        return out

    def _take(self, item: Input, now: float) -> list[Action]:
        match item:
            case Stored(seq=seq):
                if seq not in self._unacked:
                    self._unacked[seq] = STORED
                    self._order.append(seq)  # seqs only grow
                self._fresh.add(seq)
            case Connected():
                # whatever was sent before may be gone with the old connection
                self._due |= {s for s, st in self._unacked.items() if st == SENT}
                self._fresh.clear()
                self._central_since = now
                self._rewind()
            case CentralStatus(online=online):
                return self._central_changed(online, now)
            case Booked(acknowledged=seqs):
                self._booking = None
                # acknowledged passages this process had not published
                return self._count_acknowledged([s for s in seqs if s in self._unacked])
            case BookFailed(error=error):
                return self._book_failed(error, now)
            case PayloadsRead(payloads=payloads, ahead=ahead):
                return self._payloads_read(payloads, ahead)
            case ReadFailed():
                return self._payloads_read((), ahead=True)
            case Handed(taken=taken, refused=refused):
                self._handed(taken, refused)
        return []

    def tick(self, now: float, link_up: bool) -> list[Action]:
        """The end of a round: bookkeeping due to the store, and while the link is up, what
        to hand paho (or what to read for it first)."""
        out = self._flush(now)
        self._fill = None  # one left by a read that failed is chosen afresh
        if not link_up:
            return out
        room = self.window - len(self._inflight)
        fresh_waiting = any(self._unacked.get(s) == STORED for s in self._fresh)
        if room < self.window // 2 and not fresh_waiting:
            return out  # paho still holds half a window: top it up in bulk later, not per PUBACK
        self._fill = _Fill(self._candidates(now, room))
        return out + self._assemble()

    def close(self, now: float) -> list[Action]:
        """The publisher stops: every bookkeeping item in one batch, whatever its age."""
        return self._flush(now, force=True)

    def _pubacks(self, acks: tuple[Puback, ...], now: float, out: list[Action]) -> list[int]:
        """The seqs the broker accepted; refused ones are held back for ``retry_s``."""
        done = []
        for ack in acks:
            if ack.mid not in self._inflight:
                continue  # a status or other message, not a passage
            seq = self._inflight.pop(ack.mid)
            if ack.ok:
                done.append(seq)
                continue
            text = "publisher: broker refused passage seq=%d: %s"
            out.append(Log(logging.WARNING, text, (seq, ack.reason)))
            self.refused += 1
            self._held[seq] = now + self.retry_s
            self._rewind()
        return done

    def _central_changed(self, online: bool, now: float) -> list[Action]:
        self._central_seen = online
        if self.ack_mode == "broker":
            return []  # no ingest: the broker is the end of the line
        out: list[Action] = []
        if online and not self._central_online:
            self._central_since = now
            self._rewind()
            text = "publisher: central ingest online; backlog %d"
            out.append(Log(logging.INFO, text, (len(self._unacked),)))
        elif not online and self._central_online:
            out.append(Log(logging.INFO, "publisher: central ingest offline; holding the backlog"))
        self._central_online = online
        return out

    def _record_sent(self, seqs: list[int], now: float) -> list[Action]:
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
        # one line for the PUBACKs of a round, not one per passage: a drain would log
        # thousands of lines at the default level (and pay for each)
        return [Log(logging.INFO, "passage(s) published: seq %s", (ranges(seqs),))]

    def _flush(self, now: float, force: bool = False) -> list[Action]:
        """Bookkeeping for the store, one batch at a time, the publisher not waiting for
        the disk: whatever gathered while the last batch was written goes in the next (so
        a drain writes in large batches, a quiet lane at once)."""
        for seq in [s for s in self._to_mark_sent if s not in self._unacked]:
            del self._to_mark_sent[seq]  # acknowledged meanwhile: it leaves the outbox
        # the "sent" mark is for people (outbox status); the ingest's ack usually comes
        # within milliseconds, so marking at once would rewrite a segment for nothing
        marks = [s for s, at in self._to_mark_sent.items() if force or now - at >= self.sent_mark_s]
        waiting = self._booking is not None or (now < self._book_after and not force)
        if waiting or not (marks or self._to_finish or self._to_ack):
            return []
        # oldest first, at most bookkeep_max (the rest goes in the next batch, at once)
        acked = sorted(self._to_ack, key=self._to_ack.__getitem__)
        finished = sorted(self._to_finish)
        if not force:
            acked, finished = acked[: self.bookkeep_max], finished[: self.bookkeep_max]
        batch = Batch(
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
        self._booking = batch
        return [Bookkeep(batch)]

    def _book_failed(self, error: str, now: float) -> list[Action]:
        """Nothing is lost: the same writes go again with the next batch."""
        batch, self._booking = self._booking, None
        if batch is None:
            return []
        self._to_mark_sent.update(dict.fromkeys(batch.sent, 0.0))
        self._to_ack.update(dict.fromkeys(batch.acked, 0))
        self._to_reject.update(batch.rejected)
        self._to_finish.update(batch.finished)
        self._book_after = now + BOOKKEEP_RETRY_S
        return [Log(logging.ERROR, "publisher: could not record delivery: %s; retrying", (error,))]

    def _rejected_by_ingest(self, rejected: tuple[tuple[str, str], ...]) -> list[Action]:
        """Passages the ingest will never store: archived marked, never sent again, and
        an alert."""
        mine = [(p, r) for p, r in rejected if p not in self._to_reject]
        self._to_reject.update(mine)
        self.rejected += len(mine)
        out: list[Action] = []
        for pid, reason in mine:
            seq = self._pid_seq.get(pid)
            which = f"seq={seq}" if seq is not None else "(from an earlier run)"
            text = "publisher: the ingest rejected passage %s: %s; kept in the archive, marked"
            out.append(Log(logging.ERROR, text, (which, reason)))
        if mine:
            out.append(AlertRejected(self.rejected, mine[-1][1]))
        return out

    def _record_acked(self, pids: list[str]) -> list[Action]:
        """The ingest has them: done in memory now, in the store with the next batch."""
        known = []
        for pid in pids:
            seq = self._pid_seq.pop(pid, 0)
            self._to_ack[pid] = seq
            if seq:
                known.append(seq)
        return self._count_acknowledged([s for s in known if s in self._unacked])

    def _count_acknowledged(self, seqs: list[int]) -> list[Action]:
        if not seqs:
            return []
        for seq in seqs:
            self._forget(seq)
        self.acknowledged += len(seqs)
        return [Acknowledged(tuple(sorted(seqs)), outbox_empty=not self._unacked)]

    def _forget(self, seq: int) -> None:
        self._unacked.pop(seq, None)
        self._fresh.discard(seq)
        self._due.discard(seq)
        self._sent_at.pop(seq, None)
        self._held.pop(seq, None)

    # -- what to send --------------------------------------------------------------

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
            self._cursor += 1  # past it, whether chosen or not
            # acknowledged, sent and not due, fresh, or busy: not now
            if eligible and seq not in self._fresh and seq not in busy:
                chosen.append(seq)
        return chosen

    def _assemble(self) -> list[Action]:
        """The chosen payloads to publish, or what to read first. They are read ahead in
        chunks: a drain asks the store once per ``read_ahead`` passages, not once per
        PUBACK, and asks for the next chunk before it is needed (:meth:`_read_more`), so
        that publishing does not wait for the store to finish a batch of bookkeeping."""
        fill = self._fill
        assert fill is not None
        if not fill.read:
            missing = [s for s in fill.seqs if s not in self._read]
            if missing and self._reading_ahead:
                fill.awaiting = True
                return [AwaitReadAhead()]
            if missing:  # with the next read_ahead of the walk
                ahead = self._order[self._cursor : self._cursor + self.read_ahead]
                fill.read = True
                return [ReadNow(tuple(sorted({*missing, *set(ahead) & self._unacked.keys()})))]
        self._fill = None
        out = tuple(self._read.pop(s) for s in fill.seqs if s in self._read)
        if len(self._read) > 4 * max(self.read_ahead, self.window):
            self._read.clear()  # the walk moved on (a rewind): start afresh
        actions = self._read_more()
        return [*actions, Publish(out)] if out else actions

    def _read_more(self) -> list[Action]:
        """Keep a publisher's window of the backlog walk read ahead: once fewer are ready,
        ask for the next chunk (the store goes on with a batch of bookkeeping already being
        written first, which may take a tenth of a second of fsyncs in a drain)."""
        depth = max(self.read_ahead, self.window)
        if self._reading_ahead or not self._central_online or len(self._read) >= depth:
            return []
        mark = (self._cursor, len(self._order), len(self._unacked))
        if mark == self._read_none:
            return []  # nothing more to read since the last look
        wanted: list[int] = []
        for seq in itertools.islice(self._order, self._cursor, None):
            if seq in self._unacked and seq not in self._read:
                wanted.append(seq)
                if len(wanted) == self.read_ahead:
                    break
        if not wanted:
            self._read_none = mark
            return []
        self._reading_ahead = True
        return [ReadAhead(tuple(wanted))]

    def _payloads_read(self, payloads: tuple[Payload, ...], ahead: bool) -> list[Action]:
        """Payloads from the store (none when a read ahead failed: what is needed is read
        again); the fill waiting for them goes on."""
        if ahead and not self._reading_ahead:
            return []  # not asked for (any more)
        self._reading_ahead = self._reading_ahead and not ahead
        self._read.update((payload.seq, payload) for payload in payloads)
        fill = self._fill
        if fill is None or not (fill.awaiting if ahead else fill.read):
            return []
        fill.awaiting = False
        return self._assemble()

    def _handed(self, taken: tuple[tuple[int, Payload], ...], refused: tuple[Payload, ...]) -> None:
        for mid, payload in taken:
            self._inflight[mid] = payload.seq
            self._due.discard(payload.seq)
            if self.ack_mode == "ingest":
                self._pid_seq[payload.pid] = payload.seq
        if refused:
            # paho's queue is full: the walk goes back to the first, so they go with the
            # next round instead of waiting for a rewind
            for payload in refused:
                self._read[payload.seq] = payload
            self._cursor = min(self._cursor, bisect_left(self._order, refused[0].seq))

    def _rewind(self) -> None:
        """Something before the cursor may be sendable again: walk from the start."""
        if len(self._order) > 2 * len(self._unacked) + 64:
            self._order = sorted(self._unacked)  # drop the acknowledged
        self._cursor = 0

    def _sweep_ack_timeouts(self, now: float) -> None:
        """Sent passages the ingest has not acknowledged in time are due again (at most
        once every SWEEP_S: it looks at every one)."""
        if self.ack_mode != "ingest" or now - self._last_sweep < SWEEP_S:
            return
        self._last_sweep = now
        since = max(self._central_since, 0.0)
        late = [s for s, at in self._sent_at.items() if now - max(at, since) > self.ack_timeout_s]
        if late:
            self._due.update(late)
            for seq in late:
                self._sent_at[seq] = now  # due once more, not at every sweep
            self._rewind()
