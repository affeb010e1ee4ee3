"""Fleet PKI for the central broker: CA, broker and account certificates, CRL, ACL.

A PKI directory holds (private keys mode 0600; nothing is overwritten without
``force`` but what is derived from the index: ``index.json``, ``crl.pem``, the ACL):

- ``ca.key`` / ``ca.pem``: the fleet CA (EC P-256, 10 years). The broker trusts
  the client certificates it signed; devices trust the broker through it.
- ``broker.key`` / ``broker.pem``: the broker's server certificate (serverAuth,
  SANs for its DNS names and IP addresses).
- ``<account>.key`` / ``<account>.pem``: one client certificate per account
  (clientAuth; CN = account = MQTT username = client id): a device (its device
  id), an ingest worker (``ingest-<name>``) or an operator (``op-<name>``).
- ``index.json``: every certificate issued (name, kind, serial, not_after,
  revoked_at) and the number of the last CRL.
- ``crl.pem``: the CA's revocation list, written again on every revocation.
- ``fleet-signing.key`` / ``fleet-signing.pub.pem``: the Ed25519 key that signs
  trust-list and policy pushes; devices hold the public half.
- ``dynamic-security.json`` (``pki acl --out``): the broker's access control,
  rendered from the index by :mod:`edge.pki.acl`: every live account, each
  device with a role of its own. An account's kind is read from its name,
  which is why device ids may not take the ``ingest-`` and ``op-`` prefixes
  (``deploy/mosquitto/README.md``).

Wiring: ``register(subparsers)`` adds ``pki`` to the main command line and
``main(args)`` runs it; ``cli(argv)`` is the same as a parser of its own.
Exit codes: 0 done, 1 a file system failure, 2 a refused request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge import files
from edge.core.times import parse_iso
from edge.errors import EdgeError, InputError
from edge.pki import acl as pki_acl
from edge.pki import crl as pki_crl
from edge.pki.crl import CRL_DAYS, REASONS

Kind = Literal["device", "ingest", "operator"]
KINDS: tuple[Kind, ...] = get_args(Kind)
PREFIXES: dict[Kind, str] = {"ingest": "ingest-", "operator": "op-"}
# Same rule as a device id in the config: one MQTT topic level, no wildcards.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Accounts named like these would write over the PKI's own files.
RESERVED = frozenset({"ca", "broker", "crl", "index", "acl", "dynamic-security", "fleet-signing"})
CA_DAYS = 3650
ACCOUNT_DAYS = 1825
# Certificates start an hour early: a Pi without a clock may run a little behind.
BACKDATE = timedelta(hours=1)

CA_KEY, CA_CERT, BROKER_KEY, BROKER_CERT = "ca.key", "ca.pem", "broker.key", "broker.pem"
CRL, INDEX = "crl.pem", "index.json"
# The broker's access control (``pki acl --out``), as installed next to crl.pem.
ACL = "dynamic-security.json"
SIGNING_KEY, SIGNING_PUB = "fleet-signing.key", "fleet-signing.pub.pem"


class PkiError(EdgeError, ValueError):
    """A PKI request was refused; the message names the account and the reason."""


# -- the index -----------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One certificate issued to an account, as the index records it."""

    name: str
    kind: Kind
    serial: int
    not_after: datetime
    revoked_at: datetime | None = None
    reason: str | None = None

    @property
    def live(self) -> bool:
        """Not revoked (expiry is the TLS layer's business)."""
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            # hex text: JSON numbers lose precision in most tools past 2**53
            "serial": f"{self.serial:x}",
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Issued:
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        revoked = data.get("revoked_at")
        return cls(
            name=str(data["name"]),
            kind=kind,
            serial=int(data["serial"], 16),
            not_after=parse_iso(data["not_after"], naive="keep", z_as_offset=False),
            revoked_at=parse_iso(revoked, naive="keep", z_as_offset=False) if revoked else None,
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class Index:
    certificates: tuple[Issued, ...] = ()
    crl_number: int = 0

    def live(self, name: str) -> Issued | None:
        return next((c for c in self.certificates if c.name == name and c.live), None)

    def live_accounts(self) -> list[str]:
        return sorted({c.name for c in self.certificates if c.live})


def load_index(directory: Path) -> Index:
    path = directory / INDEX
    if not path.exists():
        raise PkiError(f"{directory}: no PKI here ({INDEX} missing): run 'pki init' first")
    try:
        raw = files.read_limited(path, files.PKI_INDEX, "PKI index")
    except InputError as exc:
        raise PkiError(str(exc)) from exc
    try:
        data = json.loads(raw)
        return Index(
            tuple(Issued.from_json(c) for c in data["certificates"]), int(data["crl_number"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PkiError(f"{path}: not a valid index ({exc})") from exc


def save_index(directory: Path, index: Index) -> None:
    data = {
        "version": 1,
        "crl_number": index.crl_number,
        "certificates": [c.to_json() for c in index.certificates],
    }
    write_file(directory / INDEX, (json.dumps(data, indent=2) + "\n").encode(), 0o644, force=True)


# -- names -----------------------------------------------------------------------


def account_name(kind: Kind, name: str) -> str:
    """The certificate CN (= MQTT username) of account ``name`` of ``kind``, or PkiError."""
    if kind not in KINDS:
        raise PkiError(f"{name!r}: unknown account kind {kind!r} (one of {', '.join(KINDS)})")
    if not NAME_RE.fullmatch(name):
        raise PkiError(
            f"{kind} {name!r}: invalid name: use a-z, 0-9 and '-', starting with a letter "
            "or digit, 63 characters at most"
        )
    if kind == "device":
        for other, prefix in PREFIXES.items():
            if name.startswith(prefix):
                raise PkiError(
                    f"device {name}: the prefix {prefix!r} is reserved for {other} accounts"
                )
        if name in RESERVED:
            raise PkiError(f"device {name}: the name is reserved for the PKI's own files")
        return name
    prefix = PREFIXES[kind]
    if name.startswith(prefix):
        raise PkiError(
            f"{kind} {name}: give the name without {prefix!r} (the account becomes {prefix}<name>)"
        )
    account = prefix + name
    if not NAME_RE.fullmatch(account):
        raise PkiError(f"{kind} {account}: too long: 63 characters at most with the prefix")
    return account


# -- steps -------------------------------------------------------------------------


def init(
    directory: Path,
    broker_names: Sequence[str] = ("localhost",),
    broker_ips: Sequence[str] = ("127.0.0.1",),
    *,
    force: bool = False,
    now: datetime | None = None,
) -> None:
    """A new PKI in ``directory``: CA, broker certificate, empty CRL and index, signing key."""
    now = now or datetime.now(UTC)
    ips = [_ip(ip) for ip in broker_ips]
    for dns in broker_names:
        if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", dns):
            raise PkiError(f"broker name {dns!r}: not a DNS name")
    if not broker_names and not ips:
        raise PkiError("broker: give at least one --broker-name or --broker-ip")
    names = (CA_KEY, CA_CERT, BROKER_KEY, BROKER_CERT, CRL, INDEX, SIGNING_KEY, SIGNING_PUB)
    _check_free([directory / n for n in names], force, "init")
    directory.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "checkpoint-edge fleet CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / CA_KEY, ca_key, force)
    write_file(directory / CA_CERT, _pem(ca_cert), 0o644, force)

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in broker_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    subject = broker_names[0] if broker_names else str(ips[0])
    key = ec.generate_private_key(ec.SECP256R1())
    server = [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        x509.SubjectAlternativeName(sans),
    ]
    cert = _sign(
        ca_key,
        ca_cert,
        subject,
        key,
        not_after=ca_cert.not_valid_after_utc,
        now=now,
        extensions=server,
    )
    _write_key(directory / BROKER_KEY, key, force)
    write_file(directory / BROKER_CERT, _pem(cert), 0o644, force)

    signing = ed25519.Ed25519PrivateKey.generate()
    _write_key(directory / SIGNING_KEY, signing, force)
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_file(directory / SIGNING_PUB, public, 0o644, force)

    save_index(directory, Index())
    write_crl(directory, now=now)


def issue(
    directory: Path,
    kind: Kind,
    name: str,
    *,
    days: int = ACCOUNT_DAYS,
    force: bool = False,
    now: datetime | None = None,
) -> Issued:
    """A client certificate for account ``name`` of ``kind``: ``<account>.key`` and ``.pem``.

    Refused if the account already holds a live certificate (revoke it first),
    or if its files exist and ``force`` is not given.
    """
    now = now or datetime.now(UTC)
    account = account_name(kind, name)
    label = f"{kind} {account}"
    ca_key, ca_cert = _load_ca(directory, label)
    index = load_index(directory)
    held = index.live(account)
    if held is not None:
        raise PkiError(
            f"{label}: already issued (serial {held.serial:x}, valid until "
            f"{held.not_after:%Y-%m-%d}); revoke it first"
        )
    if days < 1:
        raise PkiError(f"{label}: --days must be at least 1 (got {days})")
    not_after = now + timedelta(days=days)
    if not_after > ca_cert.not_valid_after_utc:
        raise PkiError(
            f"{label}: {days} days would outlive the CA (valid until "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%d})"
        )
    paths = [directory / f"{account}.key", directory / f"{account}.pem"]
    _check_free(paths, force, label)

    key = ec.generate_private_key(ec.SECP256R1())
    client = [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]
    cert = _sign(ca_key, ca_cert, account, key, not_after=not_after, now=now, extensions=client)
    _write_key(paths[0], key, force)
    write_file(paths[1], _pem(cert), 0o644, force)
    issued = Issued(account, kind, cert.serial_number, cert.not_valid_after_utc)
    save_index(directory, dataclasses.replace(index, certificates=(*index.certificates, issued)))
    return issued


def revoke(
    directory: Path, name: str, *, reason: str = "unspecified", now: datetime | None = None
) -> Issued:
    """Revoke the live certificate of account ``name`` (its full CN) and rewrite ``crl.pem``.

    Then copy ``crl.pem`` to the broker and restart it: mosquitto 2.0 re-reads
    the CRL on SIGHUP too, but keeps the connections it already has
    (``deploy/mosquitto/README.md``).
    """
    now = now or datetime.now(UTC)
    if reason not in REASONS:
        raise PkiError(f"{name}: unknown reason {reason!r} (one of {', '.join(REASONS)})")
    index = load_index(directory)
    held = index.live(name)
    if held is None:
        if any(c.name == name for c in index.certificates):
            raise PkiError(f"{name}: already revoked")
        raise PkiError(f"{name}: no such account in {directory / INDEX}")
    _load_ca(directory, name)
    done = dataclasses.replace(held, revoked_at=now.replace(microsecond=0), reason=reason)
    certificates = tuple(done if c is held else c for c in index.certificates)
    save_index(directory, dataclasses.replace(index, certificates=certificates))
    write_crl(directory, now=now)
    return done


def write_crl(directory: Path, *, days: int = CRL_DAYS, now: datetime | None = None) -> Path:
    """Sign a fresh ``crl.pem`` (next CRL number, next update in ``days``) from the index."""
    now = now or datetime.now(UTC)
    if days < 1:
        raise PkiError(f"crl: --days must be at least 1 (got {days})")
    ca_key, ca_cert = _load_ca(directory, "crl")
    index = load_index(directory)
    index = dataclasses.replace(index, crl_number=index.crl_number + 1)
    revoked = [
        (c.serial, c.revoked_at, c.reason) for c in index.certificates if c.revoked_at is not None
    ]
    pem = pki_crl.sign(
        ca_key,
        ca_cert,
        index.crl_number,
        revoked,
        last_update=now - BACKDATE,
        next_update=now + timedelta(days=days),
    )
    save_index(directory, index)
    path = directory / CRL
    write_file(path, pem, 0o644, force=True)
    return path


def render_acl(accounts: Iterable[str]) -> str:
    """The broker's dynamic-security file (:mod:`edge.pki.acl`) for these accounts (CNs).

    The kind of each comes from its name: ``ingest-``, ``op-``, else a device.
    """
    names = sorted(set(accounts))
    ingest = [n for n in names if n.startswith(PREFIXES["ingest"])]
    operators = [n for n in names if n.startswith(PREFIXES["operator"])]
    devices = [n for n in names if n not in ingest and n not in operators]
    return pki_acl.render(devices, ingest, operators)


def acl_text(directory: Path) -> str:
    """The broker's dynamic-security file for every live account in the index."""
    return render_acl(load_index(directory).live_accounts())


# -- files and certificates ---------------------------------------------------------


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise PkiError(f"broker ip {text!r}: not an IP address") from None


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    not_after: datetime,
    now: datetime,
    extensions: Sequence[x509.ExtensionType],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _load_ca(directory: Path, label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if not key_path.exists() or not cert_path.exists():
        raise PkiError(f"{label}: no CA in {directory} ({CA_KEY}, {CA_CERT}): run 'pki init'")
    try:
        key_pem = files.read_limited(key_path, files.KEY, "CA key")
        cert_pem = files.read_limited(cert_path, files.KEY, "CA certificate")
    except InputError as exc:
        raise PkiError(f"{label}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PkiError(f"{label}: the CA in {directory} cannot be read ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{label}: {key_path} is not an EC key")
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(
    path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, force: bool
) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_file(path, pem, 0o600, force)


def _check_free(paths: Iterable[Path], force: bool, label: str) -> None:
    if force:
        return
    for path in paths:
        if path.exists():
            raise PkiError(f"{label}: {path} exists; use --force to overwrite it")


def write_file(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` with ``mode`` atomically (temp file, fsync, rename, fsync of the folder)."""
    _check_free([path], force, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # before any byte of a key is written
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
