"""The kiosk screen's server against hostile clients, over real sockets on loopback:
slow request heads, event streams nobody reads, floods of connections from one
address or many. The traveller's and the officer's pages must stay up. (The
limits themselves, without a server: the Connections tests at the end.)"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import KioskConfig
from edge.kiosk import conns as conns_mod
from edge.kiosk.conns import Connections
from edge.kiosk.screen import ScreenModel
from edge.kiosk.server import KioskServer

from .test_kiosk_server import PIN, Events

HOSTILE = 32
WITHIN_S = 3.0  # a legitimate page while under attack: in time, or the test fails


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KioskServer]:
    pin = tmp_path / "officer-pin"
    pin.write_text(PIN + "\n")
    kiosk = KioskServer(
        KioskConfig(listen="127.0.0.1:0", pin_file=pin),
        ScreenModel(),
        on_approve=lambda: None,
        on_deny=lambda: None,
    )
    kiosk.start()
    yield kiosk
    kiosk.stop()


class Attacker:
    """Hostile connections from ``sources`` (round robin), closed at the end."""

    def __init__(self, server: KioskServer, sources: list[str]) -> None:
        self.port = server.httpd.server_address[1]
        self.sources = sources
        self.sockets: list[socket.socket] = []

    def connect(self, head: bytes) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((self.sources[len(self.sockets) % len(self.sources)], 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(head)
        self.sockets.append(sock)
        return sock

    def slow_heads(self, count: int) -> None:
        """Request lines whose heads never end (one header line now and then)."""
        for _ in range(count):
            self.connect(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-Slow: 1\r\n".encode())

    def unread_streams(self, count: int) -> None:
        for _ in range(count):
            head = f"GET /events?view=traveller HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
            self.connect(head.encode())

    def drip(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # (ended by the server: as it should)
                sock.send(b"X-Drip: 1\r\n")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def attacker(server: KioskServer) -> Iterator[Callable[[list[str]], Attacker]]:
    made: list[Attacker] = []

    def make(sources: list[str]) -> Attacker:
        made.append(Attacker(server, sources))
        return made[-1]

    yield make
    for one in made:
        one.close()


def get(server: KioskServer, path: str, source: str = "127.0.0.1") -> tuple[int, bytes, float]:
    """(status, body, seconds taken) of a legitimate GET on a new connection."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.httpd.server_address[1], timeout=WITHIN_S, source_address=(source, 0)
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return resp.status, body, time.monotonic() - started


def assert_pages_up(server: KioskServer) -> None:
    for path, marker in (("/", b'data-screen="ready"'), ("/officer", b'id="pin"')):
        status, body, took = get(server, path)
        assert status == 200, path
        assert marker in body, path
        assert took < WITHIN_S, (path, took)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)  # polling a condition with a deadline, not waiting a fixed time
    return predicate()


def test_slow_heads_and_unread_streams_from_the_screens_own_address(
    server: KioskServer, attacker: Callable[[list[str]], Attacker]
) -> None:
    """The hardest case: the attacker shares 127.0.0.1 with the kiosk's browser."""
    hostile = attacker(["127.0.0.1"])
    hostile.slow_heads(HOSTILE)
    hostile.unread_streams(HOSTILE)
    hostile.drip()
    assert wait_until(lambda: server.conns.counts().get("stream", 0) > 0)  # really streams
    assert_pages_up(server)
    counts = server.conns.counts()
    assert counts["total"] <= conns_mod.MAX_PER_CLIENT
    assert counts.get("stream", 0) <= conns_mod.MAX_CLIENT_STREAMS


def test_many_addresses_cannot_crowd_out_the_traveller_page(
    server: KioskServer, attacker: Callable[[list[str]], Attacker]
) -> None:
    """Beyond the total, waiting connections give way and the oldest streams of the
    others end; the kiosk's own screen (127.0.0.1) keeps its live stream."""
    screen = Events(server.address)
    _, first = screen.next()
    hostile = attacker([f"127.0.0.{n}" for n in range(2, 2 + 2 * HOSTILE)])
    hostile.slow_heads(2 * HOSTILE)
    hostile.unread_streams(HOSTILE)
    hostile.drip()
    assert_pages_up(server)
    counts = server.conns.counts()
    assert counts["total"] <= conns_mod.MAX_CONNECTIONS
    assert counts.get("stream", 0) <= conns_mod.MAX_STREAMS + 1  # the others', the screen's
    server.model.touch()
    _, state = screen.next()
    assert state["version"] > first["version"]  # the oldest stream of all, and still live
    screen.close()


def test_one_address_cannot_end_another_clients_stream(
    server: KioskServer, attacker: Callable[[list[str]], Attacker]
) -> None:
    screen = Events(server.address)
    _, first = screen.next()
    hostile = attacker(["127.0.0.2"])
    hostile.unread_streams(HOSTILE)
    hostile.slow_heads(HOSTILE)
    assert_pages_up(server)
    server.model.touch()
    _, state = screen.next()
    assert state["version"] > first["version"]  # still live, still served
    screen.close()


