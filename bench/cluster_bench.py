"""One mosquitto against a 3-node NATS JetStream cluster, measured in the same run.

The kiosks are fleet_bench's virtual kiosks (bench/fleet_bench.py: N paho clients
driven from one thread in a child process, each behaving on the wire as
docs/fleet.md says), the ingest is the real ``checkpoint-edge ingest`` (SQLite) and
the operator is :class:`edge.fleet.operator.FleetClient`. For each fleet size in
``--devices`` there are ``--rounds`` rounds; in each round each broker in turn
(the order alternates from round to round, so that the shared machine's drift
falls on both), each from a fresh start in a directory of its own:

- **mosquitto**: fleet_bench's broker (persistence with a 10 s autosave, queues of
  a million, in-flight 100), kiosks, ingest and operator in MQTT v5, as today;
- **nats**: three ``nats-server`` nodes (:class:`tests.nats_rig.NatsCluster`:
  JetStream, routes, an MQTT listener each, the MQTT defaults that deploy/nats
  keeps: sessions, retained and QoS 1 messages in JetStream streams and consumers
  with three replicas, on file). Every client speaks MQTT 3.1.1 (``[mqtt]
  protocol = "3.1.1"``; NATS refuses a v5 CONNECT); kiosk i starts on node i % 3,
  with a persistent session as the kiosk connects in 3.1.1 (clean-session off),
  and after a failed attempt or a lost connection tries the next node in turn
  (as ``[mqtt] servers`` makes the kiosk do). The ingest and the operator start
  on node 1 (index 0), with the two others as their ``[mqtt] servers``. The
  ingest takes its passages from JetStream (``[ingest] source = "nats"``: a
  durable pull consumer on the stream of ``cp.v1.*.passage``; status and acks
  over MQTT), or with ``--nats-source mqtt`` over MQTT (``source = "mqtt"``,
  no shared subscription: NATS has none).

Each phase measures:

(a) connect: all N kiosks at once, until every CONNACK, and until every birth is
    PUBACKed and every SUBSCRIBE SUBACKed; each broker process's CPU for it;
(b) a steady window of ``--window-s`` at fleet_bench's traffic: CPU % and RSS of
    each broker process (each node), memory per kiosk (RSS over the idle broker's
    with only the ingest), each passage's time from publish to the ingest's ack;
    on NATS JetStream's own count of streams, consumers and stored bytes;
(c) the operator's status round trip through FleetClient: connect and the
    retained snapshot, then a fleet-wide get-status until every kiosk's reply;
(d) end to end: ``--burst`` passages published at once, spread over the kiosks,
    until the ingest has stored each one and its ack has reached its kiosk:
    passages/s until the last ack, and those still unacknowledged after
    STORM_LIMIT_S (a kiosk whose SUBSCRIBE to its acks was refused gets none
    until it subscribes again, after a backoff, as edge.mqtt.link does);
(e) a reconnect storm: mosquitto stopped (SIGTERM: it saves) and started again on
    its port, which cuts off all N; on NATS one node SIGKILLed (the third, not the
    ingest's and operator's), which cuts off its third of the kiosks: they move to
    the two others. Until every kiosk cut off has its birth complete again, and
    until an operator's new FleetClient sees every kiosk ``online`` with its
    current connection number; then (NATS) the node is started again, until the
    cluster is whole.

Run: ``.venv/bin/python bench/cluster_bench.py [--devices 100,300] [--rounds 3]
[--window-s S] [--burst N] [--json]`` (about 20 minutes with the defaults on a
2-core machine; ``--report FILE`` prints the report of a ``--json`` output again).
The nats-server is the first on ``PATH`` (Debian's 2.9.10 at /usr/sbin). Figures
and what they mean: docs/scaling.md, "A NATS JetStream cluster".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median, quantiles
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fleet_bench import (  # noqa: E402
    STATUS_TIMEOUT_S,
    Broker,
    Fleet,
    Kiosks,
    Monitor,
    fleet_arguments,
    inproc_status,
    machine,
    proc_cpu_s,
    proc_rss_mb,
    raise_open_files,
    start_ingest,
)

from edge.config import MqttConfig  # noqa: E402
from edge.fleet.operator import FleetClient, FleetError  # noqa: E402
from tests.nats_rig import NatsCluster, nats_binary  # noqa: E402

SETTLE_S = 3.0  # after the connect storm, before the window: telemetry and passages start
STORM_LIMIT_S = 180.0  # a reconnect storm that has not settled by then is reported as such
REJOIN_LIMIT_S = 90.0  # the killed node's restart: until the cluster is whole again
CUT_NODE = 2  # the NATS node killed in the storm (0 holds the ingest and the operator)
MQTT_STREAMS = ("$MQTT_sess", "$MQTT_rmsgs", "$MQTT_msgs")  # nats-server's MQTT state


def _wait(predicate: Callable[[], bool], limit: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``limit`` seconds have passed."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# -- the two brokers -------------------------------------------------------------------


class Mosquitto:
    """One mosquitto, as fleet_bench runs it; kiosks in MQTT v5."""

    name = "mosquitto"
    protocol = "5"

    def __init__(self, root: Path, _args: argparse.Namespace) -> None:
        self.root = root
        self.broker = Broker(root / "broker")

    def start(self) -> None:
        self.broker.start()

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.broker.port,)

    @property
    def port(self) -> int:  # the ingest's and the operator's
        return self.broker.port

    def pids(self) -> dict[str, int]:
        return {"mosquitto": self.broker.pid}

    def ingest_settings(self) -> dict[str, str]:
        return {}

    def jetstream(self) -> dict[str, Any]:
        return {}

    def cut(self, kiosks: Kiosks, procs: Processes) -> dict[str, Any]:
        """Restart the broker: every kiosk is cut off."""
        kiosks.cut(None)
        t = time.monotonic()
        procs.ending(self.name)
        self.broker.stop()
        stopped = time.monotonic()
        self.broker.start()
        up = time.monotonic()
        return {"t": t, "stop_s": stopped - t, "start_s": up - stopped, "up": up}

    def heal(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        self.broker.stop()


class Nats:
    """Three nats-server nodes with JetStream and MQTT; every client in MQTT 3.1.1."""

    name = "nats"
    protocol = "3.1.1"

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.source = args.nats_source
        self.cluster = NatsCluster(root / "nats", mqtt_extra=args.nats_mqtt)

    def start(self) -> None:
        self.cluster.start()

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(node.mqtt_port for node in self.cluster.nodes)

    @property
    def port(self) -> int:
        return self.cluster.nodes[0].mqtt_port

    def pids(self) -> dict[str, int]:
        return {n.name: n.proc.pid for n in self.cluster.nodes if n.proc is not None and n.alive}

    @property
    def servers(self) -> tuple[str, ...]:  # the ingest's and the operator's other nodes
        return tuple(f"127.0.0.1:{node.mqtt_port}" for node in self.cluster.nodes[1:])

    def ingest_settings(self) -> dict[str, str]:
        mqtt = f'protocol = "3.1.1"\nservers = {json.dumps(list(self.servers))}\n'
        if self.source == "nats":
            servers = json.dumps(self.cluster.urls)
            return {
                "mqtt": mqtt,
                "ingest": 'source = "nats"\n',
                "more": f"[nats]\nservers = {servers}\n",
            }
        return {"mqtt": mqtt, "ingest": 'group = ""\n'}  # NATS has no shared subscriptions

    def jetstream(self) -> dict[str, Any]:
        """Each live node's JetStream figures (/jsz) and connections (/varz)."""
        out: dict[str, Any] = {}
        for node in self.cluster.nodes:
            jsz, varz = node.monitor("/jsz"), node.monitor("/varz")
            if jsz is None or varz is None:
                continue
            out[node.name] = {
                "streams": jsz.get("streams"),
                "consumers": jsz.get("consumers"),
                "messages": jsz.get("messages"),
                "stored_mb": int(jsz.get("storage") or 0) / 2**20,  # type: ignore[call-overload]
                "connections": varz.get("connections"),
                "subscriptions": varz.get("subscriptions"),
                "slow_consumers": varz.get("slow_consumers"),
            }
        return out

    def cut(self, kiosks: Kiosks, procs: Processes) -> dict[str, Any]:
        """SIGKILL one node: its kiosks are cut off and move to the others. Which node
        led each of the MQTT streams then (sessions, retained messages, QoS 1 messages)."""
        leaders = {name: self.cluster.stream_leader(name) for name in MQTT_STREAMS}
        moved = kiosks.cut(CUT_NODE)
        procs.ending(self.cluster.nodes[CUT_NODE].name)
        t = time.monotonic()
        self.cluster.kill(CUT_NODE)
        killed = {name: leader == CUT_NODE for name, leader in leaders.items()}
        return {"t": t, "moved": moved, "up": t, "leader_killed": killed}

    def heal(self) -> dict[str, Any]:
        """The killed node started again: until the cluster is whole (every node's /healthz
        ok, which needs each JetStream consumer's replica there current; one leader)."""
        t = time.monotonic()
        try:
            self.cluster.restart(CUT_NODE, REJOIN_LIMIT_S)
        except RuntimeError:
            health = self.cluster.nodes[CUT_NODE].monitor("/healthz")
            return {"rejoin_s": None, "rejoin_error": (health or {}).get("error")}
        return {"rejoin_s": time.monotonic() - t}

    def stop(self) -> None:
        self.cluster.stop()


