"""DCCs we sign ourselves: the checks the EU vectors do not cover."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge.scan import cbor, cose
from edge.scan.credentials import Verifier, verify_payload
from edge.scan.testkit import NOW, certificate, dcc_claims, sign_dcc, wrap
from edge.scan.trust import DccSigner, TrustStore, kid_of_certificate

VACCINATION = "1.3.6.1.4.1.1847.2021.1.2"
TEST = "1.3.6.1.4.1.0.1847.2021.1.1"  # the alternative spelling


def signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, **cert: object) -> TrustStore:
    c = certificate(key, **cert)  # type: ignore[arg-type]
    kid = kid_of_certificate(c)
    return TrustStore(dcc_signers={kid: (DccSigner(kid, c),)})


def kid_of(trust: TrustStore) -> bytes:
    (kid,) = trust.dcc_signers
    return kid


def pcr_entry(sampled: str) -> dict[str, object]:
    """A negative PCR test entry sampled at ``sampled``."""
    return {"tg": "840539006", "tt": "LP6464-4", "sc": sampled, "tr": "260415000",
            "co": "VN", "is": "MoH", "ci": "URN:UVCI:01:VN:T1"}  # fmt: skip


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def check(text: str, trust: TrustStore) -> tuple[str, ...]:
    return verify_payload(text.encode(), trust, NOW).reasons


def test_es256_and_ps256_dccs_verify(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    assert check(sign_dcc(dcc_claims(), key, kid_of(trust)), trust) == ()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_trust = signer(rsa_key)
    assert check(sign_dcc(dcc_claims(), rsa_key, kid_of(rsa_trust)), rsa_trust) == ()


def test_every_certificate_sharing_a_kid_is_tried(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    kid = kid_of(trust)
    impostor = certificate(ec.generate_private_key(ec.SECP256R1()))
    (real,) = trust.dcc_signers[kid]
    both = TrustStore(dcc_signers={kid: (DccSigner(kid, impostor), real)})
    assert check(sign_dcc(dcc_claims(), key, kid), both) == ()


def test_key_usage_restricts_what_a_signer_may_sign(key: ec.EllipticCurvePrivateKey) -> None:
    tests_only = signer(key, eku=[TEST])
    kid = kid_of(tests_only)
    assert check(sign_dcc(dcc_claims(), key, kid), tests_only) == ("wrong_key_usage",)
    test_entry = pcr_entry("2026-11-25T08:00:00Z")
    assert check(sign_dcc(dcc_claims(test_entry, kind="t"), key, kid), tests_only) == ()
    vaccinations = signer(key, eku=[VACCINATION])
    assert check(sign_dcc(dcc_claims(), key, kid_of(vaccinations)), vaccinations) == ()


def test_dcc_validity_and_signer_validity(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    kid = kid_of(trust)
    expired = dcc_claims(iat=NOW - timedelta(days=400), exp=NOW - timedelta(days=1))
    assert check(sign_dcc(expired, key, kid), trust) == ("expired",)
    assert check(sign_dcc(dcc_claims(exp=None), key, kid), trust) == ("bad_fields",)
    assert check(sign_dcc(dcc_claims(iat=None), key, kid), trust) == ("bad_fields",)
    old_signer = signer(
        key, not_before=NOW - timedelta(days=900), not_after=NOW - timedelta(days=30)
    )
    late = sign_dcc(dcc_claims(), key, kid_of(old_signer))  # issued 10 days ago
    assert check(late, old_signer) == ("expired",)  # after its signer certificate expired


def test_a_sample_time_without_a_time_zone_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    entry = pcr_entry("2026-11-25T08:00:00")
    assert check(sign_dcc(dcc_claims(entry, kind="t"), key, kid_of(trust)), trust) == (
        "bad_fields",
    )


def test_revoked_certificate_id(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    revoked = replace(trust, revoked_dcc=frozenset({"URN:UVCI:01:VN:0123456789ABCDEF#X"}))
    outcome = verify_payload(sign_dcc(dcc_claims(), key, kid_of(trust)).encode(), revoked, NOW)
    assert outcome.reasons == ("revoked",)
    assert outcome.claims is not None  # signed: still recorded


def test_alg_must_be_an_integer_in_either_header(key: ec.EllipticCurvePrivateKey) -> None:
    trust = signer(key)
    kid = kid_of(trust)
    for alg in ([1], {"x": 1}, -7.0, True, "ES256"):
        sign1 = cbor.dumps(
            cbor.Tag(18, [b"", {cose.HEADER_ALG: alg, cose.HEADER_KID: kid}, b"", b""])
        )
        assert verify_payload(wrap("HC1:", sign1), trust, NOW).reasons == ("bad_cose",), alg
    mismatch = cbor.dumps({cose.HEADER_ALG: cose.ES256})
    sign1 = cbor.dumps([mismatch, {cose.HEADER_ALG: cose.PS256, cose.HEADER_KID: kid}, b"", b""])
    assert verify_payload(wrap("HC1:", sign1), trust, NOW).reasons == ("bad_cose",)


def test_re_encodings_of_one_certificate_share_its_ref(key: ec.EllipticCurvePrivateKey) -> None:
    """Replay checks must not be fooled by a copy with other bytes (another zlib level,
    another tag, a changed unprotected header)."""
    trust = signer(key)
    text = sign_dcc(dcc_claims(), key, kid_of(trust))
    verify = Verifier(lambda: trust, clock=lambda: NOW).read
    original = verify(text.encode())
    from edge.scan import base45, envelope

    sign1 = cbor.loads(envelope.inflate(base45.decode(text[4:])))
    untagged = wrap("HC1:", cbor.dumps(sign1.value))
    copy = verify(untagged)
    assert copy.valid
    assert copy.sha256 != original.sha256
    assert copy.ref == original.ref is not None
