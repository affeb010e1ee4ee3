"""The passage message, typed once: what a device may build and what the ingest stores.

``docs/passage.schema.json`` describes the message for people; this module is
the same model in code, used on both sides of the broker:

- the device fits what it read from a traveller's codes into the model
  (:func:`fit_traveller`: text cleaned of control characters, cut to the
  field's length, values of the wrong shape left out), so it never builds a
  passage the ingest would refuse;
- the ingest checks every message against it (:func:`check_passage`) before
  anything touches the database: every key known, every value of its type,
  every integer within 64 bits, every string free of NUL, control characters
  and lone surrogates and within its length, every array bounded. What fails
  is refused with a reason naming the field (never its value: it may be
  personal data).

A test holds the two to each other: every message a device builds passes the
check, whatever its codes said.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

from edge.core.times import parse_iso
from edge.errors import EdgeError
from edge.scan import registry
from edge.scan.text import clean_text

SCHEMA_VERSION = 1
# A passage is ~1-3 KB; the largest a device can build (MAX_CREDENTIALS codes and
# as many occupants, every field at its length: ~0.4 MB, a test builds it) stays
# under this. The broker's limit is above it (deploy/mosquitto); the ingest
# refuses anything larger before parsing it.
MAX_PASSAGE_BYTES = 1024 * 1024
INT64_MAX = 2**63 - 1
MAX_CREDENTIALS = 512  # codes in one passage: a coach of travellers, two codes each
MAX_REASONS = 256

# The passage's vocabularies: each a type here, and its values in order (for checks
# and messages). The lane, the policy and the config use these types.
Decision = Literal["approved", "denied"]
DecidedBy = Literal["officer", "policy", "operator"]
Mode = Literal["officer", "auto", "surge", "closed"]  # the lane's mode, recorded
Outcome = Literal["approve", "refer", "deny"]  # the policy's verdict
LookupStatus = Literal["pending", "confirmed", "refused", "unavailable"]
VehicleKind = Literal["car", "bus", "truck", "van", "motorbike", "other"]
OpenedBy = Literal["officer", "greenlane"]

DECISIONS: tuple[Decision, ...] = get_args(Decision)
DECIDED_BY: tuple[DecidedBy, ...] = get_args(DecidedBy)
MODES: tuple[Mode, ...] = get_args(Mode)
VERDICTS: tuple[Outcome | None, ...] = (*get_args(Outcome), None)
LOOKUPS: tuple[LookupStatus | None, ...] = (*get_args(LookupStatus), None)
VEHICLE_KINDS: tuple[VehicleKind, ...] = get_args(VehicleKind)
OPENED_BY: tuple[OpenedBy, ...] = get_args(OpenedBy)

PID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.ASCII)
DEVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.ASCII)
TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", re.ASCII)
REASON = re.compile(r"[a-z0-9_]{1,64}(:[A-Z]{2}-[A-Z]{2}-[0-9]{4})?", re.ASCII)
SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
PLATE = re.compile(r"[0-9A-Z][0-9A-Z.-]{1,14}", re.ASCII)
MAX_SITE = 100


# Unicode's control characters (category Cc: C0, DEL, C1) and surrogates (Cs): no
# database text, terminal or spreadsheet should receive them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class BadPassage(EdgeError, ValueError):
    """A message on a passage topic that is not a passage (the reason says why, naming
    the field, never its value)."""


# -- text --------------------------------------------------------------------


def text_problem(value: object, limit: int) -> str | None:
    """Why ``value`` is not text a database and a terminal can hold; None when it is."""
    if not isinstance(value, str):
        return "not a string"
    if len(value) > limit:
        return f"longer than {limit} characters"
    if _UNSAFE.search(value):
        return "holds a control character or a lone surrogate"
    return None


def fit_text(value: object, limit: int) -> str:
    """Text from a traveller's code made to fit: cleaned (no control or format
    characters, no lone surrogates), cut to ``limit`` characters."""
    if not isinstance(value, str):
        return ""
    return clean_text(value)[:limit].strip()


# -- traveller fields ----------------------------------------------------------

Field = Callable[[Any], Any]  # the field's value fitted, or None to leave it out


Spec = tuple[Field, Field]  # (fit, check)


def _text(limit: int, pattern: re.Pattern[str] | None = None) -> Spec:
    """(fit, check) for a text field of at most ``limit`` characters (of ``pattern``)."""

    def fit(value: Any) -> str | None:
        text = fit_text(value, limit)
        if not text or (pattern is not None and not pattern.fullmatch(text)):
            return None
        return text

    def check(value: Any) -> str | None:
        problem = text_problem(value, limit)
        if problem is None and pattern is not None and not pattern.fullmatch(value):
            problem = "not of the field's form"
        return problem

    return fit, check


_PLACE_KEYS = frozenset(("province", "district", "text"))
_PROVINCE = re.compile(r"[0-9]{2}", re.ASCII)
_DISTRICT = re.compile(r"([0-9]{3})?", re.ASCII)


def _place() -> Spec:
    def fit(value: Any) -> dict[str, str] | None:
        if not isinstance(value, Mapping):
            return None
        province, district = value.get("province"), value.get("district", "")
        if not (isinstance(province, str) and _PROVINCE.fullmatch(province)):
            return None
        if not (isinstance(district, str) and _DISTRICT.fullmatch(district)):
            district = ""
        return {
            "province": province,
            "district": district,
            "text": fit_text(value.get("text"), 200),
        }

    def check(value: Any) -> str | None:
        if type(value) is not dict or value.keys() != _PLACE_KEYS:
            return "not a place (province, district, text)"
        for key, pattern in (("province", _PROVINCE), ("district", _DISTRICT)):
            if not isinstance(value[key], str) or not pattern.fullmatch(value[key]):
                return f"{key} not of its form"
        problem = text_problem(value["text"], 200)
        return None if problem is None else f"text {problem}"

    return fit, check


TRAVELLER: Mapping[str, Spec] = {
    "declaration_id": _text(40, re.compile(r"[A-Za-z0-9-]{4,40}", re.ASCII)),
    "id_number": _text(12, re.compile(r"[0-9]{9}|[0-9]{12}", re.ASCII)),
    "name": _text(200),
    "birth_date": _text(10, re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?", re.ASCII)),
    "sex": _text(1, re.compile("[MFX]", re.ASCII)),
    "phone": _text(16, re.compile(r"\+?[0-9]{1,15}", re.ASCII)),
    "origin": _place(),
    "destination": _place(),
    "plate": _text(15),
    "transport": _text(20),
    "purpose": _text(100),
    "dcc_id": _text(80),
    "qid": _text(64),
}


def fit_traveller(values: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The chosen traveller fields, each fitted to the model; a value that cannot be
    fitted (an ID number of the wrong form) is left out, as an unknown one would be."""
    out: dict[str, Any] = {}
    for name in fields:
        spec = TRAVELLER.get(name)
        if spec is None or values.get(name) in (None, ""):
            continue
        fitted = spec[0](values[name])
        if fitted not in (None, ""):
            out[name] = fitted
    return out


