"""The trust store: whose signatures the kiosk believes, and what is revoked.

Loaded from files, each one of:

- a **trust list** (JSON, ``"format": "checkpoint-edge-trust-list"``): our
  declaration issuers' public keys, DCC signer certificates, revoked
  declaration ids and DCC certificate identifiers;
- a **certificate** (PEM or DER): a DCC signer (``kid`` = first 8 bytes of
  SHA-256 over the DER);
- a **public key** (PEM or DER, P-256 or Ed25519): a declaration issuer for
  any ``iss`` (``kid`` = first 8 bytes of SHA-256 over the SubjectPublicKeyInfo).

A file that cannot be loaded raises :class:`~edge.errors.TrustError` naming
the file and the problem; :class:`TrustHolder` then keeps the last good store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from edge.core.times import parse_iso
from edge.errors import InputError, TrustError
from edge.files import read_limited
from edge.scan.cose import PublicKey

log = logging.getLogger(__name__)

TRUST_LIST_FORMAT = "checkpoint-edge-trust-list"
MAX_TRUST_FILE = 16 * 1024 * 1024


def kid_of_certificate(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()[:8]


def kid_of_public_key(key: PublicKey) -> bytes:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()[:8]


@dataclass(frozen=True)
class IssuerKey:
    """A declaration issuer's public key; ``issuer`` empty = not bound to one ``iss``."""

    kid: bytes
    issuer: str
    key: PublicKey


@dataclass(frozen=True)
class DccSigner:
    kid: bytes
    certificate: x509.Certificate


@dataclass(frozen=True)
class TrustStore:
    issuers: dict[bytes, tuple[IssuerKey, ...]] = field(default_factory=dict)
    dcc_signers: dict[bytes, tuple[DccSigner, ...]] = field(default_factory=dict)
    revoked_declarations: frozenset[str] = frozenset()
    revoked_dcc: frozenset[str] = frozenset()
    issued_at: datetime | None = None
    sources: tuple[str, ...] = ()

    def describe(self) -> str:
        return (
            f"{sum(map(len, self.issuers.values()))} issuer key(s), "
            f"{sum(map(len, self.dcc_signers.values()))} DCC signer(s), "
            f"{len(self.revoked_declarations) + len(self.revoked_dcc)} revocation(s)"
        )


def load_trust(paths: Sequence[Path]) -> TrustStore:
    """One store from all ``paths``; raise TrustError on the first bad file."""
    parts = []
    for path in paths:
        try:
            data = read_limited(path, MAX_TRUST_FILE, "trust file")
        except InputError as exc:
            raise TrustError(str(exc)) from exc
        parts.append(_part(data, str(path)))
    return _store(parts, tuple(str(p) for p in paths))


def load_trust_bytes(data: bytes, source: str) -> TrustStore:
    """The store of one trust file's content (a push checked before it is sent)."""
    if len(data) > MAX_TRUST_FILE:
        raise TrustError(f"{source}: larger than {MAX_TRUST_FILE} bytes")
    return _store([_part(data, source)], (source,))


def _part(data: bytes, source: str) -> _Part:
    try:
        return _load_one(data)
    except TrustError as exc:
        raise TrustError(f"{source}: {exc}") from exc


def _store(parts: Iterable[_Part], sources: tuple[str, ...]) -> TrustStore:
    issuers: dict[bytes, list[IssuerKey]] = {}
    signers: dict[bytes, list[DccSigner]] = {}
    revoked_decl: set[str] = set()
    revoked_dcc: set[str] = set()
    issued: list[datetime] = []
    for part in parts:
        for k in part.issuers:
            issuers.setdefault(k.kid, []).append(k)
        for s in part.signers:
            signers.setdefault(s.kid, []).append(s)
        revoked_decl |= part.revoked_declarations
        revoked_dcc |= part.revoked_dcc
        if part.issued_at is not None:
            issued.append(part.issued_at)
    return TrustStore(
        issuers={k: tuple(v) for k, v in issuers.items()},
        dcc_signers={k: tuple(v) for k, v in signers.items()},
        revoked_declarations=frozenset(revoked_decl),
        revoked_dcc=frozenset(revoked_dcc),
        issued_at=min(issued) if issued else None,
        sources=sources,
    )


