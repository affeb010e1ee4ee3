"""The device configuration: one TOML file, strictly validated, immutable.

Every key has a default (except the device id) and a description; unknown keys
and bad values are errors that name the key. :func:`load` collects every
problem before raising, so ``checkpoint-edge check-config`` can print them all.
Relative paths are resolved against the directory of the config file.

The sections and their keys are in :mod:`edge.config.device`,
:mod:`edge.config.delivery` and :mod:`edge.config.judging`, made of the
descriptions and parsers of :mod:`edge.config.sections`;
``docs/configuration.md`` documents the same keys, and a test keeps them in
step.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from edge import files
from edge.config.delivery import FleetConfig, IngestConfig, LogConfig, MqttConfig, StoreConfig
from edge.config.device import (
    CameraConfig,
    DeviceConfig,
    GpioConfig,
    KioskConfig,
    LaneConfig,
    ScanConfig,
    SourceSpec,
)
from edge.config.judging import (
    TRAVELLER_FIELDS,
    LookupConfig,
    PassageConfig,
    PolicyConfig,
    RulesConfig,
    TrustConfig,
    loopback_url,
)
from edge.config.nats import NatsConfig
from edge.config.nats import cross_checks as nats_checks
from edge.config.sections import Parser
from edge.errors import ConfigError, InputError
from edge.files import read_text_limited

__all__ = [
    "TRAVELLER_FIELDS",
    "CameraConfig",
    "Config",
    "DeviceConfig",
    "FleetConfig",
    "GpioConfig",
    "IngestConfig",
    "IngestFile",
    "KioskConfig",
    "LaneConfig",
    "LogConfig",
    "MqttConfig",
    "NatsConfig",
    "OperatorFile",
    "PassageConfig",
    "PolicyConfig",
    "ScanConfig",
    "SourceSpec",
    "StoreConfig",
    "TrustConfig",
    "describe_keys",
    "from_mapping",
    "from_mapping_as",
    "load",
    "load_as",
    "loads",
    "read_toml",
    "to_mapping",
]


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    camera: CameraConfig = field(default_factory=CameraConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    lane: LaneConfig = field(default_factory=LaneConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    passage: PassageConfig = field(default_factory=PassageConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    kiosk: KioskConfig = field(default_factory=KioskConfig)
    lookup: LookupConfig = field(default_factory=LookupConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    log: LogConfig = field(default_factory=LogConfig)


@dataclass(frozen=True)
class IngestFile:
    """The central ingest's config file: the same ``[mqtt]`` as a device's, ``[ingest]``,
    and ``[nats]`` (its source when ``[ingest] source = "nats"``)."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    nats: NatsConfig = field(default_factory=NatsConfig)
    log: LogConfig = field(default_factory=LogConfig)


@dataclass(frozen=True)
class OperatorFile:
    """An operator's config file for ``checkpoint-edge fleet``: the ``[mqtt]`` of a device's."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    log: LogConfig = field(default_factory=LogConfig)


def sections_of(schema: type[Any]) -> dict[str, type[Any]]:
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] for f in fields(schema)}


SECTIONS: dict[str, type[Any]] = sections_of(Config)

T = TypeVar("T")
S = TypeVar("S")


def load(path: Path) -> Config:
    """Read and validate a device config file; raise :class:`ConfigError` listing every problem."""
    return load_as(path, Config)


def load_as(path: Path, schema: type[S]) -> S:
    """Read and validate a config file of ``schema`` (:class:`Config`, :class:`IngestFile`)."""
    return _from_mapping(read_toml(path), path.resolve().parent, str(path), schema)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML data of a config file, not yet validated; ConfigError when unreadable."""
    try:
        text = read_text_limited(path, files.CONFIG, "config file")
    except InputError as exc:
        raise ConfigError([exc.reason], str(path)) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from exc


def loads(text: str, base_dir: Path, source: str = "config") -> Config:
    """Validate TOML text; relative paths resolve against ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from exc
    return from_mapping(data, base_dir=base_dir, source=source)


def from_mapping(data: Mapping[str, Any], base_dir: Path, source: str = "config") -> Config:
    """Validate already-parsed TOML data (a file, or a config pushed over MQTT later)."""
    return _from_mapping(data, base_dir, source, Config)


def from_mapping_as(data: Mapping[str, Any], base_dir: Path, source: str, schema: type[S]) -> S:
    """Validate already-parsed data of any config file ``schema``."""
    return _from_mapping(data, base_dir, source, schema)


def _from_mapping(data: Mapping[str, Any], base_dir: Path, source: str, schema: type[S]) -> S:
    sections = sections_of(schema)
    problems: list[str] = []
    built: dict[str, Any] = {}
    for name in data:
        if name not in sections:
            problems.append(f"{name}: unknown section (known: {', '.join(sections)})")
    for name, cls in sections.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"{name}: must be a table ([{name}])")
            continue
        section = _build_section(cls, name, table, base_dir, problems)
        if section is not None:
            built[name] = section
    if not problems:
        problems.extend(_cross_checks(built))
    if problems:
        raise ConfigError(problems, source)
    return schema(**built)


def _build_section(
    cls: type[T], name: str, table: dict[str, Any], base_dir: Path, problems: list[str]
) -> T | None:
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    before = len(problems)
    values: dict[str, Any] = {}
    for key in table:
        if key not in known:
            problems.append(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    for key, spec in known.items():
        if key not in table:
            if spec.default is MISSING:
                problems.append(f"{name}.{key}: required")
            continue
        value = table[key]
        parse: Parser | None = spec.metadata.get("parse")
        try:
            if not (_is_custom(hints[key]) and parse is not None):
                value = _check_type(value, hints[key])
            values[key] = parse(value, base_dir) if parse is not None else value
        except ValueError as exc:
            problems.append(f"{name}.{key}: {exc}")
    if len(problems) > before:
        return None
    return cls(**values)


def _is_custom(hint: Any) -> bool:
    """Types that a field's own parser converts from TOML (paths, camera sources)."""
    args = get_args(hint)
    return hint in (Path, SourceSpec) or Path in args


