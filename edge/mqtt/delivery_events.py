"""The delivery machine's vocabulary: the inputs it takes and the actions it answers with.

Frozen dataclasses, pure. The state machine itself is :class:`edge.mqtt.delivery.Delivery`.

Three actions wait for their answer, which goes back to the machine
(``Delivery.handle``) before anything else is done: :class:`Publish` (answered
by :class:`Handed`), :class:`ReadNow` and :class:`AwaitReadAhead` (answered by
:class:`PayloadsRead` or :class:`ReadFailed`); each is the last of its list.
:class:`ReadAhead` and :class:`Bookkeep` are answered later, among a round's
inputs; the rest are not answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.store.outbox import Payload

# --- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A new passage is in the outbox."""

    seq: int


@dataclass(frozen=True)
class Connected:
    """A new connection to the broker began."""


@dataclass(frozen=True)
class CentralStatus:
    """The retained ``cp/v1/$central/status``: the ingest is online or not."""

    online: bool


@dataclass(frozen=True)
class Puback:
    mid: int
    ok: bool  # a success code (below 0x80)
    reason: str


@dataclass(frozen=True)
class Pubacks:
    """The PUBACKs of one pass of the network loop."""

    acks: tuple[Puback, ...]


@dataclass(frozen=True)
class Acked:
    """The ingest stored ``pids`` and refused ``rejected`` (pid, reason)."""

    pids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Booked:
    """The store wrote the batch of the last :class:`Bookkeep`; these seqs left the outbox."""

    acknowledged: tuple[int, ...] = ()


@dataclass(frozen=True)
class BookFailed:
    """The store could not write the batch of the last :class:`Bookkeep`."""

    error: str


@dataclass(frozen=True)
class PayloadsRead:
    """The answer to :class:`ReadNow` or (``ahead``) to :class:`ReadAhead`."""

    payloads: tuple[Payload, ...]
    ahead: bool = False


@dataclass(frozen=True)
class ReadFailed:
    """The read of the last :class:`ReadAhead` failed (what is needed is read again)."""

    error: str


@dataclass(frozen=True)
class Handed:
    """The answer to :class:`Publish`: paho took ``taken`` (mid, payload) and refused
    ``refused`` (its queue is full), the first it refused and every one after it."""

    taken: tuple[tuple[int, Payload], ...]
    refused: tuple[Payload, ...] = ()


Input = (
    Stored
    | Connected
    | CentralStatus
    | Pubacks
    | Acked
    | Booked
    | BookFailed
    | PayloadsRead
    | ReadFailed
    | Handed
)

# --- actions ------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """Hand these to paho in order (QoS 1) until it refuses one; answer :class:`Handed`."""

    payloads: tuple[Payload, ...]


@dataclass(frozen=True)
class ReadNow:
    """Read these payloads from the store and wait for them; answer :class:`PayloadsRead`."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class ReadAhead:
    """Ask the store for these payloads without waiting (its READ priority goes before
    queued bookkeeping); answer ``PayloadsRead(ahead=True)`` or :class:`ReadFailed` in a
    later round, or when :class:`AwaitReadAhead` asks for it."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class AwaitReadAhead:
    """Payloads needed now may be in the read ahead under way: wait for its answer."""


@dataclass(frozen=True)
class Batch:
    """Delivery bookkeeping for the store, written as one job."""

    sent: tuple[int, ...]  # mark sent
    acked: tuple[str, ...]  # pids the ingest acknowledged: archive them
    rejected: tuple[tuple[str, str], ...]  # (pid, reason) of those it refused to store
    finished: tuple[int, ...]  # broker mode: PUBACKed seqs to archive


@dataclass(frozen=True)
class Bookkeep:
    """Hand ``batch`` to the store without waiting; answer :class:`Booked` or
    :class:`BookFailed` in a later round."""

    batch: Batch


@dataclass(frozen=True)
class Log:
    """A line for the log: ``logging`` level, message and its %-arguments."""

    level: int
    message: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True)
class Acknowledged:
    """These passages are with the ingest (for the log, and the time of the last)."""

    seqs: tuple[int, ...]  # ascending
    outbox_empty: bool  # none is left to deliver


@dataclass(frozen=True)
class AlertRejected:
    """The ingest refused passages for good: raise the alert (how many so far, the last
    reason), since someone must look (a device bug, or a store that restarted its numbering)."""

    count: int
    reason: str


Action = (
    Publish | ReadNow | ReadAhead | AwaitReadAhead | Bookkeep | Log | Acknowledged | AlertRejected
)
