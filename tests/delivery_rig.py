"""A stand-in for the publisher thread around the delivery machine, for its tests.

A :class:`Rig` answers what must be answered at once (paho taking a publish, a
read the machine waits for) as the thread does, and leaves the rest (reads
ahead, bookkeeping) for the test to answer when it likes. The clock is the test's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from edge.mqtt.delivery import Delivery
from edge.mqtt.delivery_events import (
    Action,
    AwaitReadAhead,
    Batch,
    Bookkeep,
    CentralStatus,
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
from edge.store.outbox import SENT, STORED, Payload

T0 = 1000.0


def payload(seq: int) -> Payload:
    return Payload(seq, f"pid-{seq}", b'{"seq": %d}' % seq)


def pid(seq: int) -> str:
    return payload(seq).pid


class Rig:
    """A delivery machine, its clock, and stand-ins for paho and the store."""

    def __init__(
        self,
        stored: Iterable[int] = (),
        sent: Iterable[int] = (),
        *,
        online: bool | None = True,
        **options: object,
    ) -> None:
        self.machine = Delivery(**options)  # type: ignore[arg-type]
        self.machine.start({**dict.fromkeys(stored, STORED), **dict.fromkeys(sent, SENT)})
        self.now = T0
        self.mids = itertools.count(1)
        self.inflight: dict[int, int] = {}  # seq -> mid of its last publish
        self.published: list[int] = []  # seqs in the order paho took them
        self.paho_takes: int | None = None  # at most this many per Publish (None: all)
        self.ahead: ReadAhead | None = None  # a read ahead not yet answered
        self.ahead_fails = False  # waiting for it ends in an error (a timeout, the store)
        self.books: list[Batch] = []  # every batch handed to the store
        if online is not None:
            self.feed(CentralStatus(online))

    def feed(self, *inputs: Input) -> list[Action]:
        """One round's inputs; every action, with those that followed answers."""
        return self.carry_out(self.machine.handle(inputs, self.now))

    def tick(self, link_up: bool = True) -> list[Action]:
        return self.carry_out(self.machine.tick(self.now, link_up))

    def round(self, *inputs: Input) -> list[Action]:
        return self.feed(*inputs) + self.tick()

    def later(self, seconds: float) -> list[int]:
        """Move the clock, tick: every seq published so far."""
        self.now += seconds
        self.tick()
        return self.published

    def carry_out(self, actions: list[Action]) -> list[Action]:
        done: list[Action] = []
        for action in actions:
            done.append(action)
            answer = self.answer(action)
            if answer is not None:
                done += self.carry_out(self.machine.handle([answer], self.now))
        return done

    def answer(self, action: Action) -> Input | None:
        match action:
            case Publish(payloads=payloads):
                n = len(payloads) if self.paho_takes is None else self.paho_takes
                taken = tuple((next(self.mids), p) for p in payloads[:n])
                for mid, p in taken:
                    self.inflight[p.seq] = mid
                    self.published.append(p.seq)
                return Handed(taken, payloads[n:])
            case ReadNow(seqs=seqs):
                return PayloadsRead(tuple(payload(s) for s in seqs))
            case AwaitReadAhead():
                if self.ahead_fails:
                    self.ahead = None
                    return ReadFailed("timed out")
                return self.read_ahead()
            case ReadAhead():
                assert self.ahead is None, "one read ahead at a time"
                self.ahead = action
            case Bookkeep(batch=batch):
                self.books.append(batch)
        return None

    def read_ahead(self) -> PayloadsRead:
        assert self.ahead is not None
        seqs, self.ahead = self.ahead.seqs, None
        return PayloadsRead(tuple(payload(s) for s in seqs), ahead=True)

    def pubacks(self, *seqs: int, ok: bool = True, reason: str = "Success") -> Pubacks:
        return Pubacks(tuple(Puback(self.inflight.pop(s), ok, reason) for s in seqs))

    def sent(self, *seqs: int) -> None:
        """Publish and PUBACK these (fresh)."""
        self.feed(*(Stored(s) for s in seqs))
        self.tick()
        self.feed(self.pubacks(*seqs))


def of(actions: list[Action], cls: type) -> list[Action]:
    return [a for a in actions if isinstance(a, cls)]


def kinds(actions: list[Action]) -> list[type]:
    """The kinds of actions, in order, leaving out log lines."""
    return [type(a) for a in actions if not isinstance(a, Log)]


def logged(actions: list[Action]) -> list[str]:
    return [a.message % a.args for a in actions if isinstance(a, Log)]


def published(actions: list[Action]) -> list[int]:
    return [p.seq for a in actions if isinstance(a, Publish) for p in a.payloads]