def test_a_slow_head_is_cut_off_at_its_deadline(
    server: KioskServer,
    attacker: Callable[[list[str]], Attacker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conns_mod, "HEAD_TIMEOUT_S", 0.3)
    hostile = attacker(["127.0.0.2"])
    sock = hostile.connect(b"GET / HTTP/1.1\r\n")
    closed = threading.Event()

    def read() -> None:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        closed.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 5
    while not closed.wait(0.1) and time.monotonic() < deadline:
        hostile.drip()  # a header line every 100 ms: each read is quick, the head never ends
    assert closed.is_set()
    assert wait_until(lambda: server.conns.counts()["total"] == 0)


def test_a_stream_nobody_reads_is_dropped_and_blocks_nothing(
    server: KioskServer,
    attacker: Callable[[list[str]], Attacker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conns_mod, "SEND_TIMEOUT_S", 0.3)
    hostile = attacker(["127.0.0.2"])
    hostile.unread_streams(1)
    assert wait_until(lambda: server.conns.counts().get("stream", 0) == 1)

    def flood() -> bool:
        for _ in range(50):
            server.model.touch()  # every change is a state on the stream: its buffers fill
        return server.conns.counts().get("stream", 0) == 0

    assert wait_until(flood, timeout=10)
    assert_pages_up(server)


def test_more_streams_than_allowed_end_the_oldest(server: KioskServer) -> None:
    pages = [Events(server.address) for _ in range(conns_mod.MAX_CLIENT_STREAMS + 1)]
    try:
        assert wait_until(
            lambda: server.conns.counts().get("stream", 0) == conns_mod.MAX_CLIENT_STREAMS
        )
        for page in pages:
            page.next()  # each had its first state
        assert pages[0].resp.fp.readline() == b""  # the oldest was ended
        server.model.touch()
        _, state = pages[-1].next()
        assert state["screen"] == "ready"
    finally:
        for page in pages:
            page.close()


# -- the limits, without a server ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # every record is younger than the one before
        return self.now


@pytest.fixture
def sockets() -> Iterator[Callable[[], socket.socket]]:
    made: list[socket.socket] = []

    def make() -> socket.socket:
        a, b = socket.socketpair()
        made.extend((a, b))
        return a

    yield make
    for sock in made:
        sock.close()


def test_beyond_a_clients_limit_its_oldest_waiting_connection_gives_way(
    sockets: Callable[[], socket.socket],
) -> None:
    registry = Connections(max_total=10, max_per_client=2, clock=Clock())
    first = registry.admit("a", sockets())
    second = registry.admit("a", sockets())
    assert first is not None
    assert second is not None
    registry.busy(second)
    third = registry.admit("a", sockets())
    assert third is not None
    assert first.ended
    assert not second.ended
    registry.busy(third)
    assert registry.admit("a", sockets()) is None  # nobody waiting: refused
    assert registry.admit("b", sockets()) is not None  # another client: room
    registry.release(second)
    assert registry.admit("a", sockets()) is not None


def test_beyond_the_total_the_greediest_clients_oldest_waiting_one_gives_way(
    sockets: Callable[[], socket.socket],
) -> None:
    registry = Connections(max_total=4, max_per_client=4, clock=Clock())
    lone = registry.admit("a", sockets())
    greedy = [registry.admit("b", sockets()) for _ in range(3)]
    assert registry.admit("c", sockets()) is not None
    assert greedy[0] is not None
    assert greedy[0].ended
    assert lone is not None
    assert not lone.ended
    assert registry.counts()["total"] == 4


def test_streams_beyond_the_limits_end_the_oldest(sockets: Callable[[], socket.socket]) -> None:
    woken: list[int] = []
    registry = Connections(
        max_total=20,
        max_per_client=20,
        max_streams=3,
        max_client_streams=2,
        on_stream_ended=lambda: woken.append(1),
        clock=Clock(),
    )

    def stream(client: str) -> conns_mod.Conn:
        conn = registry.admit(client, sockets())
        assert conn is not None
        assert registry.stream(conn)
        return conn

    a1, a2 = stream("a"), stream("a")
    a3 = stream("a")
    assert a1.ended
    assert not a2.ended
    assert not a3.ended
    assert woken == [1]
    b1 = stream("b")
    assert registry.counts()["stream"] == 3
    c1 = stream("c")  # the total: the oldest of the client holding most ("a") goes
    assert a2.ended
    assert not b1.ended
    assert not c1.ended
    assert registry.counts()["stream"] == 3
    registry.own = lambda client: client == "screen"
    screen = stream("screen")  # the kiosk's own browser: beyond the total of the others
    stream("d")
    assert not screen.ended
    assert a3.ended  # (tied at one each: the oldest of the others)
    assert registry.counts()["stream"] == 4


def test_the_deadline_reader_stops_at_its_deadline() -> None:
    a, b = socket.socketpair()
    with a, b:
        reader = conns_mod.DeadlineReader(a, idle_s=5)
        reader.deadline = time.monotonic() - 1
        with pytest.raises(TimeoutError):
            reader.readinto(bytearray(10))
        reader.deadline = None
        b.sendall(b"x")
        assert reader.read(1) == b"x"


def test_refusals_are_logged_as_counts_at_most_once_a_minute(
    sockets: Callable[[], socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()  # a second per reading
    registry = Connections(max_total=1, max_per_client=1, clock=clock)
    held = registry.admit("a", sockets())
    assert held is not None
    registry.busy(held)
    with caplog.at_level("WARNING", logger="edge.kiosk.conns"):
        for _ in range(20):
            assert registry.admit("b", sockets()) is None
        clock.now += conns_mod.REPORT_EVERY_S
        assert registry.admit("b", sockets()) is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "kiosk: screen under load: 1 x connection (too many in all) refused",
        "kiosk: screen under load: 20 x connection (too many in all) refused",
    ]