SIDES = {"mosquitto": Mosquitto, "nats": Nats}


# -- one broker, one round ----------------------------------------------------------------


class Processes:
    """CPU seconds and RSS of a broker's processes (a cluster's nodes)."""

    def __init__(self, side: Mosquitto | Nats) -> None:
        self.side = side
        self.ended: dict[str, float] = {}  # CPU seconds of processes stopped since

    def cpu(self) -> dict[str, float]:
        """Per process name, CPU seconds of every process of that name since the start."""
        got = {name: proc_cpu_s(pid) for name, pid in self.side.pids().items()}
        for name, spent in self.ended.items():
            got[name] = got.get(name, 0.0) + spent
        return got

    def ending(self, name: str) -> None:
        """Process ``name`` is about to be stopped (or killed): keep its CPU time."""
        pid = self.side.pids().get(name)
        if pid is not None:
            self.ended[name] = self.ended.get(name, 0.0) + proc_cpu_s(pid)

    def rss(self) -> dict[str, float]:
        return {name: proc_rss_mb(pid) for name, pid in self.side.pids().items()}

    @contextmanager
    def cpu_used(self, into: dict[str, Any]) -> Iterator[None]:
        """``into["cpu_s"]``: CPU seconds per process over the block (processes that
        did not live through it are left out)."""
        before = self.cpu()
        yield
        after = self.cpu()
        into["cpu_s"] = {k: after[k] - before[k] for k in after if k in before}


