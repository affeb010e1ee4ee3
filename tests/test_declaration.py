"""Our movement declaration: issue -> QR image -> decode -> verify, and every tampering."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge.credtools import render_qr
from edge.errors import CredentialRejected
from edge.scan import base45, cbor, cose, declaration
from edge.scan.credentials import Verifier, verify_payload
from edge.scan.declaration import Declaration, Place
from edge.scan.decoder import PyzbarDecoder, ZxingDecoder
from edge.scan.envelope import StageLog, deflate
from edge.scan.trust import IssuerKey, TrustStore, kid_of_public_key

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

LONG_NAME = "Tôn Nữ Hoàng Thị Thu Nguyệt Phương Thảo"
LONG_ADDRESS = (
    "Số 123/45 Đường Nguyễn Thị Minh Khai, Khu phố 7, Phường Bến Nghé, "
    "Quận 1, Thành phố Hồ Chí Minh"
)


def make_declaration(now: datetime = NOW, **changes: object) -> Declaration:
    """A full declaration, valid at `now`: every date in it is derived from `now`.

    Tests that verify against the wall clock (a running kiosk) pass
    ``now=datetime.now(UTC)``; the others keep the fixed ``NOW`` they verify at.
    """
    today = now.date()
    decl = Declaration(
        issuer="VN-HN",
        issued_at=now - timedelta(hours=2),
        expires_at=now + timedelta(hours=70),
        declaration_id="ABCD-EFGH-JKLM",
        name=LONG_NAME,
        id_number="079190012345",
        birth_date=date(1990, 1, 31),
        sex="F",
        phone="+84901234567",
        origin=Place("79", "760", LONG_ADDRESS),
        destination=Place(
            "01", "001", "Số 45 Phố Lý Thường Kiệt, Phường Hàng Bài, Quận Hoàn Kiếm, Hà Nội"
        ),
        plate="51H-123.45",
        transport="car",
        purpose="Thăm gia đình ở quê",
        travel_from=today,
        travel_to=today + timedelta(days=4),
        symptoms=False,
        exposure=False,
        vaccine_doses=2,
        test_result="negative",
        test_date=today - timedelta(days=1),
    )
    return replace(decl, **changes)  # type: ignore[arg-type]


KEYS: dict[str, Callable[[], object]] = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.fixture(params=list(KEYS))
def issuer(request: pytest.FixtureRequest) -> tuple[object, bytes, TrustStore]:
    key = KEYS[request.param]()
    public = key.public_key()  # type: ignore[attr-defined]
    kid = kid_of_public_key(public)
    trust = TrustStore(issuers={kid: (IssuerKey(kid, "VN-HN", public),)})
    return key, kid, trust


def read(
    payload: str | bytes, trust: TrustStore, now: datetime = NOW
) -> tuple[str, tuple[str, ...]]:
    raw = payload.encode() if isinstance(payload, str) else payload
    outcome = verify_payload(raw, trust, now)
    return outcome.kind, outcome.reasons


def test_round_trip_through_a_rendered_qr_image(
    issuer: tuple[object, bytes, TrustStore], tmp_path: Path
) -> None:
    key, kid, trust = issuer
    decl = make_declaration()
    payload = declaration.issue(decl, key, kid)  # type: ignore[arg-type]
    assert payload.startswith("MD1:")
    png = tmp_path / "decl.png"
    version = render_qr(payload, png, None, scale=4)
    assert version <= 18  # a long name and address still fit a phone screen (docs/formats.md)
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    for decoder in (ZxingDecoder(), PyzbarDecoder()):
        (raw,) = decoder.decode(np.ascontiguousarray(image))
        credential = Verifier(lambda: trust, clock=lambda: NOW).read(raw)
        assert credential.kind == "declaration"
        assert credential.valid, credential.reasons
        assert credential.claims == decl  # every field, Vietnamese text included
        assert credential.claims.declaration_id == "ABCD-EFGH-JKLM"
        assert LONG_NAME not in repr(credential)


def test_read_at_30_cm_by_a_720p_camera(
    issuer: tuple[object, bytes, TrustStore], tmp_path: Path
) -> None:
    """A phone screen 30 cm from a 720p Camera Module 3 gives about 2.3 pixels per module
    for a 6 cm code (docs/formats.md): blurred, dimmed, noisy, both decoders read it."""
    key, kid, _ = issuer
    payload = declaration.issue(make_declaration(), key, kid)  # type: ignore[arg-type]
    render_qr(payload, tmp_path / "big.png", None, scale=10)
    big = cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_GRAYSCALE)
    modules = big.shape[0] // 10
    size = round(modules * 2.3)
    small = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    frame = np.full((720, 1280), 90.0, np.float32)
    frame[200 : 200 + size, 500 : 500 + size] = small * 0.75 + 40  # a screen: grey, not white
    frame = cv2.GaussianBlur(frame, (0, 0), 0.7) + np.random.default_rng(1).normal(
        0, 4, frame.shape
    )
    frame_u8 = np.clip(frame, 0, 255).astype(np.uint8)
    for decoder in (ZxingDecoder(), PyzbarDecoder()):
        assert decoder.decode(frame_u8) == [payload.encode()], decoder.name


# -- tampering -------------------------------------------------------------------


def unpack(payload: str) -> list[object]:
    return cbor.loads(zlib.decompress(base45.decode(payload[4:]))).value  # type: ignore[no-any-return]


def pack(parts: list[object]) -> str:
    return "MD1:" + base45.encode(zlib.compress(cbor.dumps(cbor.Tag(18, parts))))


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_every_tampering_is_refused_with_its_reason(
    issuer: tuple[object, bytes, TrustStore],
) -> None:
    key, kid, trust = issuer
    good = declaration.issue(make_declaration(), key, kid)  # type: ignore[arg-type]
    assert read(good, trust) == ("declaration", ())
    protected, unprotected, payload, signature = unpack(good)
    assert isinstance(signature, bytes)
    assert isinstance(payload, bytes)
    assert isinstance(protected, bytes)

    assert read(pack([protected, unprotected, payload, flip(signature, 10)]), trust)[1] == (
        "bad_signature",
    )
    assert read(pack([protected, unprotected, flip(payload, 40), signature]), trust)[1] in (
        ("bad_signature",),
        ("bad_cose",),  # the flip may break the CBOR first
    )
    other_kid = cbor.dumps({**cbor.loads(protected), 4: b"\x00" * 8})
    assert read(pack([other_kid, unprotected, payload, signature]), trust)[1] == ("unknown_kid",)
    # the kid moved to the unprotected header: the signature no longer covers the same bytes
    no_kid = cbor.dumps({1: cbor.loads(protected)[1]})
    assert read(pack([no_kid, {4: kid}, payload, signature]), trust)[1] == ("bad_signature",)

    later = NOW + timedelta(hours=71)
    assert read(good, trust, later)[1] == ("expired",)
    earlier = NOW - timedelta(hours=3)
    assert read(good, trust, earlier)[1] == ("not_yet_valid",)

    wrong_key = KEYS["ES256"]()
    forged = declaration.issue(make_declaration(), wrong_key, kid)  # type: ignore[arg-type]
    assert read(forged, trust)[1] == ("bad_signature",)

    revoked = replace(trust, revoked_declarations=frozenset({"ABCD-EFGH-JKLM"}))
    assert read(good, revoked)[1] == ("revoked",)


def test_expired_declaration_keeps_its_claims_for_the_record(
    issuer: tuple[object, bytes, TrustStore],
) -> None:
    key, kid, trust = issuer
    payload = declaration.issue(make_declaration(), key, kid)  # type: ignore[arg-type]
    outcome = verify_payload(payload.encode(), trust, NOW + timedelta(days=10))
    assert outcome.reasons == ("expired",)
    assert isinstance(outcome.claims, Declaration)
    forged = declaration.issue(make_declaration(), KEYS["EdDSA"](), kid)  # type: ignore[arg-type]
    assert verify_payload(forged.encode(), trust, NOW).claims is None  # never trust unsigned claims


def test_issuer_must_match_the_keys_issuer(issuer: tuple[object, bytes, TrustStore]) -> None:
    key, kid, trust = issuer
    payload = declaration.issue(make_declaration(issuer="VN-SG"), key, kid)  # type: ignore[arg-type]
    assert read(payload, trust)[1] == ("bad_fields",)


def test_other_versions_and_prefixes() -> None:
    assert read("MD2:ABC", TrustStore()) == ("declaration", ("bad_prefix",))
    assert read("MD1:abc", TrustStore()) == ("declaration", ("bad_base45",))
    assert read("MD1:" + base45.encode(b"raw"), TrustStore()) == (
        "declaration",
        ("bad_compression",),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name"),
        ({"id_number": "12345"}, "ID number"),
        ({"sex": "Q"}, "sex"),
        ({"origin": Place("7", "", "")}, "origin province"),
        ({"travel_to": NOW.date() - timedelta(days=25)}, "travel dates"),
        ({"test_date": None}, "test result and date"),
        ({"transport": "rocket"}, "transport"),
        ({"birth_date": NOW.date() + timedelta(days=30)}, "birth date"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(CredentialRejected, match=message) as info:
        declaration.validate(make_declaration(**change))
    assert info.value.reason == "bad_fields"


def test_stage_log_of_a_good_declaration(issuer: tuple[object, bytes, TrustStore]) -> None:
    key, kid, trust = issuer
    log = StageLog()
    declaration.read(declaration.issue(make_declaration(), key, kid), trust, NOW, log)  # type: ignore[arg-type]
    assert list(log.stages) == [
        "prefix",
        "base45",
        "decompress",
        "decode",
        "verify",
        "fields",
        "validity",
        "revocation",
    ]
    assert all(log.stages.values())


@pytest.mark.parametrize(
    "change",
    [
        {"origin": Place("79\n", "", "")},  # '$' would match before a newline
        {"origin": Place("\u0667\u0669", "", "")},  # Arabic-Indic 7 9: digits to \\d
        {"origin": Place("\uff17\uff19", "", "")},  # so are full-width ones
        {"declaration_id": "ABCD-EFGH\n"},
        {"id_number": "07919001234\n"},
    ],
)
def test_lookalike_digits_and_trailing_newlines_are_bad_fields(change: dict[str, object]) -> None:
    """Else an issuer built on this code would sign an origin "79\\n" that no proof zone
    "79" matches, or a declaration id no revocation list names."""
    with pytest.raises(CredentialRejected) as info:
        declaration.validate(make_declaration(**change))
    assert info.value.reason == "bad_fields"


def test_dates_must_be_written_yyyy_mm_dd(issuer: tuple[object, bytes, TrustStore]) -> None:
    key, kid, trust = issuer
    claims = declaration.to_claims(make_declaration())
    claims[declaration.CLAIM_DECLARATION]["b"] = "19900131"  # fromisoformat alone takes it
    signed = cose.sign(cbor.dumps(claims), key, kid)  # type: ignore[arg-type]
    assert read("MD1:" + base45.encode(deflate(signed)), trust)[1] == ("bad_fields",)


def test_a_test_dated_after_the_declaration_is_bad_fields() -> None:
    with pytest.raises(CredentialRejected, match="test date"):
        declaration.validate(make_declaration(test_date=NOW.date() + timedelta(days=5)))
