"""EU Digital COVID Certificate (``HC1:``), also Vietnam's vaccine passport format.

``HC1:`` base45 -> zlib -> COSE_Sign1 (ES256 or PS256) -> CWT -> ``hcert``.
Stages, in order: prefix, base45, decompress, decode, verify, fields,
validity, key_usage, revocation. Every signer certificate sharing the ``kid``
is tried. A signer certificate whose extended key usage names DCC types may
sign only those types (both OID spellings in use are recognised). :data:`FORMAT`
is its entry in the format table (``registry.py``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509

from edge.core.times import parse_iso
from edge.errors import CredentialRejected, TrustError
from edge.rules.rules import OF_ENTRY
from edge.scan import cbor, cose
from edge.scan.envelope import CWT_EXP, CWT_IAT, CWT_ISS, StageLog, open_cose, open_text, timestamp
from edge.scan.format import Assessment, Claims, Format, Holder, Reading
from edge.scan.reasons import (
    BAD_COMPRESSION,
    BAD_COSE,
    BAD_FIELDS,
    BAD_PREFIX,
    BAD_SIGNATURE,
    DCC_HOLDER_MISMATCH,
    DCC_ONLY,
    EXPIRED,
    NOT_YET_VALID,
    RECOVERY_NOT_VALID,
    REVOKED,
    RULE_ERROR,
    RULE_FAILED,
    RULES_UNAVAILABLE,
    TEST_POSITIVE,
    TEST_TOO_OLD,
    TOO_LARGE,
    UNKNOWN_KID,
    VACCINATION_INCOMPLETE,
    WRONG_KEY_USAGE,
    of_rule,
)
from edge.scan.trust import DccSigner, TrustStore, extended_key_usage

if TYPE_CHECKING:
    from edge.config import PolicyConfig
    from edge.core.model import Credential

KIND: Final = "dcc"
PREFIX = "HC1:"
CWT_HCERT = -260
TEST_NOT_DETECTED = "260415000"

# Extended key usage OIDs of DCC signer certificates, by DCC type.
_EKU = {
    "t": {"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"},
    "v": {"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"},
    "r": {"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"},
}
_ALL_DCC_EKU = set().union(*_EKU.values())
_FAMILY = re.compile(r"H[CL][0-9]:")


@dataclass(frozen=True, repr=False)
class Dcc(Claims):
    """An EU Digital COVID Certificate (the payload of an ``HC1:`` code)."""

    issuer: str  # CWT iss: ISO 3166-1 country
    issued_at: datetime | None
    expires_at: datetime | None
    type: str  # "v" vaccination, "t" test, "r" recovery
    certificate_id: str  # UVCI (``ci``)
    name: str
    birth_date: str  # as written: YYYY, YYYY-MM or YYYY-MM-DD
    dose: int = 0  # v: dose number
    doses: int = 0  # v: total doses in the series
    vaccinated_on: str = ""  # v: date of the dose
    test_negative: bool = False  # t: result "not detected"
    sampled_at: datetime | None = None  # t: sample collection time
    recovery_from: str = ""  # r: valid from
    recovery_until: str = ""  # r: valid until
    # the whole DCC payload as JSON data: what business rules (CertLogic) read
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __repr__(self) -> str:
        return f"Dcc(issuer={self.issuer!r}, type={self.type!r})"


def read(
    text: str, trust: TrustStore, now: datetime, log: StageLog, *, skew: timedelta = timedelta(0)
) -> Dcc:
    """Verify an ``HC1:`` payload; raise CredentialRejected at the first failing stage."""
    if not text.startswith(PREFIX):
        log.stages["prefix"] = False
        raise CredentialRejected(BAD_PREFIX, "unsupported DCC context identifier")
    sign1, claims = open_text(text, PREFIX, log)
    return check(sign1, claims, trust, now, log, skew=skew)


def read_cose(
    data: bytes, trust: TrustStore, now: datetime, log: StageLog, *, skew: timedelta = timedelta(0)
) -> Dcc:
    """Verify from the COSE bytes on (for test vectors that start there)."""
    sign1, claims = open_cose(data, log)
    return check(sign1, claims, trust, now, log, skew=skew)


def check(
    sign1: cose.Sign1,
    claims: dict[Any, Any],
    trust: TrustStore,
    now: datetime,
    log: StageLog,
    *,
    skew: timedelta = timedelta(0),
) -> Dcc:
    with log.stage("decode"):
        payload = hcert_payload(claims)
    with log.stage("verify"):
        signer = verify_signature(sign1, trust)
    with log.stage("fields"):
        dcc = parse_claims(claims, payload)
    try:
        with log.stage("validity"):
            if dcc.issued_at is not None and dcc.issued_at > now + skew:
                raise CredentialRejected(NOT_YET_VALID, "issued after the validation time")
            if dcc.expires_at is not None and dcc.expires_at < now:
                raise CredentialRejected(EXPIRED, "expired before the validation time")
            _signed_while_signer_valid(signer, dcc)
        with log.stage("key_usage"):
            check_key_usage(signer.certificate, dcc.type)
        with log.stage("revocation"):
            if dcc.certificate_id in trust.revoked_dcc:
                raise CredentialRejected(REVOKED, "certificate identifier is revoked")
    except CredentialRejected as exc:
        exc.claims = dcc  # signed and parsed: what it says is still worth recording
        raise
    return dcc


def _signed_while_signer_valid(signer: DccSigner, dcc: Dcc) -> None:
    """A DCC issued outside its signer certificate's validity is not to be trusted."""
    if dcc.issued_at is None:
        return
    cert = signer.certificate
    if dcc.issued_at > cert.not_valid_after_utc:
        raise CredentialRejected(EXPIRED, "issued after the signer certificate expired")
    if dcc.issued_at < cert.not_valid_before_utc:
        raise CredentialRejected(NOT_YET_VALID, "issued before the signer certificate was valid")