def operator_sees(side: Mosquitto | Nats, kiosks: Kiosks, limit: float) -> dict[str, Any]:
    """A new FleetClient, until it sees every kiosk online with its current connection
    number; those it does not see so (a few, with what it sees) after ``limit``."""
    sessions = kiosks.sessions()
    refused = 0
    deadline = time.monotonic() + limit
    while True:  # a NATS node refuses a SUBSCRIBE while its JetStream is busy
        try:
            client = FleetClient(cfg(side)).connect(STATUS_TIMEOUT_S)
            break
        except FleetError:
            refused += 1
            if time.monotonic() > deadline:
                return {"online": False, "not_online": len(sessions), "operator_refused": refused}
    try:

        def wrong() -> dict[str, Any]:
            out = {}
            for dev, session in sessions.items():
                view = client.devices.get(dev)
                seen = None if view is None else [view.state, view.status.get("session")]
                if seen != ["online", session]:
                    out[dev] = {"seen": seen, "session": session}
            return out

        client.wait_for(lambda: not wrong(), limit)
        with client._changed:  # the network thread goes on changing the views
            bad = wrong()
        examples = dict(list(bad.items())[:5])
        return {"online": not bad, "not_online": len(bad), "examples": examples,
                "operator_refused": refused}  # fmt: skip
    finally:
        client.close()


