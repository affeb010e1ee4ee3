"""What the central passage database takes and gives, whichever its backend.

The ingest's writer hands it :class:`Checked` passages, and a :class:`Rejection` for
each message refused, and gets back what was :class:`Stored`; retention gets what was
:class:`Purged`; tracing asks with a :class:`Query`. :class:`PassageDB` is what every
backend offers (:mod:`edge.central.backends`); :func:`edge.central.db.open_db` picks
one by URL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from edge.errors import EdgeError


class DatabaseError(EdgeError, RuntimeError):
    """The central database cannot be opened or written.

    ``transient``: the database (or the way to it) failed, not the data; the same
    write may succeed later. Otherwise the database refused what was written.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Query:
    """What tracing asks for; every field narrows the result."""

    device: str | None = None
    id_number: str | None = None
    declaration_id: str | None = None
    site: str | None = None
    decision: str | None = None
    plate: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Checked:
    """A passage that passed the model's check: the message and its text as received
    (kept as is: parsed once, never re-encoded)."""

    msg: dict[str, Any]
    text: str

    @classmethod
    def of(cls, msg: dict[str, Any]) -> Checked:
        return cls(msg, json.dumps(msg, ensure_ascii=False, separators=(",", ":")))


@dataclass
class Stored:
    """What one :meth:`PassageDB.store` did with the pids of its batch."""

    stored: list[str] = field(default_factory=list)  # the database holds them for their device
    new: int = 0  # of those, how many this call stored (the others were there already)
    conflicts: dict[str, str] = field(default_factory=dict)  # pid -> why it was refused

    @property
    def duplicates(self) -> int:
        return len(self.stored) - self.new


@dataclass(frozen=True)
class Rejection:
    topic: str
    device: str | None
    pid: str | None
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Purged:
    """What one retention pass emptied of personal data."""

    passages: int = 0
    occupants: int = 0
    vehicles: int = 0
    rejected: int = 0

    def __bool__(self) -> bool:
        return any((self.passages, self.occupants, self.vehicles, self.rejected))


class PassageDB(Protocol):
    def store(self, passages: Sequence[Checked]) -> Stored:
        """Store checked passages in one transaction: new, duplicate or conflict each."""
        ...

    def reject(self, rejections: Sequence[Rejection]) -> None:
        """Keep refused messages with their reasons (the same message again: counted)."""
        ...

    def purge(self, before: datetime) -> Purged:
        """Empty of personal data every passage decided or received before ``before``,
        and every message rejected before it."""
        ...

    def find(self, query: Query) -> list[dict[str, Any]]:
        """The stored messages matching ``query``, in time order (then device, seq)."""
        ...

    def count(self) -> int: ...

    def hourly(self, first: str, end: str, site: str | None = None) -> Any:
        """The hourly roll-ups from hour ``first`` to before ``end`` (rollup.Rows)."""
        ...

    def close(self) -> None: ...
