"""Inputs for fuzzing the credential parsers (shared by the hypothesis tests and fuzz/).

A random byte string rarely gets past base45 and zlib; these helpers wrap
fuzzed bytes or CBOR in the outer layers, and even sign them with a trusted
key, so that every stage down to the claims parsers meets hostile input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from edge.scan import base45, cbor, cose
from edge.scan.envelope import deflate
from edge.trust import DccSigner, IssuerKey, TrustStore, kid_of_public_key

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PREFIXES = ("MD1:", "HC1:")


class FuzzKit:
    """A trusted issuer key (also a DCC signer) and ways to wrap fuzzed content."""

    def __init__(self) -> None:
        from cryptography import x509  # noqa: PLC0415 - only fuzzing needs a certificate
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415

        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key()
        self.kid = kid_of_public_key(public)
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(1)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
            .sign(self.key, hashes.SHA256())
        )
        from edge.trust import kid_of_certificate  # noqa: PLC0415

        self.cert_kid = kid_of_certificate(cert)
        self.trust = TrustStore(
            issuers={self.kid: (IssuerKey(self.kid, "", public),)},
            dcc_signers={self.cert_kid: (DccSigner(self.cert_kid, cert),)},
        )

    @staticmethod
    def wrap(prefix: str, data: bytes, compress: bool = True) -> bytes:
        """``prefix`` + base45(zlib(data)): fuzzed bytes where COSE is expected."""
        body = deflate(data) if compress else data
        return (prefix + base45.encode(body)).encode()

    def signed(self, prefix: str, claims: Any) -> bytes:
        """A correctly signed envelope around arbitrary CWT claims."""
        payload = cbor.dumps(claims)
        if prefix == "HC1:":
            # sign as the DCC signer (its kid is the certificate's)
            signed = cose.sign(payload, self.key, self.cert_kid)
        else:
            signed = cose.sign(payload, self.key, self.kid)
        return self.wrap(prefix, signed)