def cfg(side: Mosquitto | Nats) -> MqttConfig:
    """The operator's [mqtt]."""
    servers = side.servers if isinstance(side, Nats) else ()
    return MqttConfig(
        host="127.0.0.1",
        port=side.port,
        protocol=side.protocol,  # type: ignore[arg-type]
        servers=servers,
    )


def storm(side: Mosquitto | Nats, kiosks: Kiosks, procs: Processes) -> dict[str, Any]:
    """(e) the cut, until every kiosk cut off is back and the operator sees it online."""
    lost0 = kiosks.stats()["lost"]
    out: dict[str, Any] = {}
    with procs.cpu_used(out):
        out["per_node"] = kiosks.stats()["per_node"]  # connected kiosks by node, before
        cut = side.cut(kiosks, procs)
        back = _wait(lambda: kiosks.stats()["cut"] == 0, STORM_LIMIT_S)
        stats = kiosks.stats()
    moved = cut.get("moved", kiosks.fleet.devices)
    back = back and moved > 0  # no kiosk on the node killed: no storm to time
    out |= {
        "cut": moved,
        "back": back,
        "left": stats["cut"],
        "back_s": stats["last_back"] - cut["t"] if back else None,
        "back_after_up_s": stats["last_back"] - cut["up"] if back else None,
        "attempts": stats["lost"] - lost0,
        **{k: v for k, v in cut.items() if k.endswith("_s") or k == "leader_killed"},
    }
    if back:
        out |= operator_sees(side, kiosks, STATUS_TIMEOUT_S)
        out["online_s"] = time.monotonic() - cut["t"] if out["online"] else None
    out |= side.heal()
    out["rss_mb"] = procs.rss()
    return out


def end_to_end(kiosks: Kiosks, count: int) -> dict[str, Any]:
    """(d) ``count`` passages at once until each one's ack is back at its kiosk."""
    kiosks.stats()  # empties the latency list
    latency: list[float] = []

    def acked() -> bool:
        stats.update(kiosks.stats())
        latency.extend(stats["ack_latency"])  # each stats() hands over the new ones
        return bool(stats["burst_left"] == 0)

    stats: dict[str, Any] = {}
    lost0 = kiosks.stats()["lost"]
    t = time.monotonic()
    kiosks.burst(count)
    done = _wait(acked, STORM_LIMIT_S, 0.05)
    # until the last ack: passages left unacknowledged after the limit are counted apart
    took = max(stats["burst_done"] - t, 1e-6) if stats["burst_done"] > t else None
    latency.sort()
    return {
        "passages": count,
        "all_acked": done,
        "left": stats["burst_left"],
        "s": took if done else None,
        "per_s": (count - stats["burst_left"]) / took if took else None,
        "lost_connections": stats["lost"] - lost0,
        "ack_p50_ms": 1000 * median(latency) if latency else None,
        "ack_p95_ms": 1000 * quantiles(latency, n=20)[-1] if len(latency) > 1 else None,
    }


def window(
    side: Mosquitto | Nats, kiosks: Kiosks, procs: Processes, ingest: int, secs: float
) -> dict[str, Any]:
    """(b) the steady state: CPU and memory per broker process, ack latency."""
    s0, c0, i0, t0 = kiosks.stats(), procs.cpu(), proc_cpu_s(ingest), time.monotonic()
    time.sleep(secs)
    s1, c1, i1, t1 = kiosks.stats(), procs.cpu(), proc_cpu_s(ingest), time.monotonic()
    latency = sorted(s1["ack_latency"])
    return {
        "s": t1 - t0,
        "cpu_pct": {k: 100 * (c1[k] - c0[k]) / (t1 - t0) for k in c1},
        "rss_mb": procs.rss(),
        "ingest_cpu_pct": 100 * (i1 - i0) / (t1 - t0),
        "passages": len(latency),
        "ack_p50_ms": 1000 * median(latency) if latency else None,
        "ack_p95_ms": 1000 * quantiles(latency, n=20)[-1] if len(latency) > 1 else None,
        "outbox": s1["outbox"],
        "disconnects": s1["disconnects"] - s0["disconnects"],
        "jetstream": side.jetstream(),
    }