_SIMPLE: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _check_type(value: Any, hint: Any) -> Any:
    if get_origin(hint) is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))} (got {value!r})")
        return value
    if get_origin(hint) is tuple and get_args(hint) == (str, Ellipsis):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of strings (got {value!r})")
        return tuple(value)
    if hint not in _SIMPLE:
        raise TypeError(f"unsupported config type {hint}")  # pragma: no cover - schema bug
    ok, what = _SIMPLE[hint]
    if not ok(value):
        raise ValueError(f"must be {what} (got {value!r})")
    return float(value) if hint is float else value


def _cross_checks(built: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    gpio: GpioConfig | None = built.get("gpio")
    pins: dict[int, str] = {}
    for f in fields(gpio) if gpio is not None else ():
        if f.name.endswith("_pin"):
            pin = getattr(gpio, f.name)
            if pin < 0:
                continue  # an optional input that is not fitted
            if pin in pins:
                problems.append(f"gpio.{f.name}: pin {pin} is already used by gpio.{pins[pin]}")
            pins[pin] = f.name
    lane: LaneConfig | None = built.get("lane")
    if gpio is not None and lane is not None and gpio.barrier_max_open_s < lane.open_s:
        problems.append("gpio.barrier_max_open_s: must be at least lane.open_s")
    mqtt: MqttConfig = built["mqtt"]
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        problems.append("mqtt.cert_file: cert_file and key_file must be given together")
    if (mqtt.cert_file or mqtt.ca_file) and not mqtt.tls:
        problems.append("mqtt.tls: must be true when ca_file or cert_file is set")
    if mqtt.reconnect_min_s > mqtt.reconnect_max_s:
        problems.append("mqtt.reconnect_min_s: must not exceed mqtt.reconnect_max_s")
    if mqtt.protocol == "3.1.1" and mqtt.ack == "broker":
        # a 3.1.1 PUBACK says "received", even for a message the broker's ACL dropped
        problems.append(
            'mqtt.ack: "broker" needs protocol "5" (a 3.1.1 PUBACK does not say whether '
            'the broker kept the passage); use ack = "ingest"'
        )
    if "nats" in built:
        problems += nats_checks(built["nats"], built["ingest"], mqtt)
    lookup: LookupConfig | None = built.get("lookup")
    return problems + (_lookup_checks(lookup) if lookup is not None else [])


def _lookup_checks(lookup: LookupConfig) -> list[str]:
    problems = []
    if (lookup.cert_file is None) != (lookup.key_file is None):
        problems.append("lookup.cert_file: cert_file and key_file must be given together")
    if not lookup.url.startswith("https://"):
        for name in ("ca_file", "cert_file"):
            if getattr(lookup, name) is not None:
                problems.append(f"lookup.{name}: needs an https:// lookup.url")
        if lookup.token_file is not None and lookup.url and not loopback_url(lookup.url):
            # a bearer token in clear over the network: anyone on the path could reuse it
            problems.append("lookup.token_file: needs an https:// lookup.url (or a loopback one)")
    return problems


def to_mapping(cfg: Any) -> dict[str, dict[str, Any]]:
    """A validated config as TOML-like data (paths absolute) that loads back to an equal one."""
    out: dict[str, dict[str, Any]] = {}
    for name in sections_of(type(cfg)):
        section = getattr(cfg, name)
        table: dict[str, Any] = {}
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, SourceSpec):
                value = value.describe()
            elif isinstance(value, Path):
                value = str(value)
            elif value is None:
                value = ""
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            table[f.name] = value
        out[name] = table
    return out


def describe_keys(schema: type[Any] = Config) -> list[tuple[str, str, str]]:
    """Every key of a config file (the device's by default; :class:`IngestFile`) as
    (``section.key``, default as TOML, description), for docs and tests."""
    rows = []
    for name, cls in sections_of(schema).items():
        for f in fields(cls):
            if f.default is MISSING:
                default = "(required)"
            elif isinstance(f.default, SourceSpec):
                default = repr(f.default.describe()).replace("'", '"')
            elif f.default is None:
                default = '""'
            elif isinstance(f.default, bool):
                default = str(f.default).lower()
            elif isinstance(f.default, tuple):
                default = "[" + ", ".join(f'"{v}"' for v in f.default) + "]"
            elif isinstance(f.default, str | Path):
                default = f'"{f.default}"'
            else:
                default = str(f.default)
            rows.append((f"{name}.{f.name}", default, f.metadata["doc"]))
    return rows