# -- the check -------------------------------------------------------------------

_REQUIRED = (
    "v", "pid", "seq", "device", "site", "ts", "decision", "decided_by", "reasons", "mode",
    "verdict", "credentials", "traveller",
)  # fmt: skip
_REQUIRED_SET = frozenset(_REQUIRED)
_KEYS = frozenset((*_REQUIRED, "occupants", "vehicle"))
_CREDENTIAL_KEYS = frozenset(("kind", "sha256", "ref", "valid", "reasons", "lookup"))
_CREDENTIAL_NEEDED = _CREDENTIAL_KEYS - {"lookup"}
_KINDS = frozenset(registry.KINDS)
_LOOKUPS = frozenset(LOOKUPS)


def check_passage(msg: Any, device: str | None = None) -> dict[str, Any]:
    """``msg`` if it is a passage (of ``device``, when given); raise BadPassage naming the
    first field that is not as the model says."""
    if type(msg) is not dict:
        raise BadPassage("not a JSON object")
    keys = msg.keys()
    if not keys >= _REQUIRED_SET:
        raise BadPassage(f"{next(k for k in _REQUIRED if k not in msg)} missing")
    if keys - _KEYS:
        raise BadPassage(f"unknown key {_name(sorted(keys - _KEYS)[0])}")
    _header(msg, device)
    _reasons(msg["reasons"], "reasons")
    credentials = msg["credentials"]
    if type(credentials) is not list or len(credentials) > MAX_CREDENTIALS:
        raise BadPassage(f"credentials must be a list of at most {MAX_CREDENTIALS}")
    for i, cred in enumerate(credentials):
        _credential(cred, i)
    _traveller(msg["traveller"], "traveller")
    if "occupants" in msg:
        _occupants(msg["occupants"], len(credentials))
    if "vehicle" in msg:
        _vehicle(msg["vehicle"])
    return msg


def _header(msg: dict[str, Any], device: str | None) -> None:
    """The passage's own fields: identity, time, decision. (The ingest's hot path: checks
    inline, messages built only when something is wrong.)"""
    if type(msg["v"]) is not int or msg["v"] != SCHEMA_VERSION:
        raise BadPassage(f"v must be {SCHEMA_VERSION}")
    pid, seq, dev, ts = msg["pid"], msg["seq"], msg["device"], msg["ts"]
    if type(pid) is not str or not PID.fullmatch(pid):
        raise BadPassage("pid must be a UUID v4 in lower case")
    if type(seq) is not int or not 1 <= seq <= INT64_MAX:
        raise BadPassage("seq must be an integer from 1 to 2^63-1")
    if type(dev) is not str or not DEVICE.fullmatch(dev):
        raise BadPassage("device must be a device id")
    if device is not None and dev != device:
        raise BadPassage(f"device {dev!r} published on the topic of {device!r}")
    _problem("site", text_problem(msg["site"], MAX_SITE))
    if type(ts) is not str or not TS.fullmatch(ts):
        raise BadPassage("ts must be ISO 8601 UTC with milliseconds and Z")
    try:
        parse_iso(ts)  # the form is checked above: is it a real time?
    except ValueError:
        raise BadPassage("ts is not a real time") from None
    for key, allowed in _CHOICES:
        value = msg[key]
        if not ((value is None or type(value) is str) and value in allowed):
            raise BadPassage(f"{key} must be one of {', '.join(map(str, allowed))}")


