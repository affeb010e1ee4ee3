"""Our signed movement and health declaration: ``MD1:`` base45(zlib(COSE_Sign1(CWT))).

The format is specified in ``docs/formats.md``; this module is its reference
implementation: :func:`issue` makes a payload, :func:`read` verifies one, and
:data:`FORMAT` is its entry in the format table (``registry.py``). Stages when
reading: prefix, base45, decompress, decode, verify, fields, validity,
revocation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final

from edge.errors import CredentialRejected
from edge.scan import base45, cbor, cose
from edge.scan.envelope import (
    CWT_CTI,
    CWT_EXP,
    CWT_IAT,
    CWT_ISS,
    StageLog,
    deflate,
    open_text,
    timestamp,
)
from edge.scan.format import Assessment, Claims, Format, Holder, Reading
from edge.scan.reasons import (
    BAD_COMPRESSION,
    BAD_COSE,
    BAD_FIELDS,
    BAD_PREFIX,
    BAD_SIGNATURE,
    DECLARATION_TOO_OLD,
    EXPIRED,
    EXPOSURE,
    FORMAT_NOT_ACCEPTED,
    ISSUER_NOT_ACCEPTED,
    NOT_YET_VALID,
    PROOF_REQUIRED,
    REVOKED,
    SYMPTOMS,
    TOO_LARGE,
    UNKNOWN_KID,
)
from edge.scan.trust import IssuerKey, TrustStore

if TYPE_CHECKING:
    from edge.core.model import Credential

KIND: Final = "declaration"
PREFIX = "MD1:"
CLAIM_DECLARATION = -70001  # private CWT claim holding the declaration body

TRANSPORT_MODES = ("car", "motorbike", "truck", "bus", "bicycle", "foot", "other")
SEXES = ("M", "F", "X")
TEST_RESULTS = {"": "", "N": "negative", "P": "positive"}

_ID_NUMBER = re.compile(r"[0-9]{9}|[0-9]{12}")
_PROVINCE = re.compile(r"[0-9]{2}")
_DISTRICT = re.compile(r"([0-9]{3})?")
_PHONE = re.compile(r"\+?[0-9]{0,15}")
_DECLARATION_ID = re.compile(r"[A-Za-z0-9-]{4,40}")
_ISSUER = re.compile(r"[A-Za-z0-9.-]{1,40}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FAMILY = re.compile(r"MD[0-9]+:")


@dataclass(frozen=True, repr=False)
class Place:
    province: str  # province code (2 digits, Vietnam's administrative codes)
    district: str = ""  # district code (3 digits), optional
    text: str = ""  # free text: commune, street, landmark

    def __repr__(self) -> str:
        return f"Place(province={self.province!r})"

    def plain(self) -> dict[str, str]:
        return {"province": self.province, "district": self.district, "text": self.text}


@dataclass(frozen=True, repr=False)
class Declaration(Claims):
    """Our signed movement and health declaration (``docs/formats.md``)."""

    issuer: str
    issued_at: datetime
    expires_at: datetime
    declaration_id: str
    name: str
    id_number: str
    birth_date: date
    sex: str  # M, F or X
    phone: str
    origin: Place
    destination: Place
    plate: str
    transport: str  # car, motorbike, truck, bus, bicycle, foot, other
    purpose: str
    travel_from: date
    travel_to: date
    symptoms: bool
    exposure: bool
    vaccine_doses: int
    test_result: str  # "negative", "positive" or "" (none declared)
    test_date: date | None

    def __repr__(self) -> str:
        return f"Declaration(issuer={self.issuer!r}, origin={self.origin!r})"


def read(
    text: str, trust: TrustStore, now: datetime, log: StageLog, *, skew: timedelta = timedelta(0)
) -> Declaration:
    """Verify an ``MD1:`` payload; raise CredentialRejected at the first failing stage."""
    if not text.startswith(PREFIX):
        log.stages["prefix"] = False
        raise CredentialRejected(BAD_PREFIX, "unsupported declaration version")
    sign1, claims = open_text(text, PREFIX, log)
    with log.stage("verify"):
        key = verify_signature(sign1, trust)
    with log.stage("fields"):
        decl = from_claims(claims)
        if key.issuer and decl.issuer != key.issuer:
            raise CredentialRejected(BAD_FIELDS, "iss does not match the signing key's issuer")
    try:
        with log.stage("validity"):
            if decl.issued_at > now + skew:
                raise CredentialRejected(NOT_YET_VALID, "issued after the validation time")
            if decl.expires_at < now:
                raise CredentialRejected(EXPIRED, "expired before the validation time")
        with log.stage("revocation"):
            if decl.declaration_id in trust.revoked_declarations:
                raise CredentialRejected(REVOKED, "declaration id is revoked")
    except CredentialRejected as exc:
        exc.claims = decl  # signed and parsed: what it says is still worth recording
        raise
    return decl


def verify_signature(sign1: cose.Sign1, trust: TrustStore) -> IssuerKey:
    kid = sign1.kid
    candidates = trust.issuers.get(kid, ()) if kid is not None else ()
    if not candidates:
        raise CredentialRejected(UNKNOWN_KID, "no trusted issuer key with this kid")
    failure: CredentialRejected | None = None
    for candidate in candidates:
        try:
            cose.verify(sign1, candidate.key)
        except CredentialRejected as exc:
            failure = exc
            continue
        return candidate
    assert failure is not None
    raise failure


def issue(decl: Declaration, key: cose.PrivateKey, kid: bytes) -> str:
    """The ``MD1:`` payload of a declaration, signed with ``key``."""
    validate(decl)
    signed = cose.sign(cbor.dumps(to_claims(decl)), key, kid)
    return PREFIX + base45.encode(deflate(signed))


# -- claims <-> Declaration -------------------------------------------------


def to_claims(decl: Declaration) -> dict[int, Any]:
    return {
        CWT_ISS: decl.issuer,
        CWT_IAT: int(decl.issued_at.timestamp()),
        CWT_EXP: int(decl.expires_at.timestamp()),
        CWT_CTI: decl.declaration_id.encode(),
        CLAIM_DECLARATION: {
            "n": decl.name,
            "i": decl.id_number,
            "b": decl.birth_date.isoformat(),
            "s": decl.sex,
            "p": decl.phone,
            "o": [decl.origin.province, decl.origin.district, decl.origin.text],
            "d": [decl.destination.province, decl.destination.district, decl.destination.text],
            "v": decl.plate,
            "m": decl.transport,
            "u": decl.purpose,
            "f": decl.travel_from.isoformat(),
            "t": decl.travel_to.isoformat(),
            "h": [
                decl.symptoms,
                decl.exposure,
                decl.vaccine_doses,
                {v: k for k, v in TEST_RESULTS.items()}[decl.test_result],
                decl.test_date.isoformat() if decl.test_date else "",
            ],
        },
    }


def from_claims(claims: dict[Any, Any]) -> Declaration:
    body = claims.get(CLAIM_DECLARATION)
    if not isinstance(body, dict):
        raise CredentialRejected(BAD_FIELDS, "declaration body (claim -70001) missing")
    cti = claims.get(CWT_CTI)
    issued_at = timestamp(claims, CWT_IAT)
    expires_at = timestamp(claims, CWT_EXP)
    if not isinstance(cti, bytes) or issued_at is None or expires_at is None:
        raise CredentialRejected(BAD_FIELDS, "cti, iat and exp are required")
    health = body.get("h")
    if not isinstance(health, list) or len(health) != 5:
        raise CredentialRejected(BAD_FIELDS, "h must be a list of 5")
    result = health[3]
    if not isinstance(result, str) or result not in TEST_RESULTS:
        raise CredentialRejected(BAD_FIELDS, "h[3] must be N, P or empty")
    decl = Declaration(
        issuer=_str(claims.get(CWT_ISS), "iss"),
        issued_at=issued_at,
        expires_at=expires_at,
        declaration_id=_decode_id(cti),
        name=_str(body.get("n"), "n"),
        id_number=_str(body.get("i"), "i"),
        birth_date=_date(body.get("b"), "b"),
        sex=_str(body.get("s"), "s"),
        phone=_str(body.get("p"), "p"),
        origin=_place(body.get("o"), "o"),
        destination=_place(body.get("d"), "d"),
        plate=_str(body.get("v"), "v"),
        transport=_str(body.get("m"), "m"),
        purpose=_str(body.get("u"), "u"),
        travel_from=_date(body.get("f"), "f"),
        travel_to=_date(body.get("t"), "t"),
        symptoms=_bool(health[0], "h[0]"),
        exposure=_bool(health[1], "h[1]"),
        vaccine_doses=_int(health[2], "h[2]"),
        test_result=TEST_RESULTS[result],
        test_date=_date(health[4], "h[4]") if health[4] != "" else None,
    )
    validate(decl)
    return decl


def validate(decl: Declaration) -> None:
    """Every field in range; raise ``bad_fields`` naming the first that is not."""
    checks: list[tuple[bool, str]] = [
        (bool(_ISSUER.fullmatch(decl.issuer)), "issuer: 1-40 of A-Z a-z 0-9 . -"),
        (decl.expires_at > decl.issued_at, "expiry must be after issue"),
        (
            bool(_DECLARATION_ID.fullmatch(decl.declaration_id)),
            "declaration id: 4-40 of A-Za-z0-9-",
        ),
        (0 < len(decl.name.strip()) <= 100, "name: 1-100 characters"),
        (bool(_ID_NUMBER.fullmatch(decl.id_number)), "ID number: 12 digits (9 for the old card)"),
        (date(1900, 1, 1) <= decl.birth_date <= decl.issued_at.date(), "birth date out of range"),
        (decl.sex in SEXES, "sex: M, F or X"),
        (bool(_PHONE.fullmatch(decl.phone)), "phone: up to 15 digits, optional +"),
        (len(decl.plate) <= 15, "plate: at most 15 characters"),
        (decl.transport in TRANSPORT_MODES, f"transport: one of {', '.join(TRANSPORT_MODES)}"),
        (len(decl.purpose) <= 100, "purpose: at most 100 characters"),
        (decl.travel_from <= decl.travel_to, "travel dates: from must not be after to"),
        (0 <= decl.vaccine_doses <= 10, "vaccine doses: 0-10"),
        (decl.test_result in TEST_RESULTS.values(), "test result: negative, positive or none"),
        ((decl.test_result == "") == (decl.test_date is None), "test result and date go together"),
        (
            decl.test_date is None or decl.test_date <= decl.issued_at.date(),
            "test date must not be after the declaration was issued",
        ),
    ]
    for place, label in ((decl.origin, "origin"), (decl.destination, "destination")):
        checks += [
            (bool(_PROVINCE.fullmatch(place.province)), f"{label} province: 2 digits"),
            (bool(_DISTRICT.fullmatch(place.district)), f"{label} district: 3 digits or empty"),
            (len(place.text) <= 200, f"{label} text: at most 200 characters"),
        ]
    for ok, message in checks:
        if not ok:
            raise CredentialRejected(BAD_FIELDS, message)


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise CredentialRejected(BAD_FIELDS, f"{name} must be text")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise CredentialRejected(BAD_FIELDS, f"{name} must be true or false")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CredentialRejected(BAD_FIELDS, f"{name} must be an integer")
    return value


def _date(value: Any, name: str) -> date:
    text = _str(value, name)
    if not _DATE.fullmatch(text):  # fromisoformat alone also takes 19900131 and 2026-W48-4
        raise CredentialRejected(BAD_FIELDS, f"{name} must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CredentialRejected(BAD_FIELDS, f"{name} must be a date YYYY-MM-DD") from exc


def _place(value: Any, name: str) -> Place:
    if not isinstance(value, list) or len(value) != 3:
        raise CredentialRejected(BAD_FIELDS, f"{name} must be [province, district, text]")
    return Place(*(_str(v, f"{name}[{i}]") for i, v in enumerate(value)))


def _decode_id(cti: bytes) -> str:
    try:
        return cti.decode("ascii")
    except UnicodeDecodeError as exc:
        raise CredentialRejected(BAD_FIELDS, "cti must be ASCII") from exc


class DeclarationFormat(Format[Declaration]):
    """``MD1:``: signed by a trusted issuer; approves a passage on its own."""

    kind = KIND
    claims_type = Declaration
    signed = True
    authorises = True
    rank = 30
    reasons = (
        BAD_PREFIX, TOO_LARGE, BAD_COMPRESSION, BAD_COSE, UNKNOWN_KID, BAD_SIGNATURE,
        BAD_FIELDS, NOT_YET_VALID, EXPIRED, REVOKED, FORMAT_NOT_ACCEPTED,
        ISSUER_NOT_ACCEPTED, DECLARATION_TOO_OLD, SYMPTOMS, EXPOSURE, PROOF_REQUIRED,
    )  # fmt: skip
    fields = (
        "declaration_id", "id_number", "name", "birth_date", "sex", "phone",
        "origin", "destination", "plate", "transport", "purpose",
    )  # fmt: skip

    def detect(self, text: str) -> bool:
        return bool(_FAMILY.match(text))  # MD2: and later: this format, refused (bad_prefix)

    def read(self, text: str, reading: Reading) -> Declaration:
        return read(text, reading.trust, reading.now, reading.stages, skew=reading.skew)

    def reference(self, claims: Declaration) -> str | None:
        key = f"declaration/{claims.issuer}/{claims.declaration_id}"
        return hashlib.sha256(key.encode()).hexdigest()

    def traveller(self, claims: Declaration) -> dict[str, Any]:
        return {
            "declaration_id": claims.declaration_id,
            "id_number": claims.id_number,
            "name": claims.name,
            "birth_date": claims.birth_date.isoformat(),
            "sex": claims.sex,
            "phone": claims.phone,
            "origin": claims.origin.plain(),
            "destination": claims.destination.plain(),
            "plate": claims.plate,
            "transport": claims.transport,
            "purpose": claims.purpose,
        }

    def holder(self, claims: Declaration) -> Holder:
        return Holder(claims.name, claims.birth_date.isoformat(), (claims.id_number,))

    def proves_health(self, claims: Declaration, ctx: Assessment) -> bool:
        """Declared doses or a recent declared negative test, when the policy lets
        declared health count (``accept_declared_health``)."""
        cfg = ctx.cfg
        if not cfg.accept_declared_health:
            return False
        if claims.vaccine_doses >= cfg.proof_doses:
            return True
        if claims.test_result == "negative" and claims.test_date is not None:
            # counted from the start of the test's day: the earliest it can have been
            taken = datetime.combine(claims.test_date, time(0), tzinfo=UTC)
            return ctx.now - taken <= timedelta(hours=cfg.proof_test_max_age_h)
        return False

    def assess(self, credential: Credential, claims: Declaration, ctx: Assessment) -> None:
        cfg = ctx.cfg
        if not ctx.accepts(KIND):
            ctx.deny.append(FORMAT_NOT_ACCEPTED)
        if cfg.issuers and claims.issuer not in cfg.issuers:
            ctx.deny.append(ISSUER_NOT_ACCEPTED)
        if ctx.now - claims.issued_at > timedelta(hours=cfg.max_declaration_age_h):
            ctx.deny.append(DECLARATION_TOO_OLD)
        if cfg.deny_symptoms and claims.symptoms:
            ctx.deny.append(SYMPTOMS)
        if cfg.deny_exposure and claims.exposure:
            ctx.deny.append(EXPOSURE)
        if claims.origin.province in cfg.proof_zones and not ctx.health_proven():
            ctx.refer_for(PROOF_REQUIRED, "proof")
        ctx.authorise()


FORMAT = DeclarationFormat()
