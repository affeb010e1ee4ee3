"""Domain values shared by the core and the adapters: credentials and passages.

Pure data, no I/O. A :class:`Credential` carries the raw payload read from a
QR code and its parsed claims, but never shows them: its ``repr`` omits
both; a passage message carries each credential's kind, SHA-256 and verdict,
and only the traveller fields the config chooses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, date, datetime
from typing import Any

from edge.core.passage import (
    PLATE,
    SCHEMA_VERSION,
    DecidedBy,
    Decision,
    LookupStatus,
    Mode,
    OpenedBy,
    Outcome,
    fit_traveller,
)
from edge.scan import registry
from edge.scan.format import Claims, Kind

PASSAGE_SCHEMA_VERSION = SCHEMA_VERSION
_LOG_KEY = secrets.token_bytes(16)


@dataclass(frozen=True)
class Lookup:
    """What the optional online service said of an unsigned code.

    ``pending`` while the question is out; ``confirmed`` or ``refused`` as the
    service answered; ``unavailable`` when it did not answer in time, could not
    be reached, or answered nonsense. ``data`` is what a confirmation added (a
    green-lane vehicle's plate and drivers): personal, never logged.
    """

    status: LookupStatus
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Credential:
    """What was read from one QR code, and what verifying it found.

    ``kind`` is the recognised format (a kind of ``edge.scan.registry``, or
    ``unrecognised``); ``valid`` says whether every check passed, and
    ``reasons`` why not; ``stages`` maps each check reached to its outcome.
    ``raw`` (the payload exactly as decoded) and ``claims`` (the parsed
    content) hold personal data and stay out of ``repr`` and logs.
    """

    kind: Kind
    raw: bytes = field(repr=False)
    sha256: str = ""
    valid: bool = False
    reasons: tuple[str, ...] = ()
    stages: Mapping[str, bool] = field(default_factory=dict)
    claims: Claims | None = field(default=None, repr=False)
    lookup: Lookup | None = None  # the online confirmation, when [lookup] asks for one

    @classmethod
    def from_raw(
        cls,
        kind: Kind,
        raw: bytes,
        *,
        valid: bool = False,
        reasons: tuple[str, ...] = (),
        stages: Mapping[str, bool] | None = None,
        claims: Claims | None = None,
    ) -> Credential:
        return cls(
            kind=kind,
            raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(),
            valid=valid,
            reasons=reasons,
            stages=dict(stages or {}),
            claims=claims,
        )

    @property
    def short_id(self) -> str:
        """A short handle for logs: stable within this process, so that log lines about
        one scan can be followed, but keyed with a per-process secret, so that it
        links nobody across restarts or kiosks (an ID card's code never changes)."""
        return hmac.new(_LOG_KEY, self.sha256.encode(), "sha256").hexdigest()[:10]

    @property
    def tag(self) -> str:
        """How the credential appears in logs: its kind and short id, never its content."""
        return f"{self.kind} {self.short_id}"

    @property
    def ref(self) -> str | None:
        """What makes this credential the same credential, for replay checks: a hash of
        its issuer and identifier (declaration id, DCC certificate id), so that a
        re-encoded copy of the same signed code is still the same; None when it
        has none (ID cards, unrecognised, unverified codes)."""
        fmt = registry.get(self.kind)
        return None if fmt is None or self.claims is None else fmt.reference(self.claims)


@dataclass(frozen=True)
class Verdict:
    """The policy's view of a credential: what it recommends and why."""

    outcome: Outcome
    reasons: tuple[str, ...]
    # refer: what the traveller could still show (id_card, proof, declaration)
    needs: tuple[str, ...] = ()


def normal_plate(value: Any) -> str | None:
    """A vehicle plate as typed (``51h-123.45``, ``51H 123.45``): upper case, a space
    between its parts a ``-``; "" for none; None when it cannot be a plate (2-15 of
    0-9 A-Z . -)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    plate = "-".join(value.upper().split())
    if not plate:
        return ""
    return plate if PLATE.fullmatch(plate) else None


@dataclass(frozen=True)
class Vehicle:
    """A vehicle passing as one passage: its kind, its plate (typed by the officer, from a
    green-lane confirmation, or from a declaration; "" unknown) and who opened its
    group (``officer`` or ``greenlane``). The plate is personal data."""

    kind: str
    plate: str = field(default="", repr=False)
    opened_by: OpenedBy = "officer"


@dataclass(frozen=True)
class PassageDraft:
    """A decided passage before the store numbers it.

    The store adds ``seq`` (monotonic per device, across restarts) and ``pid``.
    ``verdict`` is the policy's outcome for what was shown (None when nothing
    was); ``credentials`` everything shown, in order. A party of several people
    (a vehicle's occupants, a parent and the child whose code they declared)
    lists each person's codes in ``occupants``, as indexes into
    ``credentials``; empty means one traveller. ``vehicle`` is set for a
    vehicle group.
    """

    ts: datetime
    decision: Decision
    decided_by: DecidedBy
    reasons: tuple[str, ...]
    credentials: tuple[Credential, ...]
    mode: Mode
    verdict: Outcome | None = None
    occupants: tuple[tuple[int, ...], ...] = ()
    vehicle: Vehicle | None = None


@dataclass(frozen=True)
class Passage:
    """A stored passage: the draft plus its identity on this device."""

    pid: str
    seq: int
    device: str
    site: str
    draft: PassageDraft

    def to_message(self, fields: Sequence[str] = ()) -> dict[str, Any]:
        """The passage as published (``docs/passage.schema.json``).

        ``fields`` chooses which traveller fields are recorded (``[passage]
        fields``); the raw payloads never are.
        """
        d = self.draft
        return {
            "v": PASSAGE_SCHEMA_VERSION,
            "pid": self.pid,
            "seq": self.seq,
            "device": self.device,
            "site": self.site,
            "ts": iso_utc(d.ts),
            "decision": d.decision,
            "decided_by": d.decided_by,
            "reasons": list(d.reasons),
            "mode": d.mode,
            "verdict": d.verdict,
            "credentials": [
                {
                    "kind": c.kind,
                    "sha256": c.sha256,
                    "ref": c.ref,
                    "valid": c.valid,
                    "reasons": list(c.reasons),
                    "lookup": None if c.lookup is None else c.lookup.status,
                }
                for c in d.credentials
            ],
            "traveller": traveller(self.first_traveller(), fields),
            **self._party(fields),
        }

    def first_traveller(self) -> tuple[Credential, ...]:
        """The codes of the passage's (first) traveller."""
        d = self.draft
        if not d.occupants:
            return d.credentials
        return tuple(d.credentials[i] for i in d.occupants[0])

    def _party(self, fields: Sequence[str]) -> dict[str, Any]:
        """``occupants`` and ``vehicle``, for a party of several people or a vehicle."""
        d = self.draft
        out: dict[str, Any] = {}
        if d.occupants:
            out["occupants"] = [
                {
                    "credentials": list(person),
                    "traveller": traveller([d.credentials[i] for i in person], fields),
                }
                for person in d.occupants
            ]
        if d.vehicle is not None:
            out["vehicle"] = {
                "kind": d.vehicle.kind,
                "occupants": len(d.occupants),
                "opened_by": d.vehicle.opened_by,
            }
            if "plate" in fields and d.vehicle.plate:
                out["vehicle"]["plate"] = d.vehicle.plate
        return out


def traveller(credentials: Sequence[Credential], fields: Sequence[str]) -> dict[str, Any]:
    """The chosen traveller fields from the codes shown: where several codes give a
    field, the format of higher rank wins (a declaration over an ID card over a
    DCC), each fitted to the passage model (``edge.core.passage``). Claims are present
    for every credential whose signature verified (even if it then failed a later
    check, such as expiry), and for well-formed unsigned codes."""
    values: dict[str, Any] = {}
    found = [(registry.get(c.kind), c.claims) for c in credentials if c.claims is not None]
    for fmt, claims in sorted(
        ((f, c) for f, c in found if f is not None), key=lambda pair: pair[0].rank
    ):
        values.update({k: v for k, v in fmt.traveller(claims).items() if v not in (None, "")})
    # fitted to the passage model: no traveller's code can make a passage the ingest
    # refuses (a NUL in a printed card's name, a 10,000-character field)
    return fit_traveller(values, fields)


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-11-26T15:10:17.123Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain(value: Any, stamp: Callable[[datetime], str] = datetime.isoformat) -> Any:
    """Claims (dataclasses, dates, nested) as JSON-ready data; ``stamp`` writes datetimes."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v, stamp) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v, stamp) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, stamp) for v in value]
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def initials(name: str) -> str:
    """A name masked to its initials: ``Nguyễn Văn Minh`` -> ``N. V. M.``"""
    return " ".join(part[0].upper() + "." for part in name.split() if part)


def mask_tail(text: str, keep: int = 3, fill: str = "•") -> str:
    """``text`` with all but its last ``keep`` characters replaced by ``fill``."""
    shown = text[max(0, len(text) - keep) :] if keep > 0 else ""
    return fill * (len(text) - len(shown)) + shown
