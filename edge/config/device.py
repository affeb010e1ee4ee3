"""The sections of the kiosk itself: its identity, camera, decoder, GPIO, lane and screen.

Fields as :mod:`edge.config.sections` describes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.config.sections import (
    doc,
    non_negative,
    parse_device_id,
    parse_existing_dir,
    parse_existing_file,
    parse_path,
    positive,
    resolve,
)
from edge.core.passage import MAX_SITE, Mode, text_problem
from edge.kiosk.auth import MIN_PIN_DIGITS, read_pin

DecoderName = Literal["auto", "zxing", "pyzbar"]


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
        return SourceSpec(kind=kind, path=resolve(arg, base))  # type: ignore[arg-type]
    if kind == "v4l2" and sep and arg.isdigit():
        return SourceSpec(kind="v4l2", index=int(arg))
    raise ValueError(
        f"must be one of images:DIR, video:FILE, picamera2[:N], v4l2:N (got {value!r})"
    )


def _pin_file(value: Any, base: Path) -> Path | None:
    """An existing file (or credential) holding an acceptable officer PIN."""
    path = parse_existing_file(value, base)
    if path is not None:
        read_pin(path)  # PinInvalid is a ValueError: reported under the key
    return path


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


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(
        metadata=doc(
            "Device id, also the MQTT client id and certificate CN (a-z, 0-9, '-').",
            parse_device_id,
        )
    )
    site: str = field(
        default="",
        metadata=doc(
            f"Checkpoint name or code, copied into passages (at most {MAX_SITE} characters).",
            _parse_site,
        ),
    )


@dataclass(frozen=True)
class CameraConfig:
    source: SourceSpec = field(
        default=SourceSpec(kind="picamera2"),
        metadata=doc(
            "images:DIR (each image in name order), video:FILE, picamera2 (or picamera2:N, "
            "the Nth camera of a Raspberry Pi), or v4l2:N (a USB camera through OpenCV).",
            _parse_source,
        ),
    )
    fps: float = field(default=10.0, metadata=doc("Frames per second.", positive))
    width: int = field(default=1280, metadata=doc("Frame width in pixels.", positive))
    height: int = field(default=720, metadata=doc("Frame height in pixels.", positive))
    hold_s: float = field(
        default=2.0,
        metadata=doc("images: seconds each image stays in view.", positive),
    )
    gap_s: float = field(
        default=1.5,
        metadata=doc("images: seconds of empty frames after each image.", positive),
    )
    stall_s: float = field(
        default=10.0,
        metadata=doc(
            "An open camera that delivers no frame for this long is a fault (alert, failsafe; "
            "the systemd watchdog is no longer fed).",
            positive,
        ),
    )
    loop: bool = field(
        default=False,
        metadata=doc("images/video: start again at the first image or frame when done."),
    )
    focus_cm: float = field(
        default=30.0,
        metadata=doc(
            "picamera2 with autofocus (Camera Module 3): lens fixed at this distance in cm "
            "(a code held 20-40 cm away); 0 = continuous autofocus in the macro range.",
            non_negative,
        ),
    )
    exposure_ev: float = field(
        default=-1.0,
        metadata=doc(
            "picamera2: exposure compensation in stops (-8 to 8); below 0 keeps a bright "
            "phone screen from washing out.",
            _ev,
        ),
    )
    metering: Literal["centre", "spot", "matrix"] = field(
        default="centre",
        metadata=doc(
            "picamera2: what the exposure is measured on: centre (centre-weighted: where the "
            "code is held), spot, matrix."
        ),
    )


@dataclass(frozen=True)
class ScanConfig:
    decoder: DecoderName = field(
        default="auto",
        metadata=doc("QR decoder: auto (zxing-cpp when importable, else pyzbar), zxing, pyzbar."),
    )
    leave_s: float = field(
        default=0.7,
        metadata=doc(
            "A code counts as gone after this many seconds without being seen; "
            "only then can it scan again.",
            positive,
        ),
    )


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = field(
        default="lgpio",
        metadata=doc("gpiozero pin factory name (lgpio, rpigpio, pigpio, native) or mock."),
    )
    approve_pin: int = field(default=5, metadata=doc("Approve button (BCM).", _pin))
    deny_pin: int = field(default=6, metadata=doc("Deny button (BCM).", _pin))
    barrier_pin: int = field(default=17, metadata=doc("Barrier relay (BCM).", _pin))
    green_led_pin: int = field(default=22, metadata=doc("Green LED (BCM).", _pin))
    red_led_pin: int = field(default=27, metadata=doc("Red LED (BCM).", _pin))
    buzzer_pin: int = field(default=23, metadata=doc("Buzzer (BCM).", _pin))
    barrier_active_high: bool = field(
        default=True,
        metadata=doc("Relay energised by a high level (false for active-low boards)."),
    )
    bounce_s: float = field(
        default=0.05, metadata=doc("Button debounce time in seconds.", positive)
    )
    barrier_max_open_s: float = field(
        default=60.0,
        metadata=doc(
            "The relay is never energised longer than this for one opening, whatever "
            "the software does (surge mode holds it open on purpose).",
            positive,
        ),
    )
    loop_pin: int = field(
        default=-1,
        metadata=doc(
            "Vehicle-loop detector (BCM; -1 = none), contact to ground while a vehicle is "
            "over the loop: the barrier closes as soon as it has passed.",
            _optional_pin,
        ),
    )
    position_pin: int = field(
        default=-1,
        metadata=doc(
            "Barrier-position switch (BCM; -1 = none), contact to ground while the barrier "
            "is up: an alert when it does not follow the relay.",
            _optional_pin,
        ),
    )
    position_timeout_s: float = field(
        default=5.0,
        metadata=doc("Seconds the barrier may take to reach the commanded position.", positive),
    )
    surge_hold_s: float = field(
        default=3.0,
        metadata=doc(
            "Holding both buttons this long toggles surge mode (the officer's local "
            "override; logged and raised as the surge-mode alert).",
            positive,
        ),
    )


@dataclass(frozen=True)
class LaneConfig:
    mode: Mode = field(
        default="officer",
        metadata=doc(
            "officer: the officer decides; auto: the policy decides alone; "
            "surge: the barrier stays open and every code is still verified and recorded; "
            "closed: the checkpoint is closed, the barrier stays shut and codes are denied."
        ),
    )
    decision_timeout_s: float = field(
        default=20.0,
        metadata=doc(
            "officer mode: no decision within this time = denied (no_decision).", positive
        ),
    )
    open_s: float = field(
        default=5.0, metadata=doc("Seconds the barrier stays open after an approval.", positive)
    )
    failsafe_retry_s: float = field(
        default=10.0,
        metadata=doc("After an internal error, seconds in failsafe before trying again.", positive),
    )
    group_s: float = field(
        default=20.0,
        metadata=doc(
            "A vehicle group (opened by the officer or a green-lane code) is complete when "
            "no occupant's code has come for this long; then it is judged as one passage.",
            positive,
        ),
    )


def _listen(value: Any, _base: Path) -> str:
    if value == "":
        return ""
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be HOST:PORT (e.g. "127.0.0.1:8080") or "" for off (got {value!r})')
    return str(value)


def _optional_path(value: Any, base: Path) -> Path | None:
    return None if value == "" else parse_path(value, base)


def _percent(value: Any, _base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"must be a whole number from 0 to 100, got {value!r}")
    return value


@dataclass(frozen=True)
class KioskConfig:
    listen: str = field(
        default="127.0.0.1:8080",
        metadata=doc(
            "Where the screen is served (HOST:PORT; the traveller view is /, the officer "
            'view /officer); "" turns it off.',
            _listen,
        ),
    )
    pin_file: Path | None = field(
        default=None,
        metadata=doc(
            f"File (or credential:NAME) holding the officer PIN for actions on the screen "
            f"({MIN_PIN_DIGITS} or more digits); empty = the screen shows, the hardware "
            "buttons decide.",
            _pin_file,
        ),
    )
    session_s: float = field(
        default=8 * 3600.0,
        metadata=doc("An officer's session on the screen lasts this long (seconds).", positive),
    )
    allow_remote: bool = field(
        default=False,
        metadata=doc(
            "Officer actions from another host (a tablet on the lane's network); off: only "
            "from this kiosk's own browser."
        ),
    )
    language: str = field(
        default="vi",
        metadata=doc("The screen's language at start (a catalogue's code: vi, en, ...)."),
    )
    catalogues: Path | None = field(
        default=None,
        metadata=doc(
            "A folder of more message catalogues (<code>.json, as edge/kiosk/i18n/): "
            "languages added without code changes.",
            parse_existing_dir,
        ),
    )
    packs: Path | None = field(
        default=None,
        metadata=doc(
            "A folder of language packs, one folder per language (manifest.json, "
            "catalogue.json, recorded clips: docs/languages.md): languages added to the "
            "switch, with their voice, without code changes (missing: a warning at start).",
            _optional_path,
        ),
    )
    voices: Path = field(
        default=Path("/usr/local/share/checkpoint-edge/voices"),
        metadata=doc(
            "The Vietnamese and English voices made at install time "
            "(`checkpoint-edge lang voices`); missing: the screen does not speak "
            "(a warning at start).",
            parse_path,
        ),
    )
    voice: bool = field(
        default=True,
        metadata=doc("The traveller's screen speaks each new state (off: silent)."),
    )
    voice_volume: int = field(
        default=80,
        metadata=doc("The voice's volume, 0-100 (% of the speaker's).", _percent),
    )
