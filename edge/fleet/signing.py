"""Signed fleet-wide pushes: trust lists and policy, on retained ``cp/v1/$all/...``.

Anyone who can publish to the broker must not be able to change whom every
kiosk trusts, so a push is signed with the fleet signing key (Ed25519 or ECDSA
P-256; ``checkpoint-edge pki init`` makes an Ed25519 one) whose public half each
kiosk holds (``[fleet] keys``). The envelope is JSON::

    {"format": "checkpoint-edge-fleet-push", "kind": "trust" | "policy",
     "version": 7, "issued": "2026-11-26T10:00:00Z",
     "body": "<base64 of the content>", "sig": "<base64 signature>"}

The signature covers the format, kind, version, issued time and body, so no
field can be changed or moved to another kind. A kiosk applies a push only when
its version is newer than the one it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge import files
from edge.core.model import iso_utc
from edge.core.times import TimeZoneMissing, parse_iso
from edge.errors import EdgeError, InputError, TrustError
from edge.files import read_limited

FORMAT = "checkpoint-edge-fleet-push"
MAX_PUSH_BYTES = 8 * 1024 * 1024
SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
VerifyKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class PushRejected(EdgeError, ValueError):
    """A push that is not applied; ``reason`` is a stable code for ``config/reported``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Push:
    kind: str
    version: int
    issued: datetime
    body: bytes


def _signed_bytes(kind: str, version: int, issued: str, body: bytes) -> bytes:
    header = json.dumps(
        {"format": FORMAT, "issued": issued, "kind": kind, "version": version},
        sort_keys=True,
        separators=(",", ":"),
    )
    return header.encode() + b"\n" + body


def sign(kind: str, version: int, body: bytes, key: SigningKey, issued: datetime) -> bytes:
    """The push envelope for ``body``."""
    stamp = iso_utc(issued)
    data = _signed_bytes(kind, version, stamp, body)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(data)
    else:
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    doc = {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        "issued": stamp,
        "body": base64.b64encode(body).decode(),
        "sig": base64.b64encode(sig).decode(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def verify(payload: bytes, kind: str, keys: Sequence[VerifyKey]) -> Push:
    """The push in ``payload`` if it is a well-formed ``kind`` push signed by one of ``keys``."""
    if len(payload) > MAX_PUSH_BYTES:
        raise PushRejected("malformed", f"too large ({len(payload)} bytes)")
    try:
        doc: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise PushRejected("malformed", "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PushRejected("malformed", f"not a {FORMAT} envelope")
    if doc.get("kind") != kind:
        raise PushRejected("wrong_kind", f"a {doc.get('kind')!r} push on the {kind} topic")
    version, issued, issued_at = _header(doc)
    if "sig" not in doc:
        raise PushRejected("unsigned", "the push carries no signature")
    try:
        body = base64.b64decode(str(doc.get("body", "")), validate=True)
        sig = base64.b64decode(str(doc["sig"]), validate=True)
    except (binascii.Error, ValueError):
        raise PushRejected("malformed", "body and sig must be base64") from None
    if not keys:
        raise PushRejected("no_fleet_key", "no fleet key configured ([fleet] keys)")
    data = _signed_bytes(kind, version, issued, body)
    for key in keys:
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(sig, data)
            else:
                key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return Push(kind, version, issued_at.astimezone(UTC), body)
    raise PushRejected("bad_signature", "not signed by a fleet key this kiosk holds")


def _header(doc: dict[str, Any]) -> tuple[int, str, datetime]:
    version, issued = doc.get("version"), doc.get("issued")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PushRejected("malformed", "version must be a positive integer")
    if not isinstance(issued, str):
        raise PushRejected("malformed", "issued must be an ISO 8601 time")
    try:
        issued_at = parse_iso(issued)
    except TimeZoneMissing:
        raise PushRejected("malformed", "issued must carry a time zone") from None
    except ValueError:
        raise PushRejected("malformed", "issued must be an ISO 8601 time") from None
    return version, issued, issued_at


def load_verify_keys(paths: Sequence[Path]) -> list[VerifyKey]:
    """The fleet public keys (PEM); TrustError names the file and the problem."""
    out: list[VerifyKey] = []
    for path in paths:
        try:
            key = serialization.load_pem_public_key(read_limited(path, files.KEY, "public key"))
        except InputError as exc:
            raise TrustError(str(exc)) from exc
        except ValueError as exc:
            raise TrustError(f"{path}: not a PEM public key: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise TrustError(f"{path}: a fleet key must be Ed25519 or ECDSA P-256")
        out.append(key)
    return out


def load_signing_key(path: Path) -> SigningKey:
    """The fleet private key (PEM, unencrypted); TrustError when it is not one."""
    try:
        data = read_limited(path, files.KEY, "private key")
        key = serialization.load_pem_private_key(data, password=None)
    except InputError as exc:
        raise TrustError(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise TrustError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise TrustError(f"{path}: a fleet key must be Ed25519 or ECDSA P-256")
    return key