def verify_signature(sign1: cose.Sign1, trust: TrustStore) -> DccSigner:
    """The signer whose certificate verifies the signature (any of those sharing the kid)."""
    kid = sign1.kid
    candidates = trust.dcc_signers.get(kid, ()) if kid is not None else ()
    if not candidates:
        raise CredentialRejected(UNKNOWN_KID, "no trusted DCC signer with this kid")
    failure: CredentialRejected | None = None
    for signer in candidates:
        key = signer.certificate.public_key()
        if not isinstance(key, cose.PublicKey):
            continue
        try:
            cose.verify(sign1, key)
        except CredentialRejected as exc:
            failure = exc
            continue
        return signer
    raise failure or CredentialRejected(BAD_SIGNATURE, "no usable signer key")


def check_key_usage(cert: x509.Certificate, dcc_type: str) -> None:
    try:
        named = extended_key_usage(cert) & _ALL_DCC_EKU
    except TrustError as exc:
        raise CredentialRejected(WRONG_KEY_USAGE, str(exc)) from exc
    if named and not named & _EKU[dcc_type]:
        raise CredentialRejected(WRONG_KEY_USAGE, f"signer may not sign type {dcc_type!r}")


def hcert_payload(claims: dict[Any, Any]) -> dict[Any, Any]:
    """The DCC payload map inside the CWT (claim -260, key 1): part of the CBOR structure."""
    hcert = claims.get(CWT_HCERT)
    payload = hcert.get(1) if isinstance(hcert, dict) else None
    if not isinstance(payload, dict):
        raise CredentialRejected(BAD_COSE, "no hcert payload (CWT claim -260 / 1)")
    return payload


