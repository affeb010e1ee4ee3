"""Domain values shared by the core and the adapters: credentials and passages.

Pure data, no I/O. A :class:`Credential` carries the raw payload read from a
QR code for verification, but never shows it: its ``repr`` omits it, and the
passage message carries only its kind and SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Decision = Literal["approved", "denied"]
DecidedBy = Literal["officer", "policy"]

PASSAGE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Credential:
    """What was read from one QR code.

    ``kind`` is the recognised format (``unrecognised`` when none matched);
    ``raw`` is the payload exactly as decoded, kept out of ``repr`` and logs.
    """

    kind: str
    raw: bytes = field(repr=False)
    sha256: str = ""

    @classmethod
    def from_raw(cls, kind: str, raw: bytes) -> Credential:
        return cls(kind=kind, raw=raw, sha256=hashlib.sha256(raw).hexdigest())

    @property
    def short_id(self) -> str:
        """A short, non-identifying handle for logs (the first hex digits of the hash)."""
        return self.sha256[:10]


@dataclass(frozen=True)
class Verdict:
    """The policy's view of a credential: what it recommends and why."""

    outcome: Literal["approve", "refer", "deny"]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class PassageDraft:
    """A decided passage before the store numbers it.

    The store adds ``seq`` (monotonic per device, across restarts) and ``pid``.
    """

    ts: datetime
    decision: Decision
    decided_by: DecidedBy
    reasons: tuple[str, ...]
    credential: Credential | None
    mode: str


@dataclass(frozen=True)
class Passage:
    """A stored passage: the draft plus its identity on this device."""

    pid: str
    seq: int
    device: str
    site: str
    draft: PassageDraft

    def to_message(self) -> dict[str, Any]:
        """The passage as published (see ``docs/passage.schema.json``)."""
        cred = self.draft.credential
        return {
            "v": PASSAGE_SCHEMA_VERSION,
            "pid": self.pid,
            "seq": self.seq,
            "device": self.device,
            "site": self.site,
            "ts": iso_utc(self.draft.ts),
            "decision": self.draft.decision,
            "decided_by": self.draft.decided_by,
            "reasons": list(self.draft.reasons),
            "mode": self.draft.mode,
            "credential": None if cred is None else {"kind": cred.kind, "sha256": cred.sha256},
        }


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-11-26T15:10:17.123Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
