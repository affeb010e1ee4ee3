"""Backlog drain: 10,000 waiting passages to the ingest, next to the raw MQTT rate.

A kiosk's store holds N passages never delivered (an outage). A mosquitto of
the benchmark's own, the central ingest (SQLite) and the kiosk start; the
time until the ingest has acknowledged all N is the drain time. In the same
run, a bare paho client with the same in-flight window publishes N messages of
the same size at QoS 1 and waits for every PUBACK: the raw rate (the anchor).
Drain and raw runs alternate, and which goes first alternates by round; the
ratio is taken per round, so drift of the machine cancels. Each round has an
ingest with a database of its own: the prefilled stores share device id and
seqs, and a second round against the same database would be refused.
Target (issue 15): the drain reaches at least 0.6x the raw rate.

Run: ``.venv/bin/python bench/drain_bench.py [--passages N] [--window W] [--rounds R]
[--ack ingest|broker]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from outbox_bench import prefill, sample_message  # noqa: E402

from edge import config as config_mod  # noqa: E402
from edge.mqtt import topics  # noqa: E402
from edge.service.app import App  # noqa: E402
from tests.conftest import Mosquitto, Subscriber  # noqa: E402


def raw_rate(port: int, n: int, window: int, size: int) -> float:
    """Messages per second of a bare paho client, QoS 1, every PUBACK awaited."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    t = time.perf_counter()
    infos = [client.publish("bench/raw", payload, qos=1) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - t
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def timed_raw(port: int, n: int, window: int, size: int) -> tuple[float, float]:
    """The raw rate and the CPU seconds this process spent on it."""
    cpu = time.process_time()
    rate = raw_rate(port, n, window, size)
    return rate, time.process_time() - cpu


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a process of ours has spent so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float], fmt: str) -> str:
    """``median (range min-max, n=N)``: the rounds' median and range."""
    low, high = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
    return f"{median(values):{fmt}} (range {low}-{high}, n={len(values)})"


@dataclass
class Drain:
    seconds: float  # from the kiosk's start to the last acknowledgement
    startup: float  # ... of which until the first passage was published
    cpu: float  # CPU seconds of this process (the kiosk) meanwhile


def start_ingest(root: Path, port: int) -> subprocess.Popen[bytes]:
    """The ingest runs where it runs in the field: in a process of its own."""
    root.mkdir(parents=True)
    ingest_cfg = root / "ingest.toml"
    ingest_cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[ingest]\ndatabase = "sqlite:///{root / "central.db"}"\n'
        '[log]\nlevel = "warning"\n'
    )
    watch = Subscriber(port, [topics.central_status()]).connect()
    ingest = subprocess.Popen([sys.executable, "-m", "edge", "ingest", "-c", str(ingest_cfg)])
    while json.loads(watch.get(timeout=20).payload).get("state") != "online":
        pass
    watch.disconnect()
    return ingest


def drain(root: Path, port: int, passages: int, window: int, ack: str) -> Drain:
    """A kiosk starts with ``passages`` waiting (as when the broker returns after an
    outage); the time until the last one is acknowledged."""
    store = root / "store"
    prefill(store, passages, 0)
    (root / "frames").mkdir()
    kiosk_cfg = config_mod.from_mapping(
        {
            "device": {"id": "bench"},  # as in the prefilled messages
            "camera": {"source": f"images:{root / 'frames'}"},
            "gpio": {"pin_factory": "mock"},
            "mqtt": {"host": "127.0.0.1", "port": port, "inflight": window, "ack": ack},
            "store": {"dir": str(store)},
        },
        root,
    )
    app = App(kiosk_cfg)
    t, cpu = time.perf_counter(), time.process_time()
    app.start()
    try:
        app.publisher.wait_until(lambda p: p.published > 0, 600)
        startup = time.perf_counter() - t
        if not app.publisher.wait_until(lambda p: p.backlog == 0, 600):
            raise SystemExit("the backlog did not drain within 10 minutes")
        return Drain(time.perf_counter() - t, startup, time.process_time() - cpu)
    finally:
        app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100, help="[mqtt] inflight")
    parser.add_argument("--rounds", type=int, default=3, help="drain and raw runs; medians shown")
    parser.add_argument(
        "--ack",
        choices=["ingest", "broker"],
        default="ingest",
        help="broker: no ingest, the PUBACK ends delivery (measures the kiosk alone)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    size = len(json.dumps(sample_message(1), separators=(",", ":")))
    drains: list[Drain] = []
    raws: list[tuple[float, float]] = []  # (messages/s, CPU s)
    ingest_cpu: list[float] = []  # CPU seconds of each round's ingest process
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # a broker sized for an ingest (deploy/: max_inflight_messages per client)
        broker = Mosquitto(root / "broker", extra="max_inflight_messages 1000").start()
        try:
            for round_ in range(args.rounds):
                ingest = None
                if args.ack == "ingest":
                    ingest = start_ingest(root / f"ingest{round_}", broker.port)
                    ingest_start = process_cpu(ingest.pid)  # its start-up not counted
                try:
                    if round_ % 2:
                        raws.append(timed_raw(broker.port, args.passages, args.window, size))
                    kiosk = root / f"kiosk{round_}"
                    drains.append(drain(kiosk, broker.port, args.passages, args.window, args.ack))
                    if not round_ % 2:
                        raws.append(timed_raw(broker.port, args.passages, args.window, size))
                finally:
                    if ingest is not None:
                        ingest_cpu.append(process_cpu(ingest.pid) - ingest_start)
                        ingest.terminate()
                        ingest.wait(30)
        finally:
            broker.stop()
    rates = [args.passages / d.seconds for d in drains]
    ratios = [r / raw for r, (raw, _) in zip(rates, raws, strict=True)]
    # the raw client is timed from its first publish, its connection made: so is this
    flowing = [args.passages / (d.seconds - d.startup) for d in drains]
    flow_ratios = [r / raw for r, (raw, _) in zip(flowing, raws, strict=True)]
    per = 1e6 / args.passages
    what = "acknowledged by the ingest" if args.ack == "ingest" else "PUBACKed, archived"
    print(f"backlog drain: {args.passages} passages of {size} bytes, window {args.window}")
    print(f"  ack={args.ack} ({what}), median of {args.rounds} rounds")
    print(f"  drain: {spread(rates, '.0f')} passages/s")
    print(f"    start-up to the first publish: {median(d.startup for d in drains):.2f} s")
    print(f"  raw paho QoS 1, same window and size: {spread([r for r, _ in raws], '.0f')} msg/s")
    print(f"  drain / raw = {median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(
        f"  from the first publish (as the raw client, timed once connected):"
        f" {median(flow_ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in flow_ratios)})"
    )
    print(f"  target: >= 0.6: {'met' if median(ratios) >= 0.6 else 'NOT met'} (start-up included)")
    print(
        f"  CPU per message: kiosk {median(d.cpu for d in drains) * per:.0f} us,"
        f" raw client {median(c for _, c in raws) * per:.0f} us"
        + (f", ingest {median(ingest_cpu) * per:.0f} us" if ingest_cpu else "")
    )


if __name__ == "__main__":
    main()