def measure(name: str, n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One broker, one round: start it and the ingest, then (a) to (e); stop them all."""
    side = SIDES[name](root, args)
    side.start()
    procs = Processes(side)
    result: dict[str, Any] = {"broker": name, "devices": n}
    monitor = Monitor(side.port, side.protocol)
    ingest = None
    fleet = Fleet(
        side.ports, n, args.telemetry_s, args.passage_rate, seed=n, protocol=side.protocol
    )
    kiosks = Kiosks(fleet)
    try:
        ingest = start_ingest(root, side.port, monitor, **side.ingest_settings())
        result["idle_rss_mb"] = procs.rss()
        connect: dict[str, Any] = {}
        with procs.cpu_used(connect):
            try:
                connect |= kiosks.connect(args.connect_limit_s)
            except TimeoutError as exc:
                result["failed"] = f"{exc} ({kiosks.stats()['ready']} born)"
                return result
        result["connect"] = connect
        time.sleep(SETTLE_S)
        result["window"] = window(side, kiosks, procs, ingest.pid, args.window_s)
        try:
            status = inproc_status(cfg(side))
        except FleetError as exc:  # the operator's SUBSCRIBE refused (NATS)
            status = {"snapshot_s": None, "live_s": None, "devices": set(), "answered": set()}
            result["status_error"] = str(exc)
        result["status"] = {
            "snapshot_s": status["snapshot_s"],
            "get_status_s": status["live_s"],
            "listed": len(status["devices"] & kiosks.ids),
            "answered": len(status["answered"] & kiosks.ids),
        }
        result["e2e"] = end_to_end(kiosks, args.burst)
        result["storm"] = storm(side, kiosks, procs)
    finally:
        kiosks.stop()
        if ingest is not None:
            ingest.terminate()
            ingest.wait(30)
        monitor.stop()
        side.stop()
    return result


# -- the report ------------------------------------------------------------------------------


def spread(values: list[float | None], spec: str = ".2f") -> str:
    """Median (min-max) of the rounds' values; "-" when none."""
    got = sorted(v for v in values if v is not None)
    if not got:
        return "-"
    mid = format(median(got), spec)
    return mid if len(got) == 1 else f"{mid} ({format(got[0], spec)}-{format(got[-1], spec)})"


def _total(d: dict[str, float]) -> float:
    return sum(d.values())


def versions() -> dict[str, str]:
    nats = subprocess.run([nats_binary(), "--version"], capture_output=True, text=True, check=False)
    return {"nats_server": nats.stdout.strip().removeprefix("nats-server: ")}


def _grown_kb(r: dict[str, Any], _n: int) -> float:
    """Broker memory per kiosk: RSS in the window over RSS with only the ingest."""
    return 1024 * (_total(r["window"]["rss_mb"]) - _total(r["idle_rss_mb"])) / r["devices"]


Getter = Callable[[dict[str, Any], int], float | None]
FIGURES: list[tuple[str, Getter, str]] = [
    ("connect: all CONNACKs (s)", lambda r, _: r["connect"]["connack_s"], ".2f"),
    ("connect: all births (s)", lambda r, _: r["connect"]["birth_s"], ".2f"),
    ("connect: broker CPU, all processes (s)", lambda r, _: _total(r["connect"]["cpu_s"]), ".2f"),
    ("connect: attempts retried", lambda r, _: r["connect"]["lost"], ".0f"),
    (
        "connect: SUBSCRIBE filters refused (SUBACK 0x80)",
        lambda r, _: r["connect"]["sub_refused"],
        ".0f",
    ),
    ("status: connect + retained snapshot (s)", lambda r, _: r["status"]["snapshot_s"], ".3f"),
    ("status: get-status, every reply (s)", lambda r, _: r["status"]["get_status_s"], ".3f"),
    ("status: kiosks listed", lambda r, _: r["status"]["listed"], ".0f"),
    ("status: kiosks answered", lambda r, _: r["status"]["answered"], ".0f"),
    ("steady: broker CPU, all processes (%)", lambda r, _: _total(r["window"]["cpu_pct"]), ".1f"),
    (
        "steady: broker CPU, busiest process (%)",
        lambda r, _: max(r["window"]["cpu_pct"].values()),
        ".1f",
    ),
    ("steady: broker RSS, all processes (MB)", lambda r, _: _total(r["window"]["rss_mb"]), ".0f"),
    (
        "steady: broker RSS, largest process (MB)",
        lambda r, _: max(r["window"]["rss_mb"].values()),
        ".0f",
    ),
    ("idle: broker RSS with the ingest only (MB)", lambda r, _: _total(r["idle_rss_mb"]), ".0f"),
    ("steady: broker RSS per kiosk (KB)", _grown_kb, ".0f"),
    ("steady: ack p50 (ms)", lambda r, _: r["window"]["ack_p50_ms"], ".0f"),
    ("steady: ack p95 (ms)", lambda r, _: r["window"]["ack_p95_ms"], ".0f"),
    ("steady: ingest CPU (%)", lambda r, _: r["window"]["ingest_cpu_pct"], ".1f"),
    (
        "end to end: passages/s (acked ones, until the last ack)",
        lambda r, _: r["e2e"]["per_s"],
        ".0f",
    ),
    ("end to end: burst all acked (s)", lambda r, _: r["e2e"]["s"], ".2f"),
    (
        "end to end: connections lost during the burst",
        lambda r, _: r["e2e"]["lost_connections"],
        ".0f",
    ),
    ("end to end: burst ack p50 (ms)", lambda r, _: r["e2e"]["ack_p50_ms"], ".0f"),
    ("end to end: burst ack p95 (ms)", lambda r, _: r["e2e"]["ack_p95_ms"], ".0f"),
    ("end to end: burst passages not acked at the end", lambda r, _: r["e2e"]["left"], ".0f"),
    ("storm: kiosks cut off", lambda r, _: r["storm"]["cut"], ".0f"),
    ("storm: all back, from the cut (s)", lambda r, _: r["storm"]["back_s"], ".2f"),
    ("storm: all back, from the broker up (s)", lambda r, _: r["storm"]["back_after_up_s"], ".2f"),
    ("storm: operator sees all online (s)", lambda r, _: r["storm"].get("online_s"), ".2f"),
    (
        "storm: kiosks whose new status the operator never sees",
        lambda r, _: r["storm"].get("not_online"),
        ".0f",
    ),
    ("storm: connection attempts", lambda r, _: r["storm"]["attempts"], ".0f"),
    ("storm: broker CPU, all processes (s)", lambda r, _: _total(r["storm"]["cpu_s"]), ".2f"),
    ("storm: killed node back in the cluster (s)", lambda r, _: r["storm"].get("rejoin_s"), ".2f"),
]


def _value(get: Getter, r: dict[str, Any], n: int) -> float | None:
    try:
        return get(r, n)
    except (KeyError, TypeError, ValueError):  # a figure this broker does not have
        return None


def report(doc: dict[str, Any]) -> None:
    m, s = doc["machine"], doc["settings"]
    print(
        f"cluster benchmark: one mosquitto (MQTT v5) against 3 nats-server nodes (MQTT 3.1.1, "
        f"JetStream), {s['rounds']} rounds, order alternating; median (min-max) of the rounds"
    )
    print(
        f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}, nats-server "
        f"{m['nats_server']}; load average {doc['load'][0]} at the start, {doc['load'][1]} at "
        f"the end; {doc['seconds']:.0f} s in all"
    )
    print(
        f"traffic: telemetry every {s['telemetry_s']:g} s, {s['passage_rate']:g} passages/min "
        f"per kiosk, window {s['window_s']:g} s, burst {s['burst']} passages; NATS ingest "
        f"source {s['nats_source']}"
    )
    brokers = list(dict.fromkeys(r["broker"] for r in doc["results"]))
    for n in sorted({r["devices"] for r in doc["results"]}):
        runs = {
            b: [r for r in doc["results"] if (r["devices"], r["broker"]) == (n, b)] for b in brokers
        }
        ok = {b: [r for r in rs if "failed" not in r] for b, rs in runs.items()}
        print(
            f"\n{n} kiosks | "
            + " | ".join(f"{b} ({len(ok[b])}/{len(runs[b])} rounds)" for b in brokers)
        )
        for b in brokers:
            for r in runs[b]:
                if "failed" in r:
                    print(f"  {b}, round {r['round'] + 1} failed: {r['failed']}")
        for label, get, spec in FIGURES:
            cells = [spread([_value(get, r, n) for r in ok[b]], spec) for b in brokers]
            if any(c != "-" for c in cells):
                print(f"{label} | " + " | ".join(cells))
        for b in brokers:
            notes(b, ok[b])


