"""From the raw bytes of a QR code to a verified :class:`~edge.core.model.Credential`.

Detection asks the format table (``registry.py``): each format knows its own
shape (``MD1:`` and the ``MDn:`` family, ``HC1:`` and ``HCn:``/``HLn:``, a chip
ID card's 12 digits and field count, ...); anything else is ``unrecognised``.
Reading is the format's own: parse and verify, stage by stage.

:meth:`Verifier.read` never raises: a payload that fails any check comes back
as a credential with ``valid`` false and the reason. :func:`verify_payload`
is the same chain without that safety net, for the fuzz tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edge.core.model import Credential
from edge.errors import CredentialRejected
from edge.scan import registry
from edge.scan.envelope import MAX_TEXT, StageLog
from edge.scan.format import Claims, Kind, Reading
from edge.scan.reasons import INTERNAL_ERROR, TOO_LARGE, UNRECOGNISED
from edge.scan.trust import TrustStore

log = logging.getLogger(__name__)

KINDS = registry.KINDS


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    claims: Claims | None
    reasons: tuple[str, ...]
    stages: dict[str, bool]


def detect(text: str) -> Kind:
    found = registry.detect(text)
    return UNRECOGNISED if found is None else found.kind


def verify_payload(
    raw: bytes, trust: TrustStore, now: datetime, skew: timedelta = timedelta(0)
) -> Outcome:
    """Detect, parse and verify. Only CredentialRejected is caught: a bug surfaces."""
    stages = StageLog()
    if len(raw) > MAX_TEXT:
        return Outcome(UNRECOGNISED, None, (TOO_LARGE,), {"size": False})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Outcome(UNRECOGNISED, None, (UNRECOGNISED,), {})
    fmt = registry.detect(text)
    if fmt is None:
        return Outcome(UNRECOGNISED, None, (UNRECOGNISED,), {})
    try:
        claims = fmt.read(text, Reading(trust, now, skew, stages))
    except CredentialRejected as exc:
        parsed = exc.claims if isinstance(exc.claims, fmt.claims_type) else None
        return Outcome(fmt.kind, parsed, (exc.reason,), stages.stages)
    return Outcome(fmt.kind, claims, (), stages.stages)


class Verifier:
    """Reads credentials against the current trust store and clock."""

    def __init__(
        self,
        trust: Callable[[], TrustStore],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        skew_s: float = 300.0,
    ) -> None:
        self.trust = trust
        self.clock = clock
        self.skew = timedelta(seconds=skew_s)

    def read(self, raw: bytes) -> Credential:
        try:
            outcome = verify_payload(raw, self.trust(), self.clock(), self.skew)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the kiosk; fuzz hunts them
            log.error("scan: verifier failed: %s", type(exc).__name__)  # noqa: TRY400 - no payload
            outcome = Outcome(UNRECOGNISED, None, (INTERNAL_ERROR,), {})
        return Credential.from_raw(
            outcome.kind,
            raw,
            valid=outcome.claims is not None and not outcome.reasons,
            reasons=outcome.reasons,
            stages=outcome.stages,
            claims=outcome.claims,
        )