@dataclass
class _Part:
    issuers: list[IssuerKey] = field(default_factory=list)
    signers: list[DccSigner] = field(default_factory=list)
    revoked_declarations: set[str] = field(default_factory=set)
    revoked_dcc: set[str] = field(default_factory=set)
    issued_at: datetime | None = None


def _load_one(data: bytes) -> _Part:
    text = data.lstrip()
    if text.startswith(b"{"):
        return _load_trust_list(data)
    if b"-----BEGIN CERTIFICATE-----" in data:
        return _Part(signers=[_signer(_cert(data, pem=True))])
    if b"-----BEGIN PUBLIC KEY-----" in data:
        return _Part(issuers=[_issuer(_public_key(data, pem=True), "")])
    if b"-----BEGIN" in data:
        raise TrustError("PEM that is neither a certificate nor a public key")
    try:
        return _Part(signers=[_signer(x509.load_der_x509_certificate(data))])
    except ValueError:
        pass
    try:
        return _Part(issuers=[_issuer(_public_key(data, pem=False), "")])
    except TrustError:
        raise TrustError("not a trust list, certificate or public key") from None


def _cert(data: bytes, pem: bool) -> x509.Certificate:
    try:
        if pem:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise TrustError(f"bad certificate: {exc}") from exc


def _public_key(data: bytes, pem: bool) -> PublicKey:
    try:
        key = (
            serialization.load_pem_public_key(data)
            if pem
            else serialization.load_der_public_key(data)
        )
    except (ValueError, TypeError) as exc:
        raise TrustError(f"bad public key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise TrustError("issuer keys must be P-256 (ES256) or Ed25519 (EdDSA)")


def _signer(cert: x509.Certificate) -> DccSigner:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise TrustError("DCC signer certificates must hold an EC or RSA key")
    return DccSigner(kid_of_certificate(cert), cert)


def _issuer(key: PublicKey, issuer: str) -> IssuerKey:
    return IssuerKey(kid_of_public_key(key), issuer, key)


_LIST_KEYS = {
    "format",
    "version",
    "issued_at",
    "issuers",
    "dcc_signers",
    "revoked_declarations",
    "revoked_dcc",
}


def _load_trust_list(data: bytes) -> _Part:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise TrustError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != TRUST_LIST_FORMAT:
        raise TrustError(f'not a trust list ("format" must be "{TRUST_LIST_FORMAT}")')
    if doc.get("version") != 1:
        raise TrustError(f"unsupported trust list version {doc.get('version')!r}")
    unknown = set(doc) - _LIST_KEYS
    if unknown:
        raise TrustError(f"unknown key(s): {', '.join(sorted(unknown))}")
    part = _Part()
    if "issued_at" in doc:
        try:
            part.issued_at = parse_iso(_str(doc, "issued_at"), naive="keep", z_as_offset=False)
        except ValueError as exc:
            raise TrustError(f"issued_at: not ISO 8601: {exc}") from exc
    for i, entry in enumerate(_list(doc, "issuers")):
        where = f"issuers[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"issuer", "public_key", "kid"}:
            raise TrustError(f"{where}: must be an object with issuer, public_key[, kid]")
        key = _public_key(_str(entry, "public_key", where).encode(), pem=True)
        issuer = _issuer(key, _str(entry, "issuer", where))
        _check_kid(entry, issuer.kid, where)
        part.issuers.append(issuer)
    for i, entry in enumerate(_list(doc, "dcc_signers")):
        where = f"dcc_signers[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"certificate", "kid"}:
            raise TrustError(f"{where}: must be an object with certificate[, kid]")
        try:
            der = base64.b64decode(_str(entry, "certificate", where), validate=True)
        except binascii.Error as exc:
            raise TrustError(f"{where}.certificate: not base64") from exc
        signer = _signer(_cert(der, pem=False))
        _check_kid(entry, signer.kid, where)
        part.signers.append(signer)
    part.revoked_declarations = set(_strings(doc, "revoked_declarations"))
    part.revoked_dcc = set(_strings(doc, "revoked_dcc"))
    return part


def _str(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise TrustError(f"{where + '.' if where else ''}{key}: must be a string")
    return value


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise TrustError(f"{key}: must be a list")
    return value


def _strings(doc: dict[str, Any], key: str) -> Iterable[str]:
    values = _list(doc, key)
    if not all(isinstance(v, str) for v in values):
        raise TrustError(f"{key}: must be a list of strings")
    return values


def _check_kid(entry: dict[str, Any], kid: bytes, where: str) -> None:
    if "kid" in entry and entry["kid"] != base64.b64encode(kid).decode():
        raise TrustError(f"{where}.kid does not match its key ({base64.b64encode(kid).decode()})")


def trust_list(
    issuers: Iterable[tuple[str, PublicKey]] = (),
    certificates: Iterable[x509.Certificate] = (),
    revoked_declarations: Iterable[str] = (),
    revoked_dcc: Iterable[str] = (),
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """A trust list document (for ``keys new`` and tests)."""
    doc: dict[str, Any] = {"format": TRUST_LIST_FORMAT, "version": 1}
    if issued_at is not None:
        doc["issued_at"] = issued_at.isoformat()
    doc["issuers"] = [
        {
            "issuer": name,
            "kid": base64.b64encode(kid_of_public_key(key)).decode(),
            "public_key": key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
        }
        for name, key in issuers
    ]
    doc["dcc_signers"] = [
        {
            "kid": base64.b64encode(kid_of_certificate(c)).decode(),
            "certificate": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode(),
        }
        for c in certificates
    ]
    doc["revoked_declarations"] = sorted(revoked_declarations)
    doc["revoked_dcc"] = sorted(revoked_dcc)
    return doc


class TrustHolder:
    """The current trust store, replaced only by a store that loaded completely."""

    def __init__(self, paths: Sequence[Path] = ()) -> None:
        self.paths = tuple(paths)
        self._lock = threading.Lock()
        self._store = TrustStore()
        self.last_error: str | None = None

    @property
    def store(self) -> TrustStore:
        with self._lock:
            return self._store

    def reload(self) -> TrustStore:
        """Load ``paths`` again; on TrustError keep the last good store and re-raise."""
        try:
            store = load_trust(self.paths)
        except TrustError as exc:
            self.last_error = str(exc)
            log.error("trust: %s; keeping the last good store", exc)  # noqa: TRY400
            raise
        with self._lock:
            self._store = store
        self.last_error = None
        log.info("trust: loaded %s from %d file(s)", store.describe(), len(self.paths))
        return store


# -- lenient X.509 extension reading ------------------------------------------

_EKU_OID = "2.5.29.37"


def extended_key_usage(cert: x509.Certificate) -> set[str]:
    """The extended key usage OIDs of ``cert`` (empty when it has none).

    Some DCC signer certificates in the field carry an extension that strict
    parsers refuse (an empty key identifier, say); cryptography then fails on
    every extension. Only then the EKU is read straight from the DER.
    """
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    except ValueError:
        return _eku_from_der(cert.public_bytes(serialization.Encoding.DER))
    return {oid.dotted_string for oid in eku}


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("DER element runs past the end")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, cstart, cend = _tlv(data, start)
        out.append((tag, cstart, cend))
        start = cend
    return out


def _oid(raw: bytes) -> str:
    first, rest = divmod(raw[0], 40) if raw[0] < 80 else (2, raw[0] - 80)
    parts, value = [first, rest], 0
    for byte in raw[1:]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _eku_from_der(der: bytes) -> set[str]:
    try:
        _, cstart, cend = _tlv(der, 0)  # Certificate
        _, tstart, tend = _children(der, cstart, cend)[0]  # TBSCertificate
        for tag, start, _ in _children(der, tstart, tend):
            if tag != 0xA3:  # [3] extensions
                continue
            _, sstart, send = _tlv(der, start)
            for _, estart, eend in _children(der, sstart, send):
                parts = _children(der, estart, eend)
                if _oid(der[parts[0][1] : parts[0][2]]) != _EKU_OID:
                    continue
                _, vstart, _ = parts[-1]  # extnValue OCTET STRING
                _, qstart, qend = _tlv(der, vstart)
                return {_oid(der[s:e]) for _, s, e in _children(der, qstart, qend)}
    except (ValueError, IndexError) as exc:
        raise TrustError(f"unreadable certificate extensions: {exc}") from exc
    return set()
