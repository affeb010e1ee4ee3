"""Start-up to READY and resident memory of the kiosk daemon, camera in simulation.

Runs ``python -m edge run`` (the built-in simulation: sample images, mock pins)
as systemd would, with ``NOTIFY_SOCKET`` set to a socket this script reads,
against a mosquitto of the benchmark's own on a free loopback port, in two
cases run interleaved: an empty store (a kiosk at work) and a store of 20,000
passages waiting, as after an outage (written once through the outbox, copied
for each run; ``--passages`` chooses the cases), and measures:

- the time from starting the process to its ``READY=1`` (what systemd waits
  for with ``Type=notify``);
- its resident memory (VmRSS, and the peak VmHWM) just after READY and after
  ``--settle-s`` seconds of scanning.

Targets (issues 6 and 15, on the development machine): READY within 1.5 s,
under 75 MB resident after scanning. Medians and ranges over the runs. Usage::

    .venv/bin/python bench/startup_bench.py [--runs 5] [--settle-s 5] [--passages 0,20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from verify_bench import NOW, make_declaration  # noqa: E402

from edge.core.model import Credential, PassageDraft  # noqa: E402
from edge.store.outbox import Outbox  # noqa: E402
from tests.conftest import Mosquitto  # noqa: E402

READY_TARGET_S = 1.5
RSS_TARGET_MB = 75.0
DEVICE, SITE = "sim-lane-1", "simulation"  # edge/defaults/simulation.toml


def make_store(directory: Path, passages: int) -> None:
    """``passages`` waiting in a store, written through the outbox like the lane's."""
    box = Outbox(directory, DEVICE, SITE)
    claims = make_declaration()
    for _ in range(passages):
        cred = Credential.from_raw("declaration", uuid.uuid4().bytes, valid=True, claims=claims)
        box.append(PassageDraft(NOW, "approved", "policy", (), (cred,), "auto", "approve"))
    box.close()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def one_run(workdir: Path, settle_s: float, store: Path, port: int) -> dict[str, float]:
    sock_path = workdir / "notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    config = workdir / "config.toml"
    sim = (REPO / "edge" / "defaults" / "simulation.toml").read_text()
    samples = REPO / "edge" / "samples"
    sim = sim.replace('"images:../samples"', f'"images:{samples}"')
    for name in ("demo-trust.json", "demo-officer-pin.txt"):
        sim = sim.replace(f'"../samples/{name}"', f'"{samples / name}"')
    sim = sim.replace('"127.0.0.1:8080"', '"127.0.0.1:0"')  # the screen too, on a free port
    shutil.copytree(store, workdir / "store")
    sim = sim.replace('"~/.local/state/checkpoint-edge/simulation"', f'"{workdir / "store"}"')
    sim = sim.replace('host = "localhost"', 'host = "127.0.0.1"')
    sim = sim.replace("port = 1883", f"port = {port}")
    config.write_text(sim)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "-c", str(config)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        while True:
            data = sock.recv(4096).decode()
            if "READY=1" in data.splitlines():
                ready_s = time.perf_counter() - started
                break
        rss_ready, _ = rss_mb(proc.pid)
        time.sleep(settle_s)  # a benchmark: let it scan for a while before measuring
        rss_settled, peak = rss_mb(proc.pid)
        proc.terminate()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    return {
        "ready_s": ready_s,
        "rss_ready_mb": rss_ready,
        "rss_settled_mb": rss_settled,
        "peak_mb": peak,
    }


def summarise(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": statistics.median(r[key] for r in results),
            "min": min(r[key] for r in results),
            "max": max(r[key] for r in results),
        }
        for key in results[0]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument(
        "--passages",
        default="0,20000",
        help="waiting in the store, a comma-separated list: each a case (runs interleaved)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backlogs = [int(n) for n in args.passages.split(",")]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in backlogs}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for n in backlogs:
            stores[n] = Path(tmp) / f"store-{n}"
            make_store(stores[n], n)
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            for run in range(args.runs):
                for n in backlogs:  # interleaved: the machine's noise falls on every case
                    workdir = Path(tmp) / f"run{run}-{n}"
                    workdir.mkdir()
                    results[n].append(one_run(workdir, args.settle_s, stores[n], broker.port))
        finally:
            broker.stop()
    summaries = {n: summarise(results[n]) for n in backlogs}
    met = {
        n: summaries[n]["ready_s"]["max"] <= READY_TARGET_S
        and summaries[n]["rss_settled_mb"]["max"] <= RSS_TARGET_MB
        for n in backlogs
    }
    if args.json:
        print(
            json.dumps(
                {
                    str(n): {"runs": results[n], "summary": summaries[n], "within_targets": met[n]}
                    for n in backlogs
                },
                indent=1,
            )
        )
        return 0
    print(
        f"checkpoint-edge start-up, {args.runs} runs per case; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; a broker"
    )
    units = {"ready_s": "s", "rss_ready_mb": "MB", "rss_settled_mb": "MB", "peak_mb": "MB"}
    for n in backlogs:
        print(f"\n{n} passages waiting{'':<4}{'median':>10}{'min':>10}{'max':>10}")
        for key, unit in units.items():
            s = summaries[n][key]
            print(
                f"{key + ' (' + unit + ')':<26}"
                f"{s['median']:>10.2f}{s['min']:>10.2f}{s['max']:>10.2f}"
            )
        print(
            f"targets: READY <= {READY_TARGET_S} s, resident after scanning <= "
            f"{RSS_TARGET_MB:g} MB: " + ("met" if met[n] else "NOT met")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
