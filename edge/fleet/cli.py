"""``checkpoint-edge fleet ...``: the operator's tool (see docs/fleet.md).

``status`` (a table of every device; ``--json``), ``watch`` (passages and
alerts live, personal data masked unless ``--show-personal``), ``send DEVICE|--all
CMD [KEY=VALUE ...]`` (prints the reply, or names who did not answer),
``config DEVICE FILE`` (a versioned desired config), ``trust push FILE --key KEY``
and ``policy push FILE --key KEY`` (signed fleet-wide pushes). Exit codes: 0 done,
1 a device answered with an error, refused, or did not answer, 2 bad usage or
no broker.

Whatever a device published (status, telemetry, alerts, passages, replies) is
printed through :mod:`edge.textout`: a hostile device cannot put terminal
escapes, bidi marks or raw control characters on the operator's screen.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from edge import config as config_mod
from edge import files
from edge.config import MqttConfig, OperatorFile
from edge.core.model import initials, iso_utc, mask_tail
from edge.core.times import parse_iso
from edge.errors import ConfigError, EdgeError, InputError, TrustError
from edge.files import read_limited, read_text_limited
from edge.fleet import signing
from edge.fleet.operator import DeviceView, FleetClient, FleetError, Message
from edge.mqtt import topics
from edge.rules import book as rules_book
from edge.rules.book import MAX_BUNDLE
from edge.rules.rules import RuleError, read_json
from edge.scan.trust import MAX_TRUST_FILE, load_trust_bytes
from edge.textout import terminal_json, terminal_text

CLOCK_SLACK_S = 60.0  # a kiosk's clock may be behind the operator's: reports within it count


def register(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="operate the fleet over MQTT")
    fleet.add_argument("-c", "--config", type=Path, help="operator config ([mqtt] as a device's)")
    fleet.add_argument("--host", help="broker host (overrides the config)")
    fleet.add_argument("--port", type=int, help="broker port (overrides the config)")
    fleet.add_argument(
        "--protocol", choices=("5", "3.1.1"), help="MQTT version (overrides the config)"
    )
    fleet.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for replies")
    cmds = fleet.add_subparsers(dest="fleet_command", required=True)

    status = cmds.add_parser("status", help="every device: state, mode, outbox, alerts")
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.add_argument(
        "--no-live", action="store_true", help="retained state only (no get-status round)"
    )

    watch = cmds.add_parser("watch", help="passages and alerts as they happen")
    watch.add_argument("--device", default="+", help="one device (default: all)")
    watch.add_argument("--show-personal", action="store_true", help="show traveller data unmasked")
    watch.add_argument("--count", type=int, default=0, help="stop after this many messages")

    send = cmds.add_parser("send", help="send a command and print the reply")
    send.add_argument("device", nargs="?", help="device id (or --all)")
    send.add_argument("cmd", help="ping, get-status, set-mode, open-barrier, ...")
    send.add_argument("args", nargs="*", help="KEY=VALUE arguments (VALUE as JSON if it parses)")
    send.add_argument("--all", action="store_true", help="fleet-wide ($all)")
    send.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the reply (default); --no-wait: print the command id and return",
    )

    cfg = cmds.add_parser("config", help="publish a versioned desired config to a device")
    cfg.add_argument("device")
    cfg.add_argument("file", type=Path, help="TOML with the sections to set")
    cfg.add_argument("--version", type=int, help="default: the applied version + 1")

    for kind in topics.PUSH_KINDS:
        group = cmds.add_parser(kind, help=f"signed fleet-wide {kind} push")
        group_cmds = group.add_subparsers(dest=f"{kind}_command", required=True)
        what = "a rule folder (or folder of them) or a rule bundle" if kind == "rules" else "FILE"
        push = group_cmds.add_parser("push", help=f"sign {what} and push it to every kiosk")
        push.add_argument("file", type=Path)
        push.add_argument("--key", type=Path, required=True, help="the fleet signing key (PEM)")
        push.add_argument("--version", type=int, help="default: seconds since the epoch")


def main(args: argparse.Namespace) -> int:
    try:
        mqtt_cfg = _mqtt_config(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = args.fleet_command
    try:
        if command in topics.PUSH_KINDS:
            body = _push_body(command, args.file)  # check the file before connecting
            key = signing.load_signing_key(args.key)
        table = _read_table(args.file) if command == "config" else {}  # also before
        client = FleetClient(mqtt_cfg).connect(args.timeout)
    except (FleetError, TrustError, ConfigError) as exc:
        print(f"checkpoint-edge fleet {command}: {exc}", file=sys.stderr)
        return 2
    actions: dict[str, Callable[[], int]] = {
        "status": lambda: _status(client, args),
        "watch": lambda: _watch(client, args),
        "send": lambda: _send(client, args),
        "config": lambda: _config(client, args, table),
    }
    try:
        if command in topics.PUSH_KINDS:
            return _push(client, command, body, key, args)
        return actions[command]()
    except (FleetError, EdgeError, OSError) as exc:
        print(f"checkpoint-edge fleet {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _mqtt_config(args: argparse.Namespace) -> MqttConfig:
    if args.config is not None:
        mqtt_cfg = config_mod.load_as(args.config, OperatorFile).mqtt
    else:
        mqtt_cfg = MqttConfig()
    data = config_mod.to_mapping(OperatorFile(mqtt=mqtt_cfg))
    if args.host:
        data["mqtt"]["host"] = args.host
    if args.port:
        data["mqtt"]["port"] = args.port
    if args.protocol:
        data["mqtt"]["protocol"] = args.protocol
    return config_mod.from_mapping_as(data, Path("/"), "command line", OperatorFile).mqtt


# -- status ------------------------------------------------------------------------


def _progress(out: TextIO) -> Callable[[int, int], None]:
    last = [-1]

    def show(got: int, expected: int) -> None:
        if got != last[0] and out.isatty():
            out.write(f"\rwaiting for replies: {got}/{expected}")
            out.flush()
        last[0] = got

    return show


def _status(client: FleetClient, args: argparse.Namespace) -> int:
    devices = client.devices
    online = {d.id for d in devices.values() if d.state == "online"}
    missing: set[str] = set()
    if online and not args.no_live:
        cid = client.command(topics.ALL, "get-status", expires_s=args.timeout)
        got = client.collect(cid, online, args.timeout, _progress(sys.stderr))
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        missing = online - set(got)
    rows = [device_row(devices[name]) for name in sorted(devices)]
    if args.json:
        print(terminal_json({"devices": rows, "no_reply": sorted(missing)}, indent=1))
    else:
        _table(rows)
    if missing:
        print(
            f"{len(missing)} online device(s) did not answer within {args.timeout:g} s: "
            + ", ".join(sorted(missing)),
            file=sys.stderr,
        )
    return 0


def _text(value: Any, limit: int = 40) -> str | None:
    """A device's string for the operator's terminal: bounded (a device could send
    anything: escape sequences, a megabyte), what is not printable a visible escape."""
    if value is None or isinstance(value, dict | list):
        return None
    return terminal_text(str(value)[:limit])


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _table_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _iso(value: Any) -> str | None:
    """A device's time as UTC ISO 8601, or None for anything that is not one (a device
    reporting "zz" must not become the fleet's latest time)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return iso_utc(parse_iso(value, naive="utc"))
    except (ValueError, OverflowError):
        return None


