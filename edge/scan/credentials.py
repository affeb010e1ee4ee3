"""From the raw bytes of a QR code to a verified :class:`~edge.model.Credential`.

Format detection by prefix and shape:

- ``HC1:`` an EU DCC (``HCn:``/``HLn:`` of another version: a DCC with
  ``bad_prefix``);
- ``MD1:`` our movement declaration (``MDn:`` of another version:
  ``bad_prefix``);
- 12 digits then ``|``: a Vietnamese chip ID card;
- anything else: ``unrecognised``.

:meth:`Verifier.read` never raises: a payload that fails any check comes back
as a credential with ``valid`` false and the reason. :func:`verify_payload`
is the same chain without that safety net, for the fuzz tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edge.errors import CredentialRejected
from edge.model import Credential
from edge.scan import dcc, declaration, idcard
from edge.scan.claims import Claims, Dcc, Declaration, IdCard
from edge.scan.envelope import MAX_TEXT, StageLog
from edge.scan.reasons import BAD_PREFIX, TOO_LARGE, UNRECOGNISED
from edge.trust import TrustStore

log = logging.getLogger(__name__)

DECLARATION = "declaration"
DCC = "dcc"
ID_CARD = "id_card"
KINDS = (DECLARATION, DCC, ID_CARD, UNRECOGNISED)

_DCC_FAMILY = re.compile(r"H[CL][0-9]:")
_DECLARATION_FAMILY = re.compile(r"MD[0-9]+:")


@dataclass(frozen=True)
class Outcome:
    kind: str
    claims: Claims | None
    reasons: tuple[str, ...]
    stages: dict[str, bool]


def detect(text: str) -> str:
    if _DCC_FAMILY.match(text):
        return DCC
    if _DECLARATION_FAMILY.match(text):
        return DECLARATION
    if idcard.looks_like(text):
        return ID_CARD
    return UNRECOGNISED


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
    kind = detect(text)
    claims: Claims | None = None
    try:
        if kind == DCC:
            if not text.startswith(dcc.PREFIX):
                stages.stages["prefix"] = False
                raise CredentialRejected(BAD_PREFIX, "unsupported DCC context identifier")
            claims = dcc.read(text, trust, now, stages, skew=skew)
        elif kind == DECLARATION:
            if not text.startswith(declaration.PREFIX):
                stages.stages["prefix"] = False
                raise CredentialRejected(BAD_PREFIX, "unsupported declaration version")
            claims = declaration.read(text, trust, now, stages, skew=skew)
        elif kind == ID_CARD:
            claims = idcard.read(text, stages)
        else:
            return Outcome(UNRECOGNISED, None, (UNRECOGNISED,), {})
    except CredentialRejected as exc:
        parsed = exc.claims if isinstance(exc.claims, Declaration | Dcc | IdCard) else None
        return Outcome(kind, parsed, (exc.reason,), stages.stages)
    return Outcome(kind, claims, (), stages.stages)


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
            outcome = Outcome(UNRECOGNISED, None, ("internal_error",), {})
        return Credential.from_raw(
            outcome.kind,
            raw,
            valid=outcome.claims is not None and not outcome.reasons,
            reasons=outcome.reasons,
            stages=outcome.stages,
            claims=outcome.claims,
        )
