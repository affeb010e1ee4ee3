"""``checkpoint-edge doctor``: is this kiosk fit to run? One line per check.

Checks the camera (opens it and reads a frame), the GPIO pins, the broker
(reachable; with TLS, the handshake with the kiosk's own certificate), the TLS
files (readable, the key matches the certificate, its CN is the device id, days
left), the clock's synchronisation, disk space at the store, the store's files,
the trust lists (they load; their age), the fleet keys, and the screen's voices
(the Vietnamese one made; no pack's clip refused by its name or first bytes:
``lang check`` measures them). Each check says
``OK``, ``WARN``, ``FAIL`` or ``SKIP`` with the reason; the exit code is 1 when
any check failed.

The doctor never disturbs a running kiosk: it leaves camera and pins alone
while a kiosk holds the store, reads the store without taking it, and on a TLS
broker it stops after the handshake (an MQTT login with the
kiosk's certificate would take over the running kiosk's session, since the
broker names the client after the certificate).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from edge import files
from edge.config import Config
from edge.errors import EdgeError, TrustError
from edge.fleet.agent import clock_synchronised
from edge.fleet.signing import load_verify_keys
from edge.kiosk import voice
from edge.scan.trust import load_trust
from edge.store import seglog

Status = Literal["OK", "WARN", "FAIL", "SKIP"]
CAMERA_TIMEOUT_S = 10.0
BROKER_TIMEOUT_S = 5.0
CERT_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<8}  {self.detail}"


def kiosk_running(store: Path) -> bool:
    """A kiosk process holds the store's lock (edge/store/outbox.py): it owns camera and pins."""
    lock = store / "lock"
    if not lock.exists():
        return False
    try:
        with open(lock, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def run(cfg: Config, trust_files: tuple[Path, ...] | None = None) -> list[Check]:
    """Every check, in order; each one guarded so that one failure never hides the rest."""
    checks: list[Check] = []
    if kiosk_running(cfg.store.dir):
        # opening the camera or the pins could disturb it (a relay driven low would
        # close a barrier held open): those two checks are left to the running kiosk
        note = "held by the running kiosk: not touched (its alerts say how it is)"
        checks += [Check("camera", "SKIP", note), Check("pins", "SKIP", note)]
    steps: list[tuple[str, Callable[[], Iterator[Check]]]] = (
        []
        if checks
        else [
            ("camera", lambda: _camera(cfg)),
            ("pins", lambda: _pins(cfg)),
        ]
    )
    steps += [
        ("tls", lambda: _tls(cfg)),
        ("broker", lambda: _broker(cfg)),
        ("clock", lambda: _clock(cfg)),
        ("disk", lambda: _disk(cfg)),
        ("store", lambda: _store(cfg)),
        ("trust", lambda: _trust(cfg, trust_files or cfg.trust.files)),
        ("fleet", lambda: _fleet(cfg)),
        ("voice", lambda: _voice(cfg)),
    ]
    for name, step in steps:
        try:
            checks.extend(step())
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check
            checks.append(Check(name, "FAIL", f"{type(exc).__name__}: {exc}"))
    return checks


def _camera(cfg: Config) -> Iterator[Check]:
    from edge.devices.camera import make_source  # noqa: PLC0415 - OpenCV is heavy

    source = make_source(cfg.camera)
    result: list[Check] = []

    def attempt() -> None:
        try:
            source.open()
            frame = source.read()
        except EdgeError as exc:
            result.append(Check("camera", "FAIL", f"{source.description}: {exc}"))
            return
        finally:
            source.close()
        if frame is None:
            result.append(Check("camera", "FAIL", f"{source.description}: no frame"))
        else:
            h, w = frame.shape[:2]
            result.append(Check("camera", "OK", f"{source.description}: a {w}x{h} frame"))

    worker = threading.Thread(target=attempt, name="doctor-camera", daemon=True)
    worker.start()
    worker.join(CAMERA_TIMEOUT_S)
    if worker.is_alive():
        yield Check(
            "camera", "FAIL", f"{source.description}: no frame within {CAMERA_TIMEOUT_S:g} s"
        )
        return
    yield from result


def _pins(cfg: Config) -> Iterator[Check]:
    from edge.devices.gpio import Panel, make_pin_factory  # noqa: PLC0415

    try:
        factory = make_pin_factory(cfg.gpio.pin_factory)
        panel = Panel(cfg.gpio, factory, lambda: None, lambda: None)
    except EdgeError as exc:
        yield Check("pins", "FAIL", f"{exc} (is the service running? it holds the pins)")
        return
    panel.close()
    used = [f"{k}={v}" for k, v in vars(cfg.gpio).items() if k.endswith("_pin") and v >= 0]
    yield Check("pins", "OK", f"{cfg.gpio.pin_factory}: {', '.join(used)}")


def _tls(cfg: Config) -> Iterator[Check]:
    mqtt = cfg.mqtt
    if not mqtt.tls:
        yield Check("tls", "SKIP", "mqtt.tls is false: the broker connection is not encrypted")
        return
    now = datetime.now(UTC)
    if mqtt.ca_file is not None:
        ca = x509.load_pem_x509_certificate(_pem(mqtt.ca_file, "CA certificate"))
        yield _expiry("tls", f"CA {mqtt.ca_file.name}", ca, now)
    if mqtt.cert_file is None or mqtt.key_file is None:
        yield Check("tls", "WARN", "no client certificate: the fleet broker will refuse it")
        return
    cert = x509.load_pem_x509_certificate(_pem(mqtt.cert_file, "certificate"))
    try:
        key = serialization.load_pem_private_key(_pem(mqtt.key_file, "key"), password=None)
    except (ValueError, TypeError) as exc:
        yield Check("tls", "FAIL", f"{mqtt.key_file}: not a readable private key: {exc}")
        return
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        yield Check("tls", "FAIL", f"{mqtt.key_file.name} is not the key of {mqtt.cert_file.name}")
    elif cn != [cfg.device.id]:
        yield Check("tls", "FAIL", f"certificate CN {cn} is not the device id {cfg.device.id!r}")
    else:
        yield _expiry("tls", f"certificate {cfg.device.id}", cert, now)


def _pem(path: Path, what: str) -> bytes:
    """A TLS file, bounded (InputError, a failed check, when it is not a file)."""
    return files.read_limited(path, files.CERTIFICATES, what)


def _expiry(name: str, what: str, cert: x509.Certificate, now: datetime) -> Check:
    days = (cert.not_valid_after_utc - now).days
    if cert.not_valid_after_utc <= now:
        return Check(name, "FAIL", f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        return Check(
            name, "FAIL", f"{what} not valid before {cert.not_valid_before_utc:%F} (clock?)"
        )
    status: Status = "WARN" if days < CERT_WARN_DAYS else "OK"
    return Check(name, status, f"{what} valid for {days} more day(s)")


def _broker(cfg: Config) -> Iterator[Check]:
    mqtt = cfg.mqtt
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        raw = socket.create_connection((mqtt.host, mqtt.port), timeout=BROKER_TIMEOUT_S)
    except OSError as exc:
        yield Check("broker", "FAIL", f"cannot reach {where}: {exc.strerror or exc}")
        return
    with raw:
        if not mqtt.tls:
            yield Check("broker", "OK", f"{where} reachable (no TLS)")
            return
        for path in (mqtt.ca_file, mqtt.cert_file, mqtt.key_file):
            if path is not None:  # OpenSSL reads them itself: regular files only
                _pem(path, "TLS file")
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file is not None and mqtt.key_file is not None:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
        try:
            with context.wrap_socket(raw, server_hostname=mqtt.host) as tls:
                version = tls.version()
        except (ssl.SSLError, OSError) as exc:
            yield Check("broker", "FAIL", f"{where}: TLS handshake failed: {exc}")
            return
    yield Check("broker", "OK", f"{where} reachable, {version} with this kiosk's certificate")


def _clock(cfg: Config) -> Iterator[Check]:
    if not cfg.fleet.clock_check:
        yield Check("clock", "SKIP", "fleet.clock_check is false")
        return
    synced = clock_synchronised()
    if synced is None:
        yield Check("clock", "WARN", "cannot tell whether the clock is synchronised")
    elif synced:
        yield Check("clock", "OK", "synchronised")
    else:
        yield Check(
            "clock",
            "FAIL",
            "not synchronised (validity checks depend on it): check timedatectl and NTP",
        )


def _disk(cfg: Config) -> Iterator[Check]:
    where = cfg.store.dir if cfg.store.dir.exists() else _existing_parent(cfg.store.dir)
    free_mb = shutil.disk_usage(where).free / 1e6
    low = cfg.fleet.disk_low_mb
    status: Status = "FAIL" if low and free_mb < low else "OK"
    yield Check("disk", status, f"{free_mb:.0f} MB free at {where} (alert below {low:g} MB)")


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _store(cfg: Config) -> Iterator[Check]:
    directory = cfg.store.dir
    if not directory.exists():
        yield Check("store", "OK", f"{directory}: none yet (made at the first start)")
        return
    if not os.access(directory, os.W_OK):
        yield Check("store", "FAIL", f"{directory}: not writable by this user")
        return
    logs = sorted((directory / "outbox").glob("seg-*.log"))
    damaged = []
    meta = directory / "meta.json"
    if meta.exists():
        try:
            json.loads(files.read_limited(meta, files.STORE_FILE, "store file"))
        except (OSError, ValueError):
            damaged.append(meta.name)
    for path in logs:
        try:
            replayed = seglog.load(path)
        except OSError:
            replayed = None
            damaged.append(path.name)
        if replayed is not None and replayed.damaged:
            damaged.append(path.name)
    quarantined = list(directory.rglob("quarantine/*"))
    if damaged:
        yield Check(
            "store",
            "FAIL",
            f"damaged: {', '.join(damaged)} (the kiosk repairs them from the journal at start)",
        )
    elif quarantined:
        yield Check("store", "WARN", f"{len(quarantined)} damaged file(s) kept in quarantine/")
    else:
        yield Check("store", "OK", f"{directory}: {len(logs)} segment(s), readable")


def _trust(cfg: Config, files: tuple[Path, ...]) -> Iterator[Check]:
    if not files:
        yield Check("trust", "FAIL", "no trust files: no credential can be verified")
        return
    try:
        store = load_trust(files)
    except TrustError as exc:
        yield Check("trust", "FAIL", str(exc))
        return
    newest = max(datetime.fromtimestamp(p.stat().st_mtime, UTC) for p in files)
    age_h = (datetime.now(UTC) - newest).total_seconds() / 3600
    limit = cfg.fleet.trust_max_age_h
    status: Status = "WARN" if limit and age_h > limit else "OK"
    yield Check("trust", status, f"{store.describe()}; newest file {age_h:.0f} h old")


def _fleet(cfg: Config) -> Iterator[Check]:
    if not cfg.fleet.keys:
        yield Check("fleet", "WARN", "no fleet keys: signed trust and policy pushes are refused")
        return
    try:
        keys = load_verify_keys(cfg.fleet.keys)
    except TrustError as exc:
        yield Check("fleet", "FAIL", str(exc))
        return
    yield Check("fleet", "OK", f"{len(keys)} fleet key(s) for signed pushes")


def _voice(cfg: Config) -> Iterator[Check]:
    """The screen's voices and language packs, as the kiosk will load them."""
    kiosk = cfg.kiosk
    if not kiosk.listen or not kiosk.voice:
        yield Check("voice", "SKIP", "the screen is off" if not kiosk.listen else "voice is off")
        return
    made = voice.load_packs(kiosk.voices, need_catalogue=False)
    packs = voice.load_packs(kiosk.packs)
    every = len(voice.clip_ids())
    found = ", ".join(f"{p.code} {len(p.clips)}/{every}" for p in [*packs, *made])
    if not any(p.code == voice.FALLBACK for p in [*packs, *made]):
        yield Check(
            "voice",
            "WARN",
            f"no Vietnamese voice in {kiosk.voices}: the screen is silent "
            f"(checkpoint-edge lang voices --out {kiosk.voices})",
        )
        return
    faulty = [p for p in [*packs, *made] if p.problems]
    if faulty:
        first = faulty[0]
        more = sum(len(p.problems) for p in faulty) - 1
        yield Check(
            "voice",
            "WARN",
            f"clips: {found}; {first.code}: {first.problems[0]}"
            + (f" and {more} more" if more else "")
            + f" (checkpoint-edge lang check {first.folder.parent})",
        )
        return
    yield Check("voice", "OK", f"clips: {found} (what a pack lacks, the Vietnamese voice says)")