def device_row(view: DeviceView, text: Callable[..., str | None] = _text) -> dict[str, Any]:
    """One device's line, from whatever it reported (each field checked: one device
    reporting nonsense must not break the table of the whole fleet); its strings made
    by ``text(value, limit=40)`` (here: for a terminal; the dashboard: for a page)."""
    live, tele = _table_of(view.live), _table_of(view.telemetry)
    status, meta = _table_of(view.status), _table_of(view.meta)
    outbox = _table_of(live.get("outbox"))
    # when it was last heard from: its latest telemetry (retained, so known even while it
    # is away), a live message this client received, or the start of its session
    seen = [t for t in (_iso(status.get("ts")), _iso(tele.get("ts")), view.heard) if t]
    depth = _number(outbox.get("depth", tele.get("outbox_depth")))
    return {
        "device": view.id,
        "state": text(view.state),
        "session": _number(status.get("session")),
        "last_seen": max(seen, default=None),
        "version": text(meta.get("version") or status.get("version")),
        "site": text(meta.get("site"), 80),
        "mode": text(live.get("mode") or tele.get("mode") or meta.get("mode")),
        "lane": text(live.get("state") or tele.get("state")),
        "outbox_depth": None if depth is None else int(depth),
        "oldest_unacked_s": _number(outbox.get("oldest_age_s", tele.get("oldest_unacked_s"))),
        "config_version": _number(_table_of(view.reported).get("version")),
        "alerts": sorted(text(a) or "?" for a in view.alerts),
    }