def parse_claims(claims: dict[Any, Any], payload: dict[Any, Any]) -> Dcc:
    kinds = [k for k in ("v", "t", "r") if k in payload]
    if len(kinds) != 1:
        raise CredentialRejected(BAD_FIELDS, "exactly one of v, t, r is required")
    kind = kinds[0]
    entries = payload[kind]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries or [None]):
        raise CredentialRejected(BAD_FIELDS, f"{kind} must hold entries")
    # The schema wants one entry; some issuers (the SK test vectors) list every
    # dose. The last entry is the latest statement.
    entry = entries[-1]
    name = payload.get("nam")
    if not isinstance(name, dict):
        raise CredentialRejected(BAD_FIELDS, "nam missing")
    if timestamp(claims, CWT_EXP) is None or timestamp(claims, CWT_IAT) is None:
        raise CredentialRejected(BAD_FIELDS, "a DCC must carry iat and exp")
    issuer = claims.get(CWT_ISS, "")
    fields: dict[str, Any] = {
        "issuer": issuer if isinstance(issuer, str) else "",
        "issued_at": timestamp(claims, CWT_IAT),
        "expires_at": timestamp(claims, CWT_EXP),
        "type": kind,
        "certificate_id": _text(entry, "ci", required=True),
        "name": " ".join(p for p in (_text(name, "gn"), _text(name, "fn")) if p),
        "birth_date": _text(payload, "dob"),
        # what the rules read: the DCC with the entry the kiosk judges and shows only
        "payload": json_data({**payload, kind: [entry]}),
    }
    if kind == "v":
        fields.update(
            dose=_int(entry, "dn"), doses=_int(entry, "sd"), vaccinated_on=_text(entry, "dt")
        )
    elif kind == "t":
        fields.update(
            test_negative=_text(entry, "tr") == TEST_NOT_DETECTED,
            sampled_at=_datetime(entry.get("sc")),
        )
    else:
        fields.update(recovery_from=_text(entry, "df"), recovery_until=_text(entry, "du"))
    return Dcc(**fields)


def json_data(value: Any, depth: int = 0) -> Any:
    """A CBOR value as the JSON data it stands for (what CertLogic reads): maps keep
    their text keys; a date tag (0 and 1004: text, 1: seconds since the epoch) is its
    date text; byte strings, other tags and CBOR-only values become null."""
    if depth > 16:
        return None
    if isinstance(value, cbor.Tag):
        return _tag_data(value)
    if isinstance(value, dict):
        return {k: json_data(v, depth + 1) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list | tuple):
        return [json_data(v, depth + 1) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, str | bool | int) else None


