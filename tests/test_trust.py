"""The trust store: file kinds, strictness, last good store, lenient certificates."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge.errors import TrustError
from edge.scan import testkit
from edge.scan.trust import (
    TrustHolder,
    _eku_from_der,
    extended_key_usage,
    kid_of_certificate,
    kid_of_public_key,
    load_trust,
    trust_list,
)

from .conftest import DCC_VECTORS

VACCINATION_EKU = "1.3.6.1.4.1.1847.2021.1.2"


def certificate(eku: list[str] | None = None) -> x509.Certificate:
    return testkit.certificate(ec.generate_private_key(ec.SECP256R1()), eku=eku)


def test_every_file_kind_loads_and_is_indexed_by_kid(tmp_path: Path) -> None:
    cert = certificate()
    issuer = ed25519.Ed25519PrivateKey.generate().public_key()
    pem_cert = tmp_path / "signer.pem"
    pem_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der_cert = tmp_path / "signer2.der"
    der_cert.write_bytes(certificate().public_bytes(serialization.Encoding.DER))
    pub = tmp_path / "issuer.pub.pem"
    pub.write_bytes(
        issuer.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    listed_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    listing = tmp_path / "trust.json"
    listing.write_text(
        json.dumps(
            trust_list(
                issuers=[("VN-HN", listed_key)],
                revoked_declarations=["ABCD-EFGH"],
                revoked_dcc=["URN:UVCI:01:VN:X"],
                issued_at=datetime(2026, 11, 1, tzinfo=UTC),
            )
        )
    )
    store = load_trust([pem_cert, der_cert, pub, listing])
    assert kid_of_certificate(cert) in store.dcc_signers
    assert len(store.dcc_signers) == 2
    (bare,) = store.issuers[kid_of_public_key(issuer)]
    assert bare.issuer == ""
    (bound,) = store.issuers[kid_of_public_key(listed_key)]
    assert bound.issuer == "VN-HN"
    assert store.revoked_declarations == {"ABCD-EFGH"}
    assert store.revoked_dcc == {"URN:UVCI:01:VN:X"}
    assert store.issued_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert store.describe() == "2 issuer key(s), 2 DCC signer(s), 2 revocation(s)"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "not a trust list"),
        (
            '{"format": "checkpoint-edge-trust-list", "version": 2}',
            "unsupported trust list version",
        ),
        ('{"format": "checkpoint-edge-trust-list", "version": 1, "extra": 1}', "unknown key"),
        (
            '{"format": "checkpoint-edge-trust-list", "version": 1, "issuers": [{"issuer": "X"}]}',
            "issuers\\[0\\].public_key: must be a string",
        ),
        (
            '{"format": "checkpoint-edge-trust-list", "version": 1, '
            '"dcc_signers": [{"certificate": "%%%"}]}',
            "not base64",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nxx\n", "neither a certificate nor a public key"),
        ("just text", "not a trust list, certificate or public key"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(TrustError, match=message) as info:
        load_trust([bad])
    assert str(bad) in str(info.value)


def test_kid_in_a_trust_list_must_match_its_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    doc = trust_list(issuers=[("VN-HN", key)])
    doc["issuers"][0]["kid"] = base64.b64encode(b"12345678").decode()
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustError, match="kid does not match"):
        load_trust([path])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="cannot read"):
        load_trust([tmp_path / "nope.json"])


def test_holder_keeps_the_last_good_store(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_text(json.dumps(trust_list(issuers=[("VN-HN", key)])))
    holder = TrustHolder([path])
    good = holder.reload()
    path.write_text("{broken")
    with pytest.raises(TrustError):
        holder.reload()
    assert holder.store is good
    assert holder.last_error is not None


def test_extended_key_usage_strict_and_lenient_agree() -> None:
    cert = certificate([VACCINATION_EKU, "1.3.6.1.5.5.7.3.2"])
    der = cert.public_bytes(serialization.Encoding.DER)
    assert extended_key_usage(cert) == {VACCINATION_EKU, "1.3.6.1.5.5.7.3.2"}
    assert _eku_from_der(der) == extended_key_usage(cert)
    assert extended_key_usage(certificate()) == set()
    assert _eku_from_der(certificate().public_bytes(serialization.Encoding.DER)) == set()


def test_lenient_reading_of_a_certificate_strict_parsers_refuse() -> None:
    """CO15's signer certificate has an extension cryptography refuses outright."""
    path = DCC_VECTORS / "common" / "CO15.json"
    der = base64.b64decode(json.loads(path.read_text())["TESTCTX"]["CERTIFICATE"])
    cert = x509.load_der_x509_certificate(der)
    with pytest.raises(ValueError, match="asn1"):
        _ = cert.extensions
    assert extended_key_usage(cert) == set()  # read anyway: it names no DCC usage