def notes(broker: str, runs: list[dict[str, Any]]) -> None:
    """What the table does not show, round by round."""
    for r in runs:
        where, storm = f"  {broker}, round {r['round'] + 1}:", r["storm"]
        if not storm["back"] or not storm.get("online", True):
            print(f"{where} the storm did not settle: {storm}")
        if r["connect"].get("refused_filters"):
            print(f"{where} SUBSCRIBE refused for {r['connect']['refused_filters']}")
        if storm["cut"] == 0:
            print(f"{where} no kiosk on the node killed: {storm.get('per_node')}")
        killed = [k for k, v in storm.get("leader_killed", {}).items() if v]
        if killed:
            print(f"{where} the killed node led {', '.join(killed)}")
    js = [r["window"]["jetstream"] for r in runs if r["window"]["jetstream"]]
    if js:
        node = next(iter(js[0].values()))
        print(
            f"  {broker}, JetStream on one node (first round): {node['streams']} streams, "
            f"{node['consumers']} consumers, {node['messages']} messages, "
            f"{node['stored_mb']:.1f} MB stored; {node['subscriptions']} subscriptions"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser, "100,300", 10.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (each broker)")
    parser.add_argument("--burst", type=int, default=1000, help="passages at once, end to end")
    parser.add_argument("--brokers", default="mosquitto,nats", help="which, comma-separated")
    parser.add_argument(
        "--nats-source", choices=["mqtt", "nats"], default="nats", help="the ingest's on NATS"
    )
    parser.add_argument("--nats-mqtt", default="", help="more settings for nats' mqtt {} block")
    parser.add_argument(
        "--connect-limit-s", type=float, default=0.0, help="0: 60 s + 1 s per 50 kiosks"
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument("--report", type=Path, help="only print the report of a --json output")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return
    sizes = [int(x) for x in args.devices.split(",") if x.strip()]
    brokers = [b for b in args.brokers.split(",") if b]
    raise_open_files(max(sizes) + 500)
    # a SIGTERM (timeout, kill) runs the finally blocks that stop the brokers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load0 = os.getloadavg()[0]
    t = time.monotonic()
    results = []
    with contextlib.ExitStack() as stack:
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory())
        for n in sizes:
            for r in range(args.rounds):
                order = brokers if r % 2 == 0 else brokers[::-1]
                for name in order:
                    root = Path(tmp) / f"n{n}-r{r}-{name}"
                    root.mkdir(parents=True)
                    results.append({"round": r, **measure(name, n, args, root)})
    doc = {
        "machine": machine() | versions(),
        "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "seconds": time.monotonic() - t,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "results": results,
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        report(doc)
    failed = [(r["broker"], r["devices"]) for r in results if "failed" in r]
    if failed:
        raise SystemExit(f"phases that did not complete: {failed}")


if __name__ == "__main__":
    main()
