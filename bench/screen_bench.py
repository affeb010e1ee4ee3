"""The kiosk screen under attack: the traveller page's rate and latency, with and without
hostile connections.

Starts the real screen server (``edge.kiosk.server.KioskServer``) on a free
loopback port and fetches the traveller page (``GET /``, a new connection each
time, as a page load) from ``--clients`` threads for ``--seconds``, twice:

- quiet: nobody else is connected;
- hostile: ``--hostile`` slow-header sockets (a request line, then one header
  line every ``--drip-s`` seconds, never the end of the head) and as many event
  streams that are never read, all opened before the measurement and held
  through it.

It prints requests/s, p50/p95 latency and the failed requests (refused, reset,
or slower than ``--timeout-s``) of each phase. The hostile connections come from
``--hostile-source`` (default 127.0.0.1: the very address of the legitimate
client, the hardest case; 127.0.0.2 is "another client"). Usage::

    .venv/bin/python bench/screen_bench.py [--seconds 5] [--hostile 32] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config import KioskConfig  # noqa: E402
from edge.kiosk.screen import ScreenModel  # noqa: E402
from edge.kiosk.server import KioskServer  # noqa: E402


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0

    def report(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
        return {
            "requests_per_s": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "ok": len(lat),
            "failed": self.failures,
            "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else float("nan"),
            "p95_ms": round(p95 * 1000, 2),
        }


def get_page(host: str, port: int, timeout_s: float) -> bool:
    """One page load on a new connection: True when a complete 200 came back in time."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200") and data.rstrip().endswith(b"</html>")


def measure(host: str, port: int, clients: int, seconds: float, timeout_s: float) -> Phase:
    phase = Phase()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < end:
            started = time.perf_counter()
            ok = get_page(host, port, timeout_s)
            took = time.perf_counter() - started
            with lock:
                if ok:
                    phase.latencies.append(took)
                else:
                    phase.failures += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.monotonic() - started
    return phase


class Hostile:
    """Slow-header sockets and unread event streams, held until :meth:`close`."""

    def __init__(self, host: str, port: int, source: str, count: int, drip_s: float) -> None:
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._host, self._port, self._source = host, port, source
        for _ in range(count):
            self._open(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n")
        for _ in range(count):
            self._open(f"GET /events?view=traveller HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
        self._drip = threading.Thread(target=self._dripping, args=(drip_s,), daemon=True)
        self._drip.start()

    def _open(self, head: str) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # an event stream fills up
        sock.bind((self._source, 0))
        try:
            sock.connect((self._host, self._port))
            sock.sendall(head.encode())
        except OSError:
            sock.close()
            return
        self.sockets.append(sock)

    def _dripping(self, drip_s: float) -> None:
        n = 0
        while not self._stop.wait(drip_s):
            n += 1
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.send(f"X-Drip-{n}: 1\r\n".encode())

    def close(self) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--hostile", type=int, default=32)
    parser.add_argument("--hostile-source", default="127.0.0.1")
    parser.add_argument("--drip-s", type=float, default=12.0)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp) / "pin"
        pin.write_text("246813\n")
        server = KioskServer(
            KioskConfig(listen="127.0.0.1:0", pin_file=pin),
            ScreenModel(),
            on_approve=lambda: None,
            on_deny=lambda: None,
        )
        server.start()
        host, port = "127.0.0.1", int(server.address.rsplit(":", 1)[1])
        try:
            quiet = measure(host, port, args.clients, args.seconds, args.timeout_s)
            hostile = Hostile(host, port, args.hostile_source, args.hostile, args.drip_s)
            time.sleep(0.5)  # let the server take them all in before measuring
            try:
                attacked = measure(host, port, args.clients, args.seconds, args.timeout_s)
            finally:
                hostile.close()
        finally:
            server.stop()
    result = {"quiet": quiet.report(), f"hostile x{args.hostile}": attacked.report()}
    if args.json:
        print(json.dumps(result))
    else:
        for name, numbers in result.items():
            print(
                f"{name:14} {numbers['requests_per_s']:8.1f} req/s  "
                f"p50 {numbers['p50_ms']:7.2f} ms  p95 {numbers['p95_ms']:7.2f} ms  "
                f"ok {numbers['ok']:6}  failed {numbers['failed']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
