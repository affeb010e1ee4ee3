"""Credential tools behind the command line: ``keys new``, ``issue``, ``verify``.

``issue`` and ``keys`` are for issuers and for testing a deployment; ``verify``
is what the kiosk does to a code, shown stage by stage.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge import files
from edge.core.model import plain
from edge.errors import CredentialRejected, EdgeError, InputError, TrustError
from edge.scan import cose, declaration
from edge.scan.credentials import Verifier
from edge.scan.declaration import Declaration, Place
from edge.scan.trust import TrustStore, kid_of_public_key, load_trust, trust_list
from edge.textout import terminal_json


class UsageError(EdgeError, ValueError):
    """Bad arguments or input files for a tool (exit code 2)."""


# -- keys new ---------------------------------------------------------------


def keys_new(issuer: str, alg: str, out: Path) -> dict[str, str]:
    """A new issuer key pair in ``out``: private key, public key, one-issuer trust list."""
    private: cose.PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if alg == "EdDSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public = private.public_key()
    kid = kid_of_public_key(public)
    stem = f"{issuer}-{kid.hex()}"
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / f"{stem}.key.pem"
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path = out / f"{stem}.pub.pem"
    pub_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    trust_path = out / f"{stem}.trust.json"
    doc = trust_list(issuers=[(issuer, public)], issued_at=datetime.now(UTC))
    trust_path.write_text(json.dumps(doc, indent=2) + "\n")
    return {
        "issuer": issuer,
        "alg": alg,
        "kid": base64.b64encode(kid).decode(),
        "kid_hex": kid.hex(),
        "private_key": str(key_path),
        "public_key": str(pub_path),
        "trust_list": str(trust_path),
    }


def load_private_key(path: Path) -> tuple[cose.PrivateKey, bytes]:
    data = _read(path, files.KEY, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key, kid_of_public_key(key.public_key())
    raise UsageError(f"{path}: issuer keys must be P-256 or Ed25519")


# -- issue ------------------------------------------------------------------


def read_declaration_file(path: Path) -> dict[str, Any]:
    text = _text(path, files.DECLARATION, "declaration file")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must hold a table / object")
    return data


def build_declaration(
    data: dict[str, Any], issuer: str, issued_at: datetime, valid_for: timedelta
) -> Declaration:
    """A declaration from the issue tool's input (file layout in ``docs/formats.md``)."""
    known = {"issuer", "declaration_id", "person", "trip", "health"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"unknown key(s): {', '.join(sorted(unknown))}")
    person = _table(data, "person")
    trip = _table(data, "trip")
    health = _table(data, "health")
    try:
        test_result = str(health.get("test_result", ""))
        decl = Declaration(
            issuer=str(data.get("issuer") or issuer),
            issued_at=issued_at,
            expires_at=issued_at + valid_for,
            declaration_id=str(data.get("declaration_id") or new_declaration_id()),
            name=str(person["name"]),
            id_number=str(person["id_number"]),
            birth_date=_day(person["birth_date"]),
            sex=str(person.get("sex", "X")),
            phone=str(person.get("phone", "")),
            origin=_place(trip["origin"]),
            destination=_place(trip["destination"]),
            plate=str(trip.get("plate", "")),
            transport=str(trip.get("transport", "car")),
            purpose=str(trip.get("purpose", "")),
            travel_from=_day(trip.get("from", issued_at.date())),
            travel_to=_day(trip.get("to", (issued_at + valid_for).date())),
            symptoms=bool(health.get("symptoms", False)),
            exposure=bool(health.get("exposure", False)),
            vaccine_doses=int(health.get("vaccine_doses", 0)),
            test_result=test_result,
            test_date=_day(health["test_date"]) if health.get("test_date") else None,
        )
    except KeyError as exc:
        raise UsageError(f"missing {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        declaration.validate(decl)
    except CredentialRejected as exc:
        raise UsageError(exc.detail) from exc
    return decl


def new_declaration_id() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    body = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{body[:4]}-{body[4:8]}-{body[8:]}"


def render_qr(payload: str, png: Path | None, svg: Path | None, scale: int = 8) -> int:
    """Write the payload as QR images; the QR version (size) it needed."""
    import segno  # noqa: PLC0415 - only the issue command draws codes (it pulls in urllib)

    qr = segno.make_qr(payload, error="m")
    if png is not None:
        qr.save(str(png), kind="png", scale=scale, border=4)
    if svg is not None:
        qr.save(str(svg), kind="svg", scale=scale, border=4)
    return int(qr.version)


def _read(path: Path, limit: int, what: str) -> bytes:
    try:
        return files.read_limited(path, limit, what)
    except InputError as exc:
        raise UsageError(str(exc)) from exc


def _text(path: Path, limit: int, what: str) -> str:
    try:
        return files.read_text_limited(path, limit, what)
    except InputError as exc:
        raise UsageError(str(exc)) from exc


def payload_text(text: str) -> bytes:
    """``verify --text``: the payload as UTF-8 bytes, at most :data:`files.QR_TEXT`."""
    try:
        return files.argument_text(text, files.QR_TEXT, "--text")
    except InputError as exc:
        raise UsageError(str(exc)) from exc


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{key} must be a table")
    return value


def _day(value: Any) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _place(value: Any) -> Place:
    if isinstance(value, str):  # "01" or "01/001" or "01/001/text"
        parts = value.split("/", 2)
        return Place(*parts) if len(parts) > 1 else Place(parts[0])
    if isinstance(value, dict):
        return Place(
            str(value.get("province", "")),
            str(value.get("district", "")),
            str(value.get("text", "")),
        )
    raise UsageError(
        "a place is PROVINCE[/DISTRICT[/TEXT]] or a table with province, district, text"
    )


# -- verify -----------------------------------------------------------------


def load_trust_paths(paths: Sequence[Path]) -> TrustStore:
    try:
        return load_trust(paths)
    except TrustError as exc:
        raise UsageError(str(exc)) from exc


def decode_image(path: Path) -> list[bytes]:
    from edge.devices.images import ImageError, gray_image  # noqa: PLC0415 - only this command
    from edge.scan.decoder import make_decoder  # noqa: PLC0415

    # decoded from the bytes read (bounded): a device or FIFO would be read forever
    data = _read(path, files.IMAGE, "image")
    try:
        image = gray_image(data)
    except ImageError as exc:
        raise UsageError(f"{path}: not a readable image ({exc})") from exc
    return make_decoder("auto").decode(image)


def verify(
    payload: bytes | None,
    trust: TrustStore,
    at: datetime,
    skew_s: float,
    from_image: bool,
) -> dict[str, Any]:
    """The ``verify --json`` report for one payload (None: no code found in the image)."""
    stages: dict[str, bool] = {}
    if from_image:
        stages["picture_decode"] = payload is not None
    if payload is None:
        return {
            "kind": None,
            "valid": False,
            "stages": stages,
            "reasons": ["no_code"],
            "payload_sha256": None,
            "claims": None,
        }
    credential = Verifier(lambda: trust, clock=lambda: at, skew_s=skew_s).read(payload)
    stages.update(credential.stages)
    return {
        "kind": credential.kind,
        "valid": credential.valid,
        "stages": stages,
        "reasons": list(credential.reasons),
        "payload_sha256": credential.sha256,
        "claims": plain(credential.claims),
    }


def print_report(report: dict[str, Any], show: bool, as_json: bool) -> None:
    if not show:
        report = {k: v for k, v in report.items() if k != "claims"}
    if as_json:
        sys.stdout.write(terminal_json(report) + "\n")  # claims: a code's text, made safe
        return
    marks = " ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in report["stages"].items())
    print(f"kind:    {report['kind'] or '(no code found)'}")
    print(f"valid:   {'yes' if report['valid'] else 'no'}")
    print(f"stages:  {marks or '-'}")
    print(f"reasons: {', '.join(report['reasons']) or '-'}")
    print(f"sha256:  {report['payload_sha256'] or '-'}")
    if show and report.get("claims"):
        print(terminal_json(report["claims"], indent=2))
