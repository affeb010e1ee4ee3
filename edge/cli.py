"""Command line: ``checkpoint-edge run``, ``checkpoint-edge check-config``.

Exit codes: 0 success, 1 a runtime failure, 2 an invalid config or usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from edge import __version__
from edge import config as config_mod
from edge.errors import ConfigError, EdgeError

log = logging.getLogger("edge")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def simulation_config_path() -> Path:
    """The embedded default: the kiosk in simulation on the bundled sample images."""
    return Path(str(resources.files("edge") / "defaults" / "simulation.toml"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="checkpoint-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"checkpoint-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the kiosk (default: simulation on sample images)")
    run.add_argument("-c", "--config", type=Path, help="config file (default: built-in simulation)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check-config", help="validate a config file; list every problem")
    check.add_argument("file", type=Path)

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    return _run(args.config, args.log_level)


def _check_config(path: Path) -> int:
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{path}: OK (device {cfg.device.id}, camera {cfg.camera.source.describe()})")
    return 0


def _run(path: Path | None, level: str | None) -> int:
    path = path or simulation_config_path()
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=(level or cfg.log.level).upper(), format=LOG_FORMAT)
    logging.getLogger("PIL").setLevel(logging.WARNING)

    from edge.app import App  # noqa: PLC0415 - keeps check-config light
    from edge.keys import KeyboardThread  # noqa: PLC0415

    log.info("edge: checkpoint-edge %s, config %s", __version__, path)
    try:
        app = App(cfg)
    except EdgeError as exc:
        log.error("edge: cannot start: %s", exc)  # noqa: TRY400 - a reason, not a bug
        return 1

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("edge: %s received", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    keys = None
    if KeyboardThread.available():

        def on_key(key: str) -> None:
            if key == "a":
                app.press("approve")
            elif key == "d":
                app.press("deny")
            elif key == "q":
                stop.set()

        keys = KeyboardThread(on_key)
        keys.start()
        log.info("edge: keys: a = approve, d = deny, q = quit")
    try:
        app.run(stop)
    finally:
        if keys is not None:
            keys.stop()
    return 0
