"""Command line of checkpoint-edge.

``run`` (the kiosk), ``check-config``, ``keys new``, ``issue``, ``verify``,
``outbox`` (what a kiosk holds), ``ingest`` (the central worker), ``trace``,
``report`` (a day's figures per checkpoint), ``dashboard`` (the control room's web
page), ``fleet`` (the operator's tool), ``pki`` (the broker's certificates and ACL),
``doctor`` (is this kiosk fit to run), ``lang`` (the screen's voices and language packs).
Exit codes: 0 success (``verify``: valid), 1 a runtime failure (``verify``:
invalid), 2 an invalid config or usage.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from edge import __version__, credtools
from edge import config as config_mod
from edge.central import report as report_cli
from edge.core.passage import DECISIONS
from edge.core.times import parse_iso
from edge.credtools import UsageError
from edge.dashboard import cli as dashboard_cli
from edge.errors import ConfigError, EdgeError, InputError, TrustError
from edge.fleet import cli as fleet_cli
from edge.kiosk import langtool
from edge.pki import cli as pki_cli
from edge.rules import cli as rules_cli
from edge.scan.declaration import TRANSPORT_MODES
from edge.scan.declaration import issue as issue_declaration
from edge.scan.trust import load_trust

log = logging.getLogger("edge")

INSTALLED_CONFIG = Path("/etc/checkpoint-edge/config.toml")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def simulation_config_path() -> Path:
    """The embedded default: the kiosk in simulation on the bundled sample images."""
    return Path(str(resources.files("edge") / "defaults" / "simulation.toml"))


def local_ingest_config_path() -> Path:
    """The embedded default of ``ingest``: a central ingest on this machine, for the
    simulation; ``trace`` reads its database when given none."""
    return Path(str(resources.files("edge") / "defaults" / "ingest.toml"))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": lambda a: _run(a.config, a.log_level),
        "check-config": lambda a: _check_config(a.file),
        "keys": _keys_new,
        "issue": _issue,
        "verify": _verify,
        "outbox": _outbox,
        "ingest": _ingest,
        "trace": _trace,
        "dashboard": dashboard_cli.main,
        "fleet": fleet_cli.main,
        "doctor": lambda a: _doctor(a.config),
        "pki": pki_cli.main,
        "rules": rules_cli.main,
        "lang": langtool.main,
        "report": report_cli.main,
    }
    try:
        return commands[args.command](args)
    except (UsageError, InputError) as exc:  # (InputError: a file no command wrapped)
        print(f"checkpoint-edge {args.command}: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkpoint-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"checkpoint-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the kiosk (default: simulation on sample images)")
    run.add_argument("-c", "--config", type=Path, help="config file (default: built-in simulation)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check-config", help="validate a config file; list every problem")
    check.add_argument("file", type=Path)

    keys = sub.add_parser("keys", help="issuer keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="a new issuer key pair, its kid and a trust list")
    new.add_argument("--issuer", required=True, help="issuer id written into declarations (iss)")
    new.add_argument("--alg", choices=["ES256", "EdDSA"], default="ES256")
    new.add_argument("--out", type=Path, default=Path("."), help="directory for the key files")

    issue = sub.add_parser("issue", help="a signed movement declaration, as text, PNG and SVG")
    issue.add_argument("--key", type=Path, required=True, help="issuer private key (PEM)")
    issue.add_argument("--issuer", default="", help="issuer id (iss), unless the file has one")
    issue.add_argument("--in", dest="input", type=Path, help="declaration file (.toml or .json)")
    issue.add_argument("--name")
    issue.add_argument("--id-number")
    issue.add_argument("--birth-date", help="YYYY-MM-DD")
    issue.add_argument("--sex", choices=["M", "F", "X"])
    issue.add_argument("--phone")
    issue.add_argument("--origin", help="PROVINCE[/DISTRICT[/TEXT]]")
    issue.add_argument("--destination", help="PROVINCE[/DISTRICT[/TEXT]]")
    issue.add_argument("--plate")
    issue.add_argument("--transport", choices=list(TRANSPORT_MODES))
    issue.add_argument("--purpose")
    issue.add_argument("--symptoms", action="store_true", default=None)
    issue.add_argument("--exposure", action="store_true", default=None)
    issue.add_argument("--doses", type=int, help="vaccine doses received")
    issue.add_argument("--test-result", choices=["negative", "positive"])
    issue.add_argument("--test-date", help="YYYY-MM-DD")
    issue.add_argument("--id", dest="declaration_id", help="declaration id (default: random)")
    issue.add_argument("--issued-at", type=_timestamp, help="ISO 8601 (default: now)")
    issue.add_argument("--valid-hours", type=float, default=72.0)
    issue.add_argument("--png", type=Path, help="write the QR code as PNG")
    issue.add_argument("--svg", type=Path, help="write the QR code as SVG")

    _add_verify(sub)
    fleet_cli.register(sub)
    dashboard_cli.register(sub)
    doctor = sub.add_parser("doctor", help="check camera, pins, broker, TLS, clock, disk, store")
    doctor.add_argument(
        "-c", "--config", type=Path, help=f"config file (default: {INSTALLED_CONFIG} if present)"
    )
    pki_cli.register(sub)
    _add_central(sub)
    rules_cli.register(sub, _timestamp)
    langtool.register(sub)
    report_cli.register(sub)
    return parser


def _add_verify(sub: Any) -> None:
    verify = sub.add_parser("verify", help="decode and verify a code, stage by stage")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image holding a QR code")
    source.add_argument("--text", help="the payload text")
    verify.add_argument(
        "--trust", type=Path, action="append", default=[], help="trust list, certificate or key"
    )
    verify.add_argument("-c", "--config", type=Path, help="also trust the config's [trust] files")
    verify.add_argument("--at", type=_timestamp, help="verify at this ISO 8601 time")
    verify.add_argument("--json", action="store_true", help="one JSON object")
    verify.add_argument("--show", action="store_true", help="also print the decoded content")


def _add_central(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="run a central ingest worker")
    ingest.add_argument(
        "-c", "--config", type=Path, help="ingest config file (default: local, for the simulation)"
    )
    ingest.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    trace = sub.add_parser("trace", help="query the central store for contact tracing")
    trace.add_argument(
        "--database",
        help="sqlite:///PATH or postgresql:// URL (default: the local ingest's database)",
    )
    trace.add_argument("--device")
    trace.add_argument("--id-number")
    trace.add_argument("--declaration", help="declaration id")
    trace.add_argument("--checkpoint", help="site, as in the devices' [device] site")
    trace.add_argument("--decision", choices=list(DECISIONS))
    trace.add_argument("--plate", help="a vehicle's plate (vehicle groups), as 51H-123.45")
    trace.add_argument("--from", dest="since", type=_timestamp, help="ISO 8601 (inclusive)")
    trace.add_argument("--to", dest="until", type=_timestamp, help="ISO 8601 (inclusive)")
    trace.add_argument("--format", choices=["table", "csv", "json"], default="table")

    outbox = sub.add_parser("outbox", help="what this kiosk holds (works while it runs)")
    outbox.add_argument("-c", "--config", type=Path, help="device config (default: simulation)")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    ostatus = outbox_sub.add_parser("status", help="depth, oldest, last ack")
    ostatus.add_argument("--json", action="store_true")
    oexport = outbox_sub.add_parser("export", help="every passage held, for an audit")
    oexport.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    oexport.add_argument("--from", dest="since", type=date.fromisoformat, help="YYYY-MM-DD")
    oexport.add_argument("--to", dest="until", type=date.fromisoformat, help="YYYY-MM-DD")


def _timestamp(text: str) -> datetime:
    try:
        return parse_iso(text, naive="utc")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc


def _keys_new(args: argparse.Namespace) -> int:
    made = credtools.keys_new(args.issuer, args.alg, args.out)
    print(f"kid {made['kid']} ({made['kid_hex']}), {made['alg']}, issuer {made['issuer']}")
    for what in ("private_key", "public_key", "trust_list"):
        print(f"{what.replace('_', ' ')}: {made[what]}")
    return 0


_ISSUE_FLAGS = {
    "name": ("person", "name"),
    "id_number": ("person", "id_number"),
    "birth_date": ("person", "birth_date"),
    "sex": ("person", "sex"),
    "phone": ("person", "phone"),
    "origin": ("trip", "origin"),
    "destination": ("trip", "destination"),
    "plate": ("trip", "plate"),
    "transport": ("trip", "transport"),
    "purpose": ("trip", "purpose"),
    "symptoms": ("health", "symptoms"),
    "exposure": ("health", "exposure"),
    "doses": ("health", "vaccine_doses"),
    "test_result": ("health", "test_result"),
    "test_date": ("health", "test_date"),
}


def _issue(args: argparse.Namespace) -> int:
    data = credtools.read_declaration_file(args.input) if args.input else {}
    for flag, (table, name) in _ISSUE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            data.setdefault(table, {})[name] = value
    if args.declaration_id:
        data["declaration_id"] = args.declaration_id
    if not (args.issuer or data.get("issuer")):
        raise credtools.UsageError("--issuer is required (or issuer in the file)")
    if not 0 < args.valid_hours <= 24 * 365:
        raise credtools.UsageError("--valid-hours must be between 0 and 8760")
    key, kid = credtools.load_private_key(args.key)
    issued_at = args.issued_at or datetime.now(UTC)
    decl = credtools.build_declaration(
        data, args.issuer, issued_at, timedelta(hours=args.valid_hours)
    )
    payload = issue_declaration(decl, key, kid)
    version = credtools.render_qr(payload, args.png, args.svg)
    print(payload)
    print(
        f"declaration {decl.declaration_id}: {len(payload)} characters, QR version {version} "
        f"(ECC M), valid until {decl.expires_at.isoformat()}",
        file=sys.stderr,
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    paths = list(args.trust)
    if args.config:
        try:
            paths += list(config_mod.load(args.config).trust.files)
        except ConfigError as exc:
            raise credtools.UsageError(str(exc)) from exc
    trust = credtools.load_trust_paths(paths)
    if args.image:
        codes = credtools.decode_image(args.image)
        payload = codes[0] if codes else None
    else:
        payload = credtools.payload_text(args.text)
    report = credtools.verify(
        payload, trust, args.at or datetime.now(UTC), skew_s=0.0, from_image=bool(args.image)
    )
    credtools.print_report(report, show=args.show, as_json=args.json)
    return 0 if report["valid"] else 1


def _ingest(args: argparse.Namespace) -> int:
    from edge.central.db import DatabaseError  # noqa: PLC0415 - only the ingest needs these
    from edge.central.ingest import Ingest  # noqa: PLC0415
    from edge.central.source import SourceError  # noqa: PLC0415

    try:
        cfg = config_mod.load_as(args.config or local_ingest_config_path(), config_mod.IngestFile)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=(args.log_level or cfg.log.level).upper(), format=LOG_FORMAT)
    stop = _stop_on_signals()  # a stop while the database opens is a clean one too
    try:
        ingest = Ingest(cfg)
    except (DatabaseError, SourceError, ConfigError) as exc:  # a library, a secret missing
        log.error("ingest: cannot start: %s", exc)  # noqa: TRY400 - a reason, not a bug
        return 1
    return ingest.run(stop)


def _trace(args: argparse.Namespace) -> int:
    from edge.central import trace  # noqa: PLC0415
    from edge.central.db import DatabaseError, Query  # noqa: PLC0415
    from edge.core.model import normal_plate  # noqa: PLC0415

    query = Query(
        device=args.device,
        id_number=args.id_number,
        declaration_id=args.declaration,
        site=args.checkpoint,
        decision=args.decision,
        plate=normal_plate(args.plate) or args.plate if args.plate else None,
        since=args.since,
        until=args.until,
    )
    database = args.database
    if database is None:
        try:
            local = config_mod.load_as(local_ingest_config_path(), config_mod.IngestFile)
        except ConfigError as exc:
            raise UsageError(str(exc)) from exc
        database = local.ingest.database
    try:
        found = trace.find(database, query)
    except DatabaseError as exc:
        hint = "" if args.database else " (the local ingest, `checkpoint-edge ingest`, makes it)"
        raise UsageError(f"{exc}{hint}") from exc
    trace.write(found, args.format)
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from edge.store import tool as outbox_tool  # noqa: PLC0415

    try:
        cfg = config_mod.load(args.config or simulation_config_path())
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    if not cfg.store.dir.is_dir():
        raise UsageError(f"no store at {cfg.store.dir}")
    if args.outbox_command == "status":
        outbox_tool.status(cfg.store.dir, as_json=args.json)
    else:
        outbox_tool.export(cfg.store.dir, args.format, args.since, args.until)
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("edge: %s received", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _doctor(path: Path | None) -> int:
    if path is None:
        path = INSTALLED_CONFIG if INSTALLED_CONFIG.exists() else simulation_config_path()
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from edge.fleet.remote import pushed_trust_file  # noqa: PLC0415
    from edge.service import doctor  # noqa: PLC0415 - loads the camera and GPIO libraries

    pushed = pushed_trust_file(cfg.store.dir)
    files = (*cfg.trust.files, *((pushed,) if pushed.is_file() else ()))
    print(f"checkpoint-edge doctor: {path} (device {cfg.device.id})")
    checks = doctor.run(cfg, files)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _check_config(path: Path) -> int:
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        store = load_trust(cfg.trust.files)
    except TrustError as exc:
        print(f"{path}: trust.files: {exc}", file=sys.stderr)
        return 2
    print(
        f"{path}: OK (device {cfg.device.id}, camera {cfg.camera.source.describe()}, "
        f"trust: {store.describe()})"
    )
    return 0


def _run(path: Path | None, level: str | None) -> int:
    path = path or simulation_config_path()
    from edge.fleet.remote import RemoteConfig  # noqa: PLC0415 - keeps check-config light

    try:
        remote = RemoteConfig.from_file(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except EdgeError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    cfg = remote.effective
    logging.basicConfig(level=(level or cfg.log.level).upper(), format=LOG_FORMAT)
    logging.getLogger("PIL").setLevel(logging.WARNING)
    _fewer_malloc_arenas()

    from edge.devices.keyboard import KeyboardThread  # noqa: PLC0415

    stop = _stop_on_signals()  # from here on, SIGTERM is a clean stop even during start-up
    log.info("edge: checkpoint-edge %s, config %s", __version__, path)  # (after: tests wait for it)
    current: list[Any] = []  # the App running now (a new one after a restart)

    def on_key(key: str) -> None:
        if not current:
            return
        if key == "a":
            current[0].press("approve")
        elif key == "d":
            current[0].press("deny")
        elif key == "s":
            current[0].toggle_surge(by="officer")
        elif key == "v":
            current[0].vehicle("car")
        elif key == "q":
            stop.set()

    keys = None
    if KeyboardThread.available():
        keys = KeyboardThread(on_key)
        keys.start()
        log.info("edge: keys: a = approve, d = deny, v = vehicle group, s = surge, q = quit")
    try:
        return _serve(remote, stop, level, current)
    finally:
        if keys is not None:
            keys.stop()


# glibc's mallopt(M_ARENA_MAX, n): the kiosk's dozen threads each got a malloc arena of
# their own, which kept freed frames' memory resident; two arenas cost no measurable
# speed here and 2-4 MB less resident (bench/startup_bench.py). MALLOC_ARENA_MAX in the
# environment still wins: it is read before this runs.
_M_ARENA_MAX = -8
_ARENAS = 2


def _fewer_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas before the kiosk starts its threads; False elsewhere."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.mallopt(_M_ARENA_MAX, _ARENAS))
    except (OSError, AttributeError):
        return False


def _serve(remote: Any, stop: threading.Event, level: str | None, current: list[Any]) -> int:
    """Run kiosks until stopped: a new one whenever the last asks to restart into a new
    config; a config it cannot start with is rolled back to the last good one."""
    from edge.service.app import RESTART, App  # noqa: PLC0415

    while True:
        cfg = remote.effective
        if level is None:
            logging.getLogger().setLevel(cfg.log.level.upper())
        try:
            app = App(cfg, remote=remote)
        except EdgeError as exc:
            if remote.rollback(f"the kiosk could not start with it: {exc}"):
                continue  # back to the last good config, and report the new one rejected
            log.error("edge: cannot start: %s", exc)  # noqa: TRY400 - a reason, not a bug
            return 1
        remote.confirm()
        current[:] = [app]
        code = app.run(stop)
        if code != RESTART or stop.is_set():
            return int(code)
