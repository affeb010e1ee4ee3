"""base45, CBOR and COSE_Sign1: known answers, round trips, and refusals with reasons."""

from __future__ import annotations

import zlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from edge.errors import CredentialRejected
from edge.scan import base45, cbor, cose
from edge.scan.envelope import MAX_INFLATED, inflate

# -- base45 (RFC 9285 examples) --------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
    ],
)
def test_base45_rfc_examples(raw: bytes, text: str) -> None:
    assert base45.encode(raw) == text
    assert base45.decode(text) == raw


def test_base45_round_trip_all_bytes() -> None:
    data = bytes(range(256)) * 3
    assert base45.decode(base45.encode(data)) == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GGW", "group value over 65535"),
        ("ZZ", "over 255"),
        ("A", "impossible length"),
        ("ab", "alphabet"),
    ],
)
def test_base45_refusals(text: str, why: str) -> None:
    with pytest.raises(CredentialRejected, match=why) as info:
        base45.decode(text)
    assert info.value.reason == "bad_base45"


# -- zlib ------------------------------------------------------------------------


def test_inflate_refuses_uncompressed_broken_and_bombs() -> None:
    with pytest.raises(CredentialRejected, match="not zlib") as info:
        inflate(b"\xd2\x84 raw COSE, not compressed")
    assert info.value.reason == "bad_compression"
    packed = zlib.compress(b"x" * 100)
    with pytest.raises(CredentialRejected, match="truncated"):
        inflate(packed[:-6])
    with pytest.raises(CredentialRejected, match="after the zlib stream"):
        inflate(packed + b"junk")
    bomb = zlib.compress(b"\0" * (MAX_INFLATED * 64), 9)
    assert len(bomb) < 4096  # it fits in a QR code...
    with pytest.raises(CredentialRejected) as info:
        inflate(bomb)  # ...but never inflates past the limit
    assert info.value.reason == "too_large"


# -- CBOR ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0,
        23,
        24,
        255,
        65536,
        2**40,
        -1,
        -500,
        b"",
        b"\x00\xff",
        "Nguyễn",
        [1, [2, [3]]],
        {1: "a", "k": b"v", b"b": [True, False, None]},
        cbor.Tag(18, [b"p", {}, b"x", b"s"]),
        1.5,
    ],
)
def test_cbor_round_trip(value: object) -> None:
    assert cbor.loads(cbor.dumps(value)) == value


def test_cbor_known_encodings() -> None:
    # RFC 8949 appendix A
    assert cbor.loads(bytes.fromhex("f93c00")) == 1.0  # half float
    assert cbor.loads(bytes.fromhex("5f42010243030405ff")) == b"\x01\x02\x03\x04\x05"
    assert cbor.loads(bytes.fromhex("9f018202039f0405ffff")) == [1, [2, 3], [4, 5]]
    assert cbor.loads(bytes.fromhex("bf61610161629f0203ffff")) == {"a": 1, "b": [2, 3]}
    assert cbor.loads(bytes.fromhex("f7")) is cbor.UNDEFINED
    assert cbor.dumps({1: -7}) == bytes.fromhex("a10126")


@pytest.mark.parametrize(
    ("data", "reason", "why"),
    [
        ("9b00000000ffffffff", "bad_cose", "larger than the data"),  # array of 2^32 items
        ("5affffffff00", "bad_cose", "past the end"),  # 4 GiB byte string
        ("a20101", "bad_cose", "larger than the data"),  # map missing an entry
        ("a2010101 02".replace(" ", ""), "bad_cose", "duplicate"),
        ("a1800101", "bad_cose", "key of an unsupported type"),
        ("0102", "bad_cose", "after the CBOR item"),
        ("1c", "bad_cose", "reserved"),
        ("ff", "bad_cose", "break"),
        ("62c328", "bad_cose", "not UTF-8"),
        ("f8 20".replace(" ", ""), "bad_cose", "simple value"),
        ("81" * 40 + "00", "too_large", "nesting"),
    ],
)
def test_cbor_refusals(data: str, reason: str, why: str) -> None:
    with pytest.raises(CredentialRejected, match=why) as info:
        cbor.loads(bytes.fromhex(data))
    assert info.value.reason == reason


def test_cbor_item_count_is_bounded() -> None:
    many = cbor.dumps(list(range(5000)))
    with pytest.raises(CredentialRejected, match="too many") as info:
        cbor.loads(many)
    assert info.value.reason == "too_large"


# -- COSE_Sign1 ------------------------------------------------------------------


def signed(payload: bytes, key: cose.PrivateKey, kid: bytes = b"kid-0001") -> bytes:
    return cose.sign(payload, key, kid)


@pytest.mark.parametrize(
    "make", [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate]
)
def test_sign_verify_and_tamper(make: object) -> None:
    key = make()  # type: ignore[operator]
    msg = cose.parse_sign1(signed(b"payload", key))
    assert msg.kid == b"kid-0001"
    assert msg.alg in (cose.ES256, cose.EDDSA)
    cose.verify(msg, key.public_key())
    forged = cose.Sign1(
        msg.protected_raw, msg.protected, msg.unprotected, b"payloaD", msg.signature
    )
    with pytest.raises(CredentialRejected) as info:
        cose.verify(forged, key.public_key())
    assert info.value.reason == "bad_signature"
    other = (
        ec.generate_private_key(ec.SECP256R1())
        if msg.alg == cose.ES256
        else ed25519.Ed25519PrivateKey.generate()
    )
    with pytest.raises(CredentialRejected):
        cose.verify(msg, other.public_key())


def test_ps256_verifies() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    protected = cbor.dumps({cose.HEADER_ALG: cose.PS256, cose.HEADER_KID: b"12345678"})
    tbs = cose.sig_structure(protected, b"data")
    sig = key.sign(
        tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    msg = cose.parse_sign1(cbor.dumps([protected, {}, b"data", sig]))
    cose.verify(msg, key.public_key())


def test_algorithm_must_fit_the_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    msg = cose.parse_sign1(signed(b"p", key))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CredentialRejected, match="does not fit"):
        cose.verify(msg, rsa_key.public_key())


def test_envelopes_tag18_cwt_double_tag_and_untagged() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    tagged = cbor.loads(signed(b"p", key))
    assert isinstance(tagged, cbor.Tag)
    for form in (tagged, cbor.Tag(61, tagged), tagged.value):
        msg = cose.parse_sign1(cbor.dumps(form))
        cose.verify(msg, key.public_key())
    with pytest.raises(CredentialRejected, match="not COSE_Sign1"):
        cose.parse_sign1(cbor.dumps(cbor.Tag(98, tagged.value)))


def test_kid_from_protected_first_then_unprotected() -> None:
    protected = cbor.dumps({cose.HEADER_ALG: cose.ES256, cose.HEADER_KID: b"P"})
    msg = cose.parse_sign1(cbor.dumps([protected, {cose.HEADER_KID: b"U"}, b"", b""]))
    assert msg.kid == b"P"
    msg = cose.parse_sign1(cbor.dumps([cbor.dumps({1: -7}), {cose.HEADER_KID: b"U"}, b"", b""]))
    assert msg.kid == b"U"


@pytest.mark.parametrize(
    "structure",
    [[b"", {}, b""], [{}, {}, b"", b""], [b"", [], b"", b""], [b"", {}, None, b""], "text"],
)
def test_malformed_cose_is_bad_cose(structure: object) -> None:
    with pytest.raises(CredentialRejected) as info:
        cose.parse_sign1(cbor.dumps(structure))
    assert info.value.reason == "bad_cose"
