"""EU Digital COVID Certificate (``HC1:``), also Vietnam's vaccine passport format.

``HC1:`` base45 -> zlib -> COSE_Sign1 (ES256 or PS256) -> CWT -> ``hcert``.
Stages, in order: prefix, base45, decompress, decode, verify, fields,
validity, key_usage, revocation. Every signer certificate sharing the ``kid``
is tried. A signer certificate whose extended key usage names DCC types may
sign only those types (both OID spellings in use are recognised).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from edge.errors import CredentialRejected, TrustError
from edge.scan import cbor, cose
from edge.scan.claims import Dcc
from edge.scan.envelope import CWT_EXP, CWT_IAT, CWT_ISS, StageLog, open_cose, open_text, timestamp
from edge.scan.reasons import (
    BAD_COSE,
    BAD_FIELDS,
    BAD_SIGNATURE,
    EXPIRED,
    NOT_YET_VALID,
    REVOKED,
    UNKNOWN_KID,
    WRONG_KEY_USAGE,
)
from edge.trust import DccSigner, TrustStore, extended_key_usage

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


def read(
    text: str, trust: TrustStore, now: datetime, log: StageLog, *, skew: timedelta = timedelta(0)
) -> Dcc:
    """Verify an ``HC1:`` payload; raise CredentialRejected at the first failing stage."""
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
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise CredentialRejected(BAD_FIELDS, "sample time has no time zone")
            return parsed
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise CredentialRejected(BAD_FIELDS, "sample time is not a date-time") from exc
    raise CredentialRejected(BAD_FIELDS, "sample time is not a date-time")
