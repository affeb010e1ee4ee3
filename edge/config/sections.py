"""The sections of the device configuration: every key, its type, default and rule.

Each field's metadata holds its description (for ``docs/configuration.md``
and ``describe_keys``) and an optional parser that converts and checks the
TOML value, raising ValueError with a message that the loader prefixes with
the key (:mod:`edge.config`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.core.passage import MAX_PASSAGE_BYTES, MAX_SITE, Mode, text_problem
from edge.kiosk.auth import MIN_PIN_DIGITS, read_pin
from edge.scan import declaration, greenlane, personal_qr, registry

DEVICE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

DecoderName = Literal["auto", "zxing", "pyzbar"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``[camera] source``: which kind of camera, and its path or index."""

    kind: Literal["images", "video", "picamera2", "v4l2"]
    path: Path | None = None
    index: int | None = None

    def describe(self) -> str:
        """The source as written in a config file (for logs and status)."""
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        if self.index is not None:
            return f"{self.kind}:{self.index}"
        return self.kind


Parser = Callable[[Any, Path], Any]


def _doc(text: str, parse: Parser | None = None) -> dict[str, Any]:
    return {"doc": text, "parse": parse}


def _parse_device_id(value: Any, _base: Path) -> str:
    if not isinstance(value, str) or not DEVICE_ID_RE.fullmatch(value):
        raise ValueError(
            "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def _parse_site(value: Any, _base: Path) -> str:
    problem = text_problem(value, MAX_SITE)
    if problem is not None:
        raise ValueError(
            f"{problem} (a site goes into every passage: at most {MAX_SITE} characters)"
        )
    return str(value)


def _parse_source(value: Any, base: Path) -> SourceSpec:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    kind, sep, arg = value.partition(":")
    if kind == "picamera2" and not sep:
        return SourceSpec(kind="picamera2")
    if kind == "picamera2" and arg.isdigit():
        return SourceSpec(kind="picamera2", index=int(arg))
    if kind in ("images", "video") and sep and arg:
        return SourceSpec(kind=kind, path=_resolve(arg, base))  # type: ignore[arg-type]
    if kind == "v4l2" and sep and arg.isdigit():
        return SourceSpec(kind="v4l2", index=int(arg))
    raise ValueError(
        f"must be one of images:DIR, video:FILE, picamera2[:N], v4l2:N (got {value!r})"
    )


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _parse_existing_dir(value: Any, base: Path) -> Path | None:
    if value == "":
        return None
    path = _parse_path(value, base)
    if not path.is_dir():
        raise ValueError(f"folder not found: {path}")
    return path


def _parse_path(value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty path")
    return _resolve(value, base)


CREDENTIAL = "credential:"
# where the unit's LoadCredential= lines read the secrets from (root only, 0700)
INSTALLED_CREDENTIALS = Path("/etc/checkpoint-edge/credentials")


def _parse_existing_file(value: Any, base: Path) -> Path | None:
    if value == "":
        return None
    if isinstance(value, str) and value.startswith(CREDENTIAL):
        return _credential(value.removeprefix(CREDENTIAL))
    path = _parse_path(value, base)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _pin_file(value: Any, base: Path) -> Path | None:
    """An existing file (or credential) holding an acceptable officer PIN."""
    path = _parse_existing_file(value, base)
    if path is not None:
        read_pin(path)  # PinInvalid is a ValueError: reported under the key
    return path


def _credential(name: str) -> Path:
    """``credential:NAME``: a secret systemd hands the service (``LoadCredential=NAME:...``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"credential:{name}: not a credential name")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory and os.access(INSTALLED_CREDENTIALS, os.R_OK | os.X_OK):
        directory = str(INSTALLED_CREDENTIALS)  # root's tools (doctor) read them in place
    if not directory:
        raise ValueError(
            f"credential:{name}: no systemd credentials here: CREDENTIALS_DIRECTORY is not "
            f"set and {INSTALLED_CREDENTIALS} is not readable (run as root, or inside the "
            f"service, whose LoadCredential={name}:... hands it over)"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise ValueError(f"credential:{name}: not among the service's credentials ({path})")
    return path


MAX_NUMBER = 1_000_000  # no duration, rate or size here is sensibly larger


def _positive(value: Any, _base: Path) -> Any:
    if not 0 < value <= MAX_NUMBER:  # also refuses nan
        raise ValueError(f"must be greater than 0 and at most {MAX_NUMBER} (got {value})")
    return value


def _receive_maximum(value: Any, _base: Path) -> Any:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1 to 65535 (got {value})")
    return value


def _non_negative(value: Any, _base: Path) -> Any:
    if not 0 <= value <= MAX_NUMBER:  # also refuses nan
        raise ValueError(f"must be 0 to {MAX_NUMBER} (got {value})")
    return value


def _at_least_1(value: Any, _base: Path) -> Any:
    if not 1 <= value <= MAX_NUMBER:
        raise ValueError(f"must be 1 to {MAX_NUMBER} (got {value})")
    return value


def _ev(value: Any, _base: Path) -> float:
    if not -8 <= value <= 8:
        raise ValueError(f"must be -8 to 8 stops (got {value})")
    return float(value)


def _pin(value: Any, _base: Path) -> int:
    if not 0 <= value <= 27:
        raise ValueError(f"must be a BCM GPIO number 0-27 (got {value})")
    return int(value)


def _optional_pin(value: Any, base: Path) -> int:
    return -1 if value == -1 else _pin(value, base)


def _port(value: Any, _base: Path) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port 1-65535 (got {value})")
    return int(value)


def _non_empty(value: Any, _base: Path) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return str(value)


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(
        metadata=_doc(
            "Device id, also the MQTT client id and certificate CN (a-z, 0-9, '-').",
            _parse_device_id,
        )
    )
    site: str = field(
        default="",
        metadata=_doc(
            f"Checkpoint name or code, copied into passages (at most {MAX_SITE} characters).",
            _parse_site,
        ),
    )


@dataclass(frozen=True)
class CameraConfig:
    source: SourceSpec = field(
        default=SourceSpec(kind="picamera2"),
        metadata=_doc(
            "images:DIR (each image in name order), video:FILE, picamera2 (or picamera2:N, "
            "the Nth camera of a Raspberry Pi), or v4l2:N (a USB camera through OpenCV).",
            _parse_source,
        ),
    )
    fps: float = field(default=10.0, metadata=_doc("Frames per second.", _positive))
    width: int = field(default=1280, metadata=_doc("Frame width in pixels.", _positive))
    height: int = field(default=720, metadata=_doc("Frame height in pixels.", _positive))
    hold_s: float = field(
        default=2.0,
        metadata=_doc("images: seconds each image stays in view.", _positive),
    )
    gap_s: float = field(
        default=1.5,
        metadata=_doc("images: seconds of empty frames after each image.", _positive),
    )
    stall_s: float = field(
        default=10.0,
        metadata=_doc(
            "An open camera that delivers no frame for this long is a fault (alert, failsafe; "
            "the systemd watchdog is no longer fed).",
            _positive,
        ),
    )
    loop: bool = field(
        default=False,
        metadata=_doc("images/video: start again at the first image or frame when done."),
    )
    focus_cm: float = field(
        default=30.0,
        metadata=_doc(
            "picamera2 with autofocus (Camera Module 3): lens fixed at this distance in cm "
            "(a code held 20-40 cm away); 0 = continuous autofocus in the macro range.",
            _non_negative,
        ),
    )
    exposure_ev: float = field(
        default=-1.0,
        metadata=_doc(
            "picamera2: exposure compensation in stops (-8 to 8); below 0 keeps a bright "
            "phone screen from washing out.",
            _ev,
        ),
    )
    metering: Literal["centre", "spot", "matrix"] = field(
        default="centre",
        metadata=_doc(
            "picamera2: what the exposure is measured on: centre (centre-weighted: where the "
            "code is held), spot, matrix."
        ),
    )


@dataclass(frozen=True)
class ScanConfig:
    decoder: DecoderName = field(
        default="auto",
        metadata=_doc("QR decoder: auto (zxing-cpp when importable, else pyzbar), zxing, pyzbar."),
    )
    leave_s: float = field(
        default=0.7,
        metadata=_doc(
            "A code counts as gone after this many seconds without being seen; "
            "only then can it scan again.",
            _positive,
        ),
    )


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = field(
        default="lgpio",
        metadata=_doc("gpiozero pin factory name (lgpio, rpigpio, pigpio, native) or mock."),
    )
    approve_pin: int = field(default=5, metadata=_doc("Approve button (BCM).", _pin))
    deny_pin: int = field(default=6, metadata=_doc("Deny button (BCM).", _pin))
    barrier_pin: int = field(default=17, metadata=_doc("Barrier relay (BCM).", _pin))
    green_led_pin: int = field(default=22, metadata=_doc("Green LED (BCM).", _pin))
    red_led_pin: int = field(default=27, metadata=_doc("Red LED (BCM).", _pin))
    buzzer_pin: int = field(default=23, metadata=_doc("Buzzer (BCM).", _pin))
    barrier_active_high: bool = field(
        default=True,
        metadata=_doc("Relay energised by a high level (false for active-low boards)."),
    )
    bounce_s: float = field(
        default=0.05, metadata=_doc("Button debounce time in seconds.", _positive)
    )
    barrier_max_open_s: float = field(
        default=60.0,
        metadata=_doc(
            "The relay is never energised longer than this for one opening, whatever "
            "the software does (surge mode holds it open on purpose).",
            _positive,
        ),
    )
    loop_pin: int = field(
        default=-1,
        metadata=_doc(
            "Vehicle-loop detector (BCM; -1 = none), contact to ground while a vehicle is "
            "over the loop: the barrier closes as soon as it has passed.",
            _optional_pin,
        ),
    )
    position_pin: int = field(
        default=-1,
        metadata=_doc(
            "Barrier-position switch (BCM; -1 = none), contact to ground while the barrier "
            "is up: an alert when it does not follow the relay.",
            _optional_pin,
        ),
    )
    position_timeout_s: float = field(
        default=5.0,
        metadata=_doc("Seconds the barrier may take to reach the commanded position.", _positive),
    )
    surge_hold_s: float = field(
        default=3.0,
        metadata=_doc(
            "Holding both buttons this long toggles surge mode (the officer's local "
            "override; logged and raised as the surge-mode alert).",
            _positive,
        ),
    )


@dataclass(frozen=True)
class LaneConfig:
    mode: Mode = field(
        default="officer",
        metadata=_doc(
            "officer: the officer decides; auto: the policy decides alone; "
            "surge: the barrier stays open and every code is still verified and recorded; "
            "closed: the checkpoint is closed, the barrier stays shut and codes are denied."
        ),
    )
    decision_timeout_s: float = field(
        default=20.0,
        metadata=_doc(
            "officer mode: no decision within this time = denied (no_decision).", _positive
        ),
    )
    open_s: float = field(
        default=5.0, metadata=_doc("Seconds the barrier stays open after an approval.", _positive)
    )
    failsafe_retry_s: float = field(
        default=10.0,
        metadata=_doc(
            "After an internal error, seconds in failsafe before trying again.", _positive
        ),
    )
    group_s: float = field(
        default=20.0,
        metadata=_doc(
            "A vehicle group (opened by the officer or a green-lane code) is complete when "
            "no occupant's code has come for this long; then it is judged as one passage.",
            _positive,
        ),
    )


@dataclass(frozen=True)
class MqttConfig:
    host: str = field(default="localhost", metadata=_doc("Broker host name.", _non_empty))
    port: int = field(default=1883, metadata=_doc("Broker port (8883 for TLS).", _port))
    keepalive_s: int = field(default=30, metadata=_doc("MQTT keepalive in seconds.", _positive))
    tls: bool = field(default=False, metadata=_doc("Connect with TLS."))
    ca_file: Path | None = field(
        default=None,
        metadata=_doc("CA certificate file (PEM); empty = system CAs.", _parse_existing_file),
    )
    cert_file: Path | None = field(
        default=None,
        metadata=_doc("Client certificate file (PEM) for TLS client auth.", _parse_existing_file),
    )
    key_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Client private key file (PEM) for TLS client auth, or credential:NAME for a "
            "systemd credential (the unit's LoadCredential=NAME:FILE).",
            _parse_existing_file,
        ),
    )
    username: str = field(default="", metadata=_doc("Username; empty = none."))
    password_file: Path | None = field(
        default=None,
        metadata=_doc(
            "File holding the password (never the password itself), or credential:NAME.",
            _parse_existing_file,
        ),
    )
    reconnect_min_s: float = field(
        default=1.0,
        metadata=_doc("Reconnect backoff base in seconds (waits are jittered).", _positive),
    )
    reconnect_max_s: float = field(
        default=30.0, metadata=_doc("Longest reconnect wait in seconds.", _positive)
    )
    inflight: int = field(
        default=10,
        metadata=_doc("Passages sent and awaiting PUBACK at most at once.", _positive),
    )
    ack: Literal["ingest", "broker"] = field(
        default="ingest",
        metadata=_doc(
            "Who confirms a passage before it leaves the outbox: the central ingest "
            "(cp/v1/<id>/ack), or the broker's PUBACK (no ingest: simulation, tests)."
        ),
    )
    ack_timeout_s: float = field(
        default=120.0,
        metadata=_doc(
            "A passage the broker accepted but the ingest has not acknowledged this long "
            "(while the ingest is online) is sent again.",
            _positive,
        ),
    )


def _segment_size(value: Any, _base: Path) -> int:
    if not 10 <= value <= 1000:
        raise ValueError(f"must be 10 to 1000 (got {value})")
    return int(value)


@dataclass(frozen=True)
class StoreConfig:
    dir: Path = field(
        default=Path("/var/lib/checkpoint-edge"),
        metadata=_doc("Directory of the passage store.", _parse_path),
    )
    retention_days: int = field(
        default=30,
        metadata=_doc(
            "Days acknowledged passages are kept in the local archive (personal data).", _positive
        ),
    )
    segment_size: int = field(
        default=100,
        metadata=_doc(
            "Passages per outbox segment file (bounds the bytes written per passage).",
            _segment_size,
        ),
    )


TRAVELLER_FIELDS = registry.TRAVELLER_FIELDS  # every field some format fills


def _subset(allowed: tuple[str, ...]) -> Parser:
    def parse(value: Any, _base: Path) -> tuple[str, ...]:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown {', '.join(map(repr, bad))} (allowed: {', '.join(allowed)})")
        return tuple(dict.fromkeys(value))

    return parse


def _province_codes(value: Any, _base: Path) -> tuple[str, ...]:
    bad = [v for v in value if not re.fullmatch(r"[0-9]{2}", v)]
    if bad:
        raise ValueError(f"province codes are 2 digits (got {', '.join(map(repr, bad))})")
    return tuple(value)


def _paths(value: Any, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of file paths")
    return tuple(_resolve(v, base) for v in value)


@dataclass(frozen=True)
class TrustConfig:
    files: tuple[Path, ...] = field(
        default=(),
        metadata=_doc(
            "Trust lists, DCC signer certificates (PEM/DER) and issuer public keys (PEM/DER).",
            _paths,
        ),
    )


@dataclass(frozen=True)
class PolicyConfig:
    accept: tuple[str, ...] = field(
        default=(declaration.KIND, personal_qr.KIND),
        metadata=_doc(
            f"Formats that can approve a passage ({', '.join(registry.AUTHORISING)}); "
            "codes that only identify (an ID card) never can.",
            _subset(registry.AUTHORISING),
        ),
    )
    issuers: tuple[str, ...] = field(
        default=(), metadata=_doc("Declaration issuers (iss) accepted; empty = any trusted one.")
    )
    max_declaration_age_h: float = field(
        default=72.0,
        metadata=_doc("A declaration issued longer ago than this is denied.", _positive),
    )
    deny_symptoms: bool = field(default=True, metadata=_doc("Deny when symptoms are declared."))
    deny_exposure: bool = field(default=True, metadata=_doc("Deny when exposure is declared."))
    proof_zones: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Origin province codes whose travellers must show a vaccination certificate "
            "or a recent negative test.",
            _province_codes,
        ),
    )
    proof_doses: int = field(
        default=2, metadata=_doc("Vaccine doses that count as proof.", _positive)
    )
    proof_test_max_age_h: float = field(
        default=72.0, metadata=_doc("A negative test counts as proof this long.", _positive)
    )
    accept_declared_health: bool = field(
        default=False,
        metadata=_doc("Let doses and tests declared in the declaration count as proof."),
    )
    require_id_card: bool = field(
        default=False,
        metadata=_doc("The ID card must be shown too, and match the declaration's ID number."),
    )
    replay_window_s: float = field(
        default=600.0,
        metadata=_doc(
            "A credential approved at this lane within this many seconds is replayed (0 = off).",
            _non_negative,
        ),
    )
    clock_skew_s: float = field(
        default=300.0,
        metadata=_doc(
            "Tolerance for credentials issued slightly in the future (phone clocks).",
            _non_negative,
        ),
    )


@dataclass(frozen=True)
class PassageConfig:
    fields: tuple[str, ...] = field(
        default=("declaration_id", "id_number", "name", "origin", "destination", "plate"),
        metadata=_doc(
            "Traveller fields recorded in each passage (personal data: only what tracing needs).",
            _subset(TRAVELLER_FIELDS),
        ),
    )


@dataclass(frozen=True)
class FleetConfig:
    telemetry_s: float = field(
        default=60.0,
        metadata=_doc(
            "Seconds between telemetry messages (cp/v1/<id>/telemetry), at least 1.", _at_least_1
        ),
    )
    keys: tuple[Path, ...] = field(
        default=(),
        metadata=_doc(
            "Fleet public keys (PEM) that sign trust-list and policy pushes; "
            "empty = every push is refused.",
            _paths,
        ),
    )
    remote_config: bool = field(
        default=True,
        metadata=_doc("Apply a newer valid config/desired from operators (else report refused)."),
    )
    disk_low_mb: float = field(
        default=200.0,
        metadata=_doc(
            "Raise the disk-low alert below this much free space at the store (MB).", _non_negative
        ),
    )
    trust_max_age_h: float = field(
        default=168.0,
        metadata=_doc(
            "Raise trust-stale when the newest trust file or push is older (hours; 0 = off).",
            _non_negative,
        ),
    )
    clock_check: bool = field(
        default=True,
        metadata=_doc("Raise clock-unsynchronised when the kernel says the clock is not synced."),
    )
    rules_max_age_h: float = field(
        default=0.0,
        metadata=_doc(
            "Raise rules-stale when the rule set in use (a push, or [rules] files) is older "
            "(hours; 0 = off: the bundled rules never go stale).",
            _non_negative,
        ),
    )


def _listen(value: Any, _base: Path) -> str:
    if value == "":
        return ""
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be HOST:PORT (e.g. "127.0.0.1:8080") or "" for off (got {value!r})')
    return str(value)


@dataclass(frozen=True)
class KioskConfig:
    listen: str = field(
        default="127.0.0.1:8080",
        metadata=_doc(
            "Where the screen is served (HOST:PORT; the traveller view is /, the officer "
            'view /officer); "" turns it off.',
            _listen,
        ),
    )
    pin_file: Path | None = field(
        default=None,
        metadata=_doc(
            f"File (or credential:NAME) holding the officer PIN for actions on the screen "
            f"({MIN_PIN_DIGITS} or more digits); empty = the screen shows, the hardware "
            "buttons decide.",
            _pin_file,
        ),
    )
    session_s: float = field(
        default=8 * 3600.0,
        metadata=_doc("An officer's session on the screen lasts this long (seconds).", _positive),
    )
    allow_remote: bool = field(
        default=False,
        metadata=_doc(
            "Officer actions from another host (a tablet on the lane's network); off: only "
            "from this kiosk's own browser."
        ),
    )
    language: str = field(
        default="vi",
        metadata=_doc("The screen's language at start (a catalogue's code: vi, en, ...)."),
    )
    catalogues: Path | None = field(
        default=None,
        metadata=_doc(
            "A folder of more message catalogues (<code>.json, as edge/kiosk/i18n/): "
            "languages added without code changes.",
            _parse_existing_dir,
        ),
    )


def _country(value: Any, _base: Path) -> str:
    if not re.fullmatch(r"[A-Z]{2}", str(value)):
        raise ValueError(f"must be an ISO 3166-1 alpha-2 code, upper case (got {value!r})")
    return str(value)


@dataclass(frozen=True)
class RulesConfig:
    enabled: bool = field(
        default=True,
        metadata=_doc(
            "Judge EU DCCs (vaccine passports) by business rules in CertLogic; off: by the "
            "fixed [policy] proof_* keys."
        ),
    )
    country: str = field(
        default="VN",
        metadata=_doc("The country of arrival: whose acceptance rules apply.", _country),
    )
    files: tuple[Path, ...] = field(
        default=(),
        metadata=_doc(
            "Rule folders (<RuleId>/rule.json) or folders of them; empty = the bundled "
            "rules of Vietnam (edge/rules/vn). A signed fleet push replaces them.",
            _paths,
        ),
    )
    value_sets: Path | None = field(
        default=None,
        metadata=_doc(
            "Value sets JSON the rules refer to (external.valueSets); empty = the bundled one "
            "(with the bundled rules) or none.",
            _parse_existing_file,
        ),
    )


def loopback_url(url: str) -> bool:
    """A lookup URL template's host is this machine (a local proxy, a test service)."""
    host = urllib.parse.urlsplit(url.format(kind="k", key="k")).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _lookup_url(value: Any, _base: Path) -> str:
    if value == "":
        return ""
    text = str(value)
    scheme = text.partition("://")[0]
    if scheme not in ("http", "https") or "{key}" not in text:
        raise ValueError(
            "must be an http:// or https:// URL template with {key} (and optionally "
            f'{{kind}}), e.g. "https://qr.example.vn/check/{{kind}}/{{key}}" (got {text[:60]!r})'
        )
    try:
        text.format(kind="k", key="k")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"only {{kind}} and {{key}} may be filled in ({exc})") from exc
    return text


@dataclass(frozen=True)
class LookupConfig:
    url: str = field(
        default="",
        metadata=_doc(
            "Online confirmation of unsigned codes: a URL template with {kind} and {key} "
            "(a personal QR's QID, a green-lane code's token); empty = off (offline only).",
            _lookup_url,
        ),
    )
    kinds: tuple[str, ...] = field(
        default=(personal_qr.KIND, greenlane.KIND),
        metadata=_doc(
            "Formats looked up (those with something to look up).",
            _subset(registry.LOOKED_UP),
        ),
    )
    timeout_s: float = field(
        default=1.5,
        metadata=_doc(
            "An answer later than this is unavailable: the officer decides "
            "(lookup_unavailable); the lane never waits for it.",
            _positive,
        ),
    )
    cache_s: float = field(
        default=600.0,
        metadata=_doc(
            "How long a confirmed or refused answer is reused (seconds; 0 = never).",
            _non_negative,
        ),
    )
    token_file: Path | None = field(
        default=None,
        metadata=_doc(
            "File (or credential:NAME) holding a bearer token sent with each lookup; needs an "
            "https:// url (or a loopback one).",
            _parse_existing_file,
        ),
    )
    ca_file: Path | None = field(
        default=None,
        metadata=_doc("CA certificate file (PEM) of the service; empty = system CAs.",
                      _parse_existing_file),
    )  # fmt: skip
    cert_file: Path | None = field(
        default=None,
        metadata=_doc("Client certificate file (PEM), for a service that asks for one.",
                      _parse_existing_file),
    )  # fmt: skip
    key_file: Path | None = field(
        default=None,
        metadata=_doc("Its private key file (PEM), or credential:NAME.", _parse_existing_file),
    )


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = field(default="info", metadata=_doc("Log level."))


def _database_url(value: Any, base: Path) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if value.startswith("sqlite:///"):
        path = value.removeprefix("sqlite:///")
        if not path:
            raise ValueError("sqlite:///PATH needs a path")
        return "sqlite:///" + str(_resolve(path, base))  # relative to the config file
    if value.startswith(("postgresql://", "postgres://")):
        return value
    raise ValueError(f"must be sqlite:///PATH or a postgresql:// URL (got {value!r})")


def _client_id(value: Any, base: Path) -> str:
    return _parse_device_id(value, base)


def _group(value: Any, _base: Path) -> str:
    if value and not DEVICE_ID_RE.fullmatch(value):
        raise ValueError("must be empty or a-z, 0-9, '-' (an MQTT topic level)")
    return str(value)


@dataclass(frozen=True)
class IngestConfig:
    database: str = field(
        default="sqlite:///passages.db",
        metadata=_doc(
            "sqlite:///PATH (relative to this file; sqlite:////abs/path for an absolute one) "
            "or a postgresql:// URL.",
            _database_url,
        ),
    )
    client_id: str = field(
        default="ingest-1",
        metadata=_doc("MQTT client id of this worker (each worker its own).", _client_id),
    )
    group: str = field(
        default="ingest",
        metadata=_doc(
            "Shared-subscription group: workers with the same group share the passages "
            "($share/<group>/cp/v1/+/passage); empty = every worker gets every passage.",
            _group,
        ),
    )
    session_expiry_s: int = field(
        default=7 * 24 * 3600,
        metadata=_doc(
            "How long the broker keeps this worker's session and queue while it is away.",
            _positive,
        ),
    )
    batch_size: int = field(
        default=500, metadata=_doc("Passages stored per database transaction at most.", _positive)
    )
    batch_wait_s: float = field(
        default=0.0,
        metadata=_doc(
            "Seconds a transaction waits for more passages once the queue is empty (0: it "
            "takes what is waiting; under load the next batch gathers while one is stored).",
            _non_negative,
        ),
    )
    receive_maximum: int = field(
        default=2000,
        metadata=_doc(
            "Passages the broker may hand this worker before it has stored and PUBACKed "
            "them (MQTT v5 Receive Maximum, 1-65535): the depth of its pipeline, best about "
            "4 batches. The "
            "broker's max_inflight_messages does not apply to a worker that sets it.",
            _receive_maximum,
        ),
    )
    retention_days: int = field(
        default=30,
        metadata=_doc(
            "Days the personal data of a passage (ID numbers, names, plates, traveller fields, "
            "rejected messages) is kept, counted from when it was decided or received, "
            "whichever is earlier; then it is purged and only the passage's counts remain. "
            "0 keeps it forever.",
            _non_negative,
        ),
    )
    max_message_bytes: int = field(
        default=MAX_PASSAGE_BYTES,
        metadata=_doc(
            "Largest passage message taken (bytes); a larger one is rejected unread. "
            "The broker's own limit (deploy/mosquitto) should be at least this.",
            _positive,
        ),
    )