def _table(rows: list[dict[str, Any]]) -> None:
    head = ("DEVICE", "STATE", "LAST SEEN", "VERSION", "MODE", "OUTBOX", "OLDEST", "ALERTS")
    lines = [head]
    for r in rows:
        oldest = r["oldest_unacked_s"]
        lines.append(
            (
                r["device"],
                r["state"],
                (r["last_seen"] or "-")[:19].replace("T", " "),
                r["version"] or "-",
                r["mode"] or "-",
                "-" if r["outbox_depth"] is None else str(r["outbox_depth"]),
                "-" if oldest is None else _duration(float(oldest)),
                ",".join(r["alerts"]) or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    if not rows:
        print("(no devices have reported to this broker)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# -- watch ---------------------------------------------------------------------------


def mask_passage(doc: dict[str, Any]) -> dict[str, Any]:
    """A passage with its personal data masked (the traveller's, each occupant's, the
    vehicle's plate): initials, the last digits of numbers."""
    out = dict(doc)
    traveller = doc.get("traveller")
    if isinstance(traveller, dict):
        out["traveller"] = _mask_traveller(traveller)
    occupants = doc.get("occupants")
    if isinstance(occupants, list):
        out["occupants"] = [
            {**o, "traveller": _mask_traveller(o.get("traveller"))} if isinstance(o, dict) else o
            for o in occupants
        ]
    vehicle = doc.get("vehicle")
    if isinstance(vehicle, dict) and "plate" in vehicle:
        out["vehicle"] = {**vehicle, "plate": _mask_value("plate", vehicle["plate"])}
    return out


def _mask_traveller(traveller: Any) -> dict[str, Any]:
    if not isinstance(traveller, dict):
        return {}
    return {k: _mask_value(k, v) for k, v in traveller.items()}


def _mask_value(key: str, value: Any) -> Any:
    if key in ("transport", "purpose", "sex"):
        return value
    if key == "name" and isinstance(value, str):
        return initials(value)
    if isinstance(value, str):
        return mask_tail(value, 3 if len(value) > 6 else 0, "*")
    if isinstance(value, dict):
        return {k: (v if k == "province" else "***") for k, v in value.items()}
    return "***"


def _watch(client: FleetClient, args: argparse.Namespace) -> int:
    done = threading.Event()
    seen = [0]

    def show(msg: Message) -> None:
        parsed = topics.parse(msg.topic)
        if parsed is None or parsed.kind not in ("passage", "alert") or msg.retained:
            return
        try:
            doc = None if not msg.payload else json.loads(msg.payload)
        except (ValueError, RecursionError):  # shown as the text it is, not a lost message
            doc = msg.payload.decode("utf-8", "replace")
        if parsed.kind == "passage" and isinstance(doc, dict) and not args.show_personal:
            doc = mask_passage(doc)
        what = parsed.kind if parsed.kind == "passage" else f"alert {parsed.name}"
        state = "cleared" if doc is None else terminal_json(doc)
        print(f"{parsed.device} {what}: {state}", flush=True)
        seen[0] += 1
        if args.count and seen[0] >= args.count:
            done.set()

    device = args.device
    client.watch(show, [topics.passage(device), topics.alert(device, "+")])
    print(
        f"watching passages and alerts of {device if device != '+' else 'every device'}",
        file=sys.stderr,
    )
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    return 0


# -- send ----------------------------------------------------------------------------


def parse_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FleetError(f"argument {pair!r}: use KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _send(client: FleetClient, args: argparse.Namespace) -> int:
    if args.all == (args.device is not None):
        raise FleetError("give one DEVICE or --all")
    cmd_args = parse_args(args.args)
    target = topics.ALL if args.all else args.device
    if not topics.valid_name(args.cmd) or not (args.all or topics.valid_name(target)):
        raise FleetError("device ids and command names are a-z, 0-9 and '-'")
    cid = client.command(target, args.cmd, cmd_args, expires_s=max(args.timeout, 5.0))
    if not args.wait:
        print(cid)
        return 0
    if args.all:
        expect = {d.id for d in client.devices.values() if d.state == "online"}
        got = client.collect(cid, expect, args.timeout, _progress(sys.stderr))
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        for device in sorted(got):
            print(terminal_json({"device": device, **got[device]}))
        missing = expect - set(got)
        if missing:
            print(
                f"no reply within {args.timeout:g} s from: {', '.join(sorted(missing))}",
                file=sys.stderr,
            )
        failed = [d for d, r in got.items() if r.get("status") != "ok"]
        return 1 if missing or failed else 0
    one = client.reply(cid, args.timeout)
    if one is None:
        print(f"{target}: no reply to {args.cmd} within {args.timeout:g} s", file=sys.stderr)
        return 1
    print(terminal_json(one[1], indent=1))
    if one[1].get("status") != "ok":
        print(
            f"{target}: {args.cmd} {terminal_text(one[1].get('status'))}: "
            + terminal_text(one[1].get("error", "")),
            file=sys.stderr,
        )
        return 1
    return 0


# -- config and pushes ---------------------------------------------------------------


def _read_table(path: Path) -> dict[str, Any]:
    try:
        text = read_text_limited(path, files.CONFIG, "file")
    except InputError as exc:
        raise ConfigError([exc.reason], str(path)) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(
            [f"not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"], str(path)
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(["must hold a table / object"], str(path))
    return data


def _config(client: FleetClient, args: argparse.Namespace, table: dict[str, Any]) -> int:
    device = args.device
    view = client.devices.get(device)
    applied = int((view.reported.get("version") if view else 0) or 0)
    version = args.version or applied + 1
    payload = json.dumps({"version": version, "config": table}).encode()
    published = iso_utc(datetime.now(UTC) - timedelta(seconds=CLOCK_SLACK_S))
    client.publish_retained(topics.config_desired(device), payload)
    print(f"{device}: config version {version} published", file=sys.stderr)

    def reported() -> dict[str, Any]:
        view = client.devices.get(device)
        last = (view.reported.get("last", {}) if view else {}).get("desired", {})
        return last if isinstance(last, dict) else {}

    def outcome() -> bool:
        # this publication's outcome: applied once the kiosk runs with it, or rejected
        # (not an earlier report of the same version, not the interim "applying")
        last = reported()
        return (
            last.get("version") == version
            and last.get("state") in ("applied", "rejected")
            and str(last.get("ts", "")) >= published
        )

    if client.wait_for(outcome, args.timeout):
        last = reported()
        print(terminal_json(last, indent=1))
        if last.get("state") == "applied":
            return 0
        detail = terminal_text(last.get("detail"))
        print(f"{device}: config version {version} rejected: {detail}", file=sys.stderr)
        return 1
    print(
        f"{device}: did not report config version {version} within {args.timeout:g} s "
        "(it stays retained: an offline kiosk applies it when it reconnects)",
        file=sys.stderr,
    )
    return 1


def _push_body(kind: str, path: Path) -> bytes:
    if kind == "trust":
        try:  # read once: the file checked is the file pushed
            body = read_limited(path, MAX_TRUST_FILE, "trust file")
        except InputError as exc:
            raise TrustError(str(exc)) from exc
        load_trust_bytes(body, str(path))  # TrustError: what no kiosk could load is not pushed
        return body
    if kind == "rules":  # a folder of rule folders (with valueSets.json), or a bundle
        try:
            doc = rules_book.bundle([path]) if path.is_dir() else read_json(path, MAX_BUNDLE)
            rules_book.from_bundle(doc)
        except RuleError as exc:
            raise ConfigError(exc.problems[:20], str(path)) from exc
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    table = _read_table(path)
    policy = table.get("policy", table)
    if not isinstance(policy, dict):
        raise ConfigError(["[policy] must be a table"], str(path))
    config_mod.from_mapping({"device": {"id": "check"}, "policy": policy}, path.parent, str(path))
    return json.dumps(policy).encode()


def _push(
    client: FleetClient, kind: str, body: bytes, key: signing.SigningKey, args: argparse.Namespace
) -> int:
    version = args.version or int(time.time())
    envelope = signing.sign(kind, version, body, key, datetime.now(UTC))
    client.publish_retained(topics.fleet_push(kind), envelope)
    print(f"{kind} push version {version} published to every kiosk ({len(body)} bytes)")
    return 0