def _tag_data(tag: cbor.Tag) -> str | None:
    if tag.tag in (0, 1004) and isinstance(tag.value, str):
        return tag.value
    if tag.tag != 1 or not isinstance(tag.value, int | float) or not math.isfinite(tag.value):
        return None
    try:
        when = datetime.fromtimestamp(tag.value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat().replace("+00:00", "Z")


def decode_payload(text: str) -> tuple[dict[Any, Any], dict[str, Any]]:
    """(CWT claims, the DCC payload as JSON data) of an ``HC1:`` text, the signature
    NOT verified: for rule authors trying rules on a certificate."""
    log = StageLog()
    _, claims = open_text(text, PREFIX, log)
    return claims, json_data(hcert_payload(claims))


def _text(obj: dict[Any, Any], key: str, required: bool = False) -> str:
    value = obj.get(key)
    if isinstance(value, cbor.Tag):  # e.g. tag 1004 (full-date)
        value = value.value
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise CredentialRejected(BAD_FIELDS, f"{key} must be text")
    return value


def _int(obj: dict[Any, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 100:
        raise CredentialRejected(BAD_FIELDS, f"{key} must be a small integer")
    return value


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, cbor.Tag):  # tag 0 (date-time text) or 1 (epoch)
        value = value.value
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return parse_iso(value)  # without a zone: not a date-time either
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise CredentialRejected(BAD_FIELDS, "sample time is not a date-time") from exc
    raise CredentialRejected(BAD_FIELDS, "sample time is not a date-time")


def shortfalls(dcc: Dcc, cfg: PolicyConfig, now: datetime) -> list[str]:
    """Why a (valid) DCC does not prove vaccination, a recent negative test or recovery."""
    if dcc.type == "v":
        complete = dcc.dose >= cfg.proof_doses or (dcc.doses > 0 and dcc.dose >= dcc.doses)
        return [] if complete else [VACCINATION_INCOMPLETE]
    if dcc.type == "t":
        if not dcc.test_negative:
            return [TEST_POSITIVE]
        sampled = dcc.sampled_at
        max_age = timedelta(hours=cfg.proof_test_max_age_h)
        skew = timedelta(seconds=cfg.clock_skew_s)
        if sampled is None or not now - max_age <= sampled <= now + skew:
            return [TEST_TOO_OLD]
        return []
    try:
        valid_from = date.fromisoformat(dcc.recovery_from)
        valid_until = date.fromisoformat(dcc.recovery_until)
    except ValueError:
        return [RECOVERY_NOT_VALID]
    return [] if valid_from <= now.date() <= valid_until else [RECOVERY_NOT_VALID]


class DccFormat(Format[Dcc]):
    """``HC1:``: signed by a trusted DCC signer; proof of health for a declaration, and
    a passage on its own only when ``[policy] accept`` names ``dcc``."""

    kind = KIND
    claims_type = Dcc
    signed = True
    authorises = True
    rank = 10
    reasons = (
        BAD_PREFIX, TOO_LARGE, BAD_COMPRESSION, BAD_COSE, UNKNOWN_KID, BAD_SIGNATURE,
        BAD_FIELDS, NOT_YET_VALID, EXPIRED, WRONG_KEY_USAGE, REVOKED, DCC_ONLY,
        VACCINATION_INCOMPLETE, TEST_POSITIVE, TEST_TOO_OLD, RECOVERY_NOT_VALID,
        DCC_HOLDER_MISMATCH, RULE_FAILED, RULE_ERROR, RULES_UNAVAILABLE,
    )  # fmt: skip
    fields = ("name", "birth_date", "dcc_id")
    mismatch = DCC_HOLDER_MISMATCH
    alone = DCC_ONLY

    def detect(self, text: str) -> bool:
        return bool(_FAMILY.match(text))  # HCn: and HLn: of other versions: refused

    def labels(self) -> tuple[str, ...]:
        return tuple(n for n in super().labels() if n != "payload")  # shown field by field

    def read(self, text: str, reading: Reading) -> Dcc:
        return read(text, reading.trust, reading.now, reading.stages, skew=reading.skew)

    def reference(self, claims: Dcc) -> str | None:
        return hashlib.sha256(f"dcc/{claims.certificate_id}".encode()).hexdigest()

    def traveller(self, claims: Dcc) -> dict[str, Any]:
        return {
            "name": claims.name,
            "birth_date": claims.birth_date,
            "dcc_id": claims.certificate_id,
        }

    def holder(self, claims: Dcc) -> Holder:
        return Holder(claims.name, claims.birth_date)

    def judged(self, claims: Dcc, ctx: Assessment) -> tuple[list[str], list[str]] | None:
        """(failed, errors) as reason codes by the business rules in use (``rule_failed:<Id>``,
        ``rule_error:<Id>``), or None when rules are off: the fixed [policy] keys judge."""
        book = ctx.rules
        if book is None:
            return None
        if book.broken:
            return [], [RULES_UNAVAILABLE]
        if id(claims) not in ctx.judged:
            ctx.judged[id(claims)] = book.judge(
                claims.type, claims.issuer, claims.payload, ctx.now,
                iat=claims.issued_at, exp=claims.expires_at,
            )  # fmt: skip
        results = ctx.judged[id(claims)]
        failed = [of_rule(RULE_FAILED, r.rule.identifier) for r in results if r.outcome == "failed"]
        errors = [of_rule(RULE_ERROR, r.rule.identifier) for r in results if r.outcome == "error"]
        certificate_type = OF_ENTRY.get(claims.type)
        if not any(
            r.rule.type == "Acceptance" and r.rule.certificate_type == certificate_type
            for r in results
        ):
            # no rule of the arrival country says what this kind of certificate must
            # show (another country's rule set, rules not yet in force): never a pass
            errors.append(RULES_UNAVAILABLE)
        return failed, errors

    def proves_health(self, claims: Dcc, ctx: Assessment) -> bool:
        found = self.judged(claims, ctx)
        if found is None:
            return not shortfalls(claims, ctx.cfg, ctx.now)
        return found == ([], [])

    def assess(self, credential: Credential, claims: Dcc, ctx: Assessment) -> None:
        others = [c for c in ctx.shown if c is not credential and ctx.formats[c.kind].authorises]
        if others:
            return  # proof of health for the code that carries the passage
        found = self.judged(claims, ctx)
        errors: list[str] = []
        if found is None:
            failed = shortfalls(claims, ctx.cfg, ctx.now)
        else:
            failed, errors = found
        if ctx.accepts(KIND):
            ctx.deny.extend(failed)  # it must stand on its own
            ctx.refer.extend(errors)  # never an approval on a rule that could not run
            if not failed and not errors:
                ctx.authorise()
        else:
            ctx.refer.extend([*failed, *errors])  # (and dcc_only: the officer sees why)


FORMAT = DccFormat()
