"""The fleet CA's certificate revocation list (``crl.pem``): its reasons, its life
and its contents.

:func:`edge.pki.ca.write_crl` numbers and writes a new one from the index on
every revocation and on ``pki crl``; :func:`sign` makes it. Mosquitto re-reads
the file on SIGHUP but keeps the connections it already has
(``deploy/mosquitto/README.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# The reasons ``pki revoke`` takes: RFC 5280 CRLReason names (x509.ReasonFlags).
REASONS = (
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
)
# An expired CRL makes OpenSSL refuse every client, so it is long-lived; it
# is rewritten on each revocation and by ``pki crl``.
CRL_DAYS = 365


def sign(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    number: int,
    revoked: Iterable[tuple[int, datetime, str | None]],
    *,
    last_update: datetime,
    next_update: datetime,
) -> bytes:
    """The CA's CRL number ``number`` (PEM) of the ``(serial, revoked at, reason)`` given."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if reason and reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags[reason]), False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)
