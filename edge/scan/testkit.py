"""Keys, certificates and signed codes for tests, fuzzing and benchmarks.

Nothing here runs in the kiosk. It makes what conformance material cannot
provide on demand: DCCs and declarations signed by keys the caller trusts,
with any content, and the outer envelope around fuzzed bytes, so that every
verification stage down to the claims parsers meets hostile input.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from edge.scan import base45, cbor, cose
from edge.scan.envelope import deflate
from edge.scan.trust import DccSigner, IssuerKey, TrustStore, kid_of_certificate, kid_of_public_key

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PREFIXES = ("MD1:", "HC1:")

SignerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def certificate(
    key: SignerKey,
    not_before: datetime = NOW - timedelta(days=365),
    not_after: datetime = NOW + timedelta(days=365),
    eku: list[str] | None = None,
) -> x509.Certificate:
    """A self-signed DCC signer certificate for ``key``."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


# a full course of Comirnaty, finished in 2021 (the default entry of dcc_claims)
VACCINATION: dict[str, Any] = {
    "tg": "840539006",
    "vp": "1119349007",
    "mp": "EU/1/20/1528",
    "ma": "ORG-100030215",
    "dn": 2,
    "sd": 2,
    "dt": "2021-09-01",
    "co": "VN",
    "is": "Ministry of Health",
    "ci": "URN:UVCI:01:VN:0123456789ABCDEF#X",
}


def dcc_claims(
    entry: dict[str, Any] | None = None,
    *,
    kind: str = "v",
    iat: datetime | None = NOW - timedelta(days=10),
    exp: datetime | None = NOW + timedelta(days=300),
    name: tuple[str, str] = ("Nguyễn", "Văn Bình"),
    dob: str = "1990-08-15",
) -> dict[int, Any]:
    """CWT claims of a DCC; ``entry`` replaces the default vaccination entry."""
    default = dict(VACCINATION)
    claims: dict[int, Any] = {1: "VN"}
    if iat is not None:
        claims[6] = int(iat.timestamp())
    if exp is not None:
        claims[4] = int(exp.timestamp())
    claims[-260] = {
        1: {
            "ver": "1.3.0",
            "nam": {"fn": name[0], "gn": name[1]},
            "dob": dob,
            kind: [entry if entry is not None else default],
        }
    }
    return claims


def sign_dcc(claims: Any, key: SignerKey, kid: bytes) -> str:
    """``HC1:`` text of claims signed with ES256 (EC key) or PS256 (RSA key)."""
    payload = cbor.dumps(claims)
    alg = cose.PS256 if isinstance(key, rsa.RSAPrivateKey) else cose.ES256
    protected = cbor.dumps({cose.HEADER_ALG: alg, cose.HEADER_KID: kid})
    tbs = cose.sig_structure(protected, payload)
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = key.sign(tbs, pss, hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    signed = cbor.dumps(cbor.Tag(18, [protected, {}, payload, signature]))
    return "HC1:" + base45.encode(deflate(signed))


def wrap(prefix: str, data: bytes, compress: bool = True) -> bytes:
    """``prefix`` + base45(zlib(data)): fuzzed bytes where COSE is expected."""
    body = deflate(data) if compress else data
    return (prefix + base45.encode(body)).encode()


class FuzzKit:
    """A trusted key (a declaration issuer and a DCC signer) and ways to wrap content."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key()
        self.kid = kid_of_public_key(public)
        # valid for years either side of NOW, the fuzzers' verification time
        cert = certificate(self.key, NOW - timedelta(days=2000), NOW + timedelta(days=5000))
        self.cert_kid = kid_of_certificate(cert)
        self.trust = TrustStore(
            issuers={self.kid: (IssuerKey(self.kid, "", public),)},
            dcc_signers={self.cert_kid: (DccSigner(self.cert_kid, cert),)},
        )

    @staticmethod
    def wrap(prefix: str, data: bytes, compress: bool = True) -> bytes:
        return wrap(prefix, data, compress)

    def signed(self, prefix: str, claims: Any) -> bytes:
        """A correctly signed envelope around arbitrary CWT claims."""
        if prefix == "HC1:":
            return sign_dcc(claims, self.key, self.cert_kid).encode()
        return wrap(prefix, cose.sign(cbor.dumps(claims), self.key, self.kid))