_CHOICES = (
    ("decision", frozenset(DECISIONS)),
    ("decided_by", frozenset(DECIDED_BY)),
    ("mode", frozenset(MODES)),
    ("verdict", frozenset(VERDICTS)),
)


def _name(key: str) -> str:
    """A key as a reason may show it (keys come from outside: no control characters)."""
    problem = text_problem(key, 40)
    return repr(key) if problem is None else "(unprintable)"


def _problem(where: str, problem: str | None) -> None:
    if problem is not None:
        raise BadPassage(f"{where}: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_choice(value: Any, allowed: tuple[Any, ...]) -> bool:
    return (value is None or isinstance(value, str)) and value in allowed


def _reasons(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) > MAX_REASONS:
        raise BadPassage(f"{where} must be a list of at most {MAX_REASONS}")
    if not all(isinstance(r, str) and REASON.fullmatch(r) for r in value):
        raise BadPassage(f"{where} holds something that is not a reason code")


def _credential(cred: Any, i: int) -> None:
    where = f"credentials[{i}]"  # only read when something is wrong
    if type(cred) is not dict:
        raise BadPassage(f"{where} is not an object")
    keys = cred.keys()
    if not keys >= _CREDENTIAL_NEEDED or keys - _CREDENTIAL_KEYS:
        raise BadPassage(f"{where} must have kind, sha256, ref, valid, reasons (and lookup)")
    kind = cred["kind"]
    if type(kind) is not str or kind not in _KINDS:
        raise BadPassage(f"{where}.kind is not a known format")
    sha = cred["sha256"]
    if type(sha) is not str or not SHA256.fullmatch(sha):
        raise BadPassage(f"{where}.sha256 must be 64 hex digits")
    ref = cred["ref"]
    if ref is not None and not (type(ref) is str and SHA256.fullmatch(ref)):
        raise BadPassage(f"{where}.ref must be null or 64 hex digits")
    if type(cred["valid"]) is not bool:
        raise BadPassage(f"{where}.valid must be true or false")
    reasons = cred["reasons"]
    if reasons:
        _reasons(reasons, f"{where}.reasons")
    elif type(reasons) is not list:
        raise BadPassage(f"{where}.reasons must be a list of at most {MAX_REASONS}")
    lookup = cred.get("lookup")
    if not ((lookup is None or type(lookup) is str) and lookup in _LOOKUPS):
        raise BadPassage(f"{where}.lookup must be one of {', '.join(map(str, LOOKUPS))}")


def _traveller(value: Any, where: str) -> None:
    if type(value) is not dict:
        raise BadPassage(f"{where} is not an object")
    for key, field_value in value.items():
        spec = TRAVELLER.get(key)
        if spec is None:
            raise BadPassage(f"{where} has an unknown field {_name(key)}")
        problem = spec[1](field_value)
        if problem is not None:
            raise BadPassage(f"{where}.{key}: {problem}")


def _occupants(value: Any, credentials: int) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CREDENTIALS:
        raise BadPassage(f"occupants must be a list of 1 to {MAX_CREDENTIALS}")
    for i, person in enumerate(value):
        where = f"occupants[{i}]"
        if not isinstance(person, dict) or set(person) != {"credentials", "traveller"}:
            raise BadPassage(f"{where} must have credentials and traveller")
        indexes = person["credentials"]
        if not isinstance(indexes, list) or not all(
            _is_int(n) and 0 <= n < credentials for n in indexes
        ):
            raise BadPassage(f"{where}.credentials must be indexes into credentials")
        _traveller(person["traveller"], f"{where}.traveller")


def _vehicle(value: Any) -> None:
    if not isinstance(value, dict):
        raise BadPassage("vehicle is not an object")
    keys = set(value)
    if (
        not {"kind", "occupants", "opened_by"}
        <= keys
        <= {"kind", "occupants", "opened_by", "plate"}
    ):
        raise BadPassage("vehicle must have kind, occupants, opened_by (and plate)")
    if not _is_choice(value["kind"], VEHICLE_KINDS):
        raise BadPassage(f"vehicle.kind must be one of {', '.join(VEHICLE_KINDS)}")
    if not _is_int(value["occupants"]) or not 0 <= value["occupants"] <= MAX_CREDENTIALS:
        raise BadPassage(f"vehicle.occupants must be an integer from 0 to {MAX_CREDENTIALS}")
    if not _is_choice(value["opened_by"], OPENED_BY):
        raise BadPassage(f"vehicle.opened_by must be one of {', '.join(OPENED_BY)}")
    plate = value.get("plate")
    if plate is not None and not (isinstance(plate, str) and PLATE.fullmatch(plate)):
        raise BadPassage("vehicle.plate is not a plate")
