"""``checkpoint-edge dashboard``: the control room's web page over the central
database (and the fleet's live state, with ``-c FILE`` holding an ``[mqtt]``).

Exit codes: 0 stopped by a signal, 1 the database, the broker or the address
could not be had, 2 bad usage (a login is needed and no password was given, a
password too short, an unknown time zone, a bad ``--listen``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge import config as config_mod
from edge import files
from edge.config import OperatorFile
from edge.config.sections import parse_existing_file
from edge.errors import ConfigError, InputError

log = logging.getLogger("edge.dashboard")

MIN_PASSWORD = 12  # characters
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class Usage(ValueError):
    """A command line the dashboard cannot start with (exit 2)."""


def register(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="the control room's web page: counts, charts, kiosks")
    dash.add_argument(
        "--database", required=True, help="the ingest's database: sqlite:///PATH or postgresql://"
    )
    dash.add_argument(
        "--listen", default="127.0.0.1:8090", help="HOST:PORT (default 127.0.0.1:8090)"
    )
    dash.add_argument(
        "--tz", default="Asia/Ho_Chi_Minh", help="the zone of 'today' (default Asia/Ho_Chi_Minh)"
    )
    dash.add_argument(
        "-c", "--config", type=Path, help="operator config whose [mqtt] shows the kiosks live"
    )
    dash.add_argument(
        "--password-file",
        help="file (or credential:NAME) holding the page's password; required beyond loopback",
    )
    dash.add_argument("--login", action="store_true", help="ask for the password on loopback too")
    dash.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def is_loopback(host: str) -> bool:
    """An address only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it may be reachable


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Usage(f"--listen {text[:60]!r}: HOST:PORT, as 127.0.0.1:8090 or [::1]:8090")
    return host, int(port)


def read_password(value: str) -> str:
    try:
        path = parse_existing_file(value, Path.cwd())
        if path is None:
            raise Usage("--password-file: empty")
        text = files.read_text_limited(path, files.SECRET, "password file")
    except (ValueError, InputError) as exc:
        raise Usage(f"--password-file: {exc}") from exc
    password = text.strip()
    if len(password) < MIN_PASSWORD:
        raise Usage(f"--password-file: the password must have at least {MIN_PASSWORD} characters")
    return password


def settings_of(args: argparse.Namespace) -> Any:
    """The server's :class:`~edge.dashboard.server.Settings` from the command line;
    :class:`Usage` saying what is wrong."""
    from edge.dashboard.server import Settings  # noqa: PLC0415 - the server's imports

    host, port = listen_address(args.listen)
    try:
        ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Usage(f"--tz {args.tz[:60]!r}: not a time zone (as Asia/Ho_Chi_Minh)") from exc
    login = args.login or not is_loopback(host)
    if login and not args.password_file:
        why = "--login asks for a login" if args.login else f"it listens beyond loopback ({host})"
        raise Usage(f"{why}, whose password it lacks: give --password-file FILE")
    password = read_password(args.password_file) if login else None
    if args.password_file and not login:
        log.info("dashboard: on loopback: no login (--login asks for it)")
    return Settings(host=host, port=port, tz=args.tz, password=password)


def main(args: argparse.Namespace) -> int:
    from edge.central.db import DatabaseError, open_db  # noqa: PLC0415 - only here
    from edge.dashboard.fleet import FleetView  # noqa: PLC0415
    from edge.dashboard.server import Dashboard  # noqa: PLC0415
    from edge.fleet.operator import FleetError  # noqa: PLC0415

    logging.basicConfig(level=(args.log_level or "info").upper(), format=LOG_FORMAT)
    try:
        settings = settings_of(args)
        mqtt = config_mod.load_as(args.config, OperatorFile).mqtt if args.config else None
    except (Usage, ConfigError) as exc:
        print(f"checkpoint-edge dashboard: {exc}", file=sys.stderr)
        return 2
    try:
        db = open_db(args.database, readonly=True)
        db.hourly("2000-01-01T00", "2000-01-01T01")  # the roll-ups are there (or why not)
    except DatabaseError as exc:
        print(f"checkpoint-edge dashboard: cannot open the database: {exc}", file=sys.stderr)
        return 1
    fleet = None
    try:
        fleet = FleetView(mqtt).start() if mqtt is not None else None
        dashboard = Dashboard(db, settings, fleet)
    except (FleetError, OSError) as exc:
        print(f"checkpoint-edge dashboard: cannot start: {exc}", file=sys.stderr)
        if fleet is not None:
            fleet.stop()
        db.close()
        return 1
    stop = _stop_on_signals()
    dashboard.start()
    print(f"checkpoint-edge dashboard: {dashboard.address}", flush=True)
    stop.wait()
    dashboard.stop()
    if fleet is not None:
        fleet.stop()
    db.close()
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _n, _f: stop.set())
    return stop
