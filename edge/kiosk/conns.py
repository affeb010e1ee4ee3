"""The screen server's connections: how many, how long, and who gives way.

A kiosk's screen has few legitimate clients (its own Chromium, perhaps an
officer's tablet); a client that opens many connections, sends its request a
byte at a time, or never reads its event stream must not lock the others out.
So (the server, ``server.py``, asks :class:`Connections` at each step):

- At most :data:`MAX_CONNECTIONS` in total and :data:`MAX_PER_CLIENT` per client
  (IP address). A connection still *waiting* for a complete request head (idle
  between requests, or slow) gives way: a new connection beyond the client's
  limit ends that client's oldest waiting one; beyond the total, the oldest
  waiting one of the client holding most. Only when none is waiting is the new
  connection refused (a bare 503, then closed). A connection that is being
  answered or is an event stream is never ended for a newcomer's sake.
- At most :data:`MAX_CLIENT_STREAMS` event streams per client, and
  :data:`MAX_STREAMS` in total for all but the kiosk's own browser (``own``:
  loopback 127.0.0.1 or ::1, or the screen's own address): a new one beyond a
  limit ends the oldest stream of that client, or for the total the oldest of
  the other client holding most (a page reconnects by itself; a reloaded page's
  old stream is the one that goes). So no one else can end the traveller
  screen's stream.
- Deadlines (:class:`DeadlineReader`, :class:`TimedWriter`): the first byte of a
  request within :data:`IDLE_TIMEOUT_S`, the whole head and body within
  :data:`HEAD_TIMEOUT_S` of it, every write within :data:`SEND_TIMEOUT_S` (an
  event stream nobody reads ends there instead of holding its thread).

Ending a connection is ``shutdown()`` of its socket: the thread serving it wakes
from its read (or its next write fails) and lets go.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_PER_CLIENT = 16  # Chromium opens up to 6 per host, plus a stream per page
MAX_STREAMS = 16
MAX_CLIENT_STREAMS = 4  # the traveller's page and the officer's, with room for a reload
IDLE_TIMEOUT_S = 30.0  # waiting for the first byte of a request
HEAD_TIMEOUT_S = 5.0  # from the first byte to the end of the head (and of the body)
SEND_TIMEOUT_S = 5.0  # any one write, an event stream's too
STREAM_SNDBUF = 32 * 1024  # an event stream's send buffer: a page that stops reading
# is found out (the send timeout) after a few dozen states, not megabytes of them
REPORT_EVERY_S = 60.0  # refusals are logged as a count at most this often

Phase = Literal["waiting", "busy", "stream"]
REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(eq=False)
class Conn:
    """One connection: whose, what it does (``phase``) since when."""

    client: str
    sock: socket.socket
    since: float
    phase: Phase = "waiting"
    ended: bool = False  # by the registry, to make room: its thread lets go


class Connections:
    """Who holds which connection; admits, ends, and refuses (thread-safe).

    ``on_stream_ended`` is called when a stream was ended to make room (its thread
    waits for a state change: wake it).
    """

    def __init__(
        self,
        *,
        max_total: int = MAX_CONNECTIONS,
        max_per_client: int = MAX_PER_CLIENT,
        max_streams: int = MAX_STREAMS,
        max_client_streams: int = MAX_CLIENT_STREAMS,
        on_stream_ended: Callable[[], None] = lambda: None,
        own: Callable[[str], bool] = lambda _client: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.max_streams = max_streams
        self.max_client_streams = max_client_streams
        self.on_stream_ended = on_stream_ended
        self.own = own
        self._clock = clock
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, Conn] = {}
        self._events: Counter[str] = Counter()  # refused, ended: for the log
        self._reported = clock() - REPORT_EVERY_S  # the first is logged at once

    def admit(self, client: str, sock: socket.socket) -> Conn | None:
        """The new connection's record, or None: refused (the caller closes it)."""
        with self._lock:
            mine = [c for c in self._conns.values() if c.client == client]
            if len(mine) >= self.max_per_client and not self._end_waiting(mine):
                self._refuse("connection (too many from one client)")
                return None
            if len(self._conns) >= self.max_total:
                held = Counter(c.client for c in self._conns.values())
                waiting = [c for c in self._conns.values() if c.phase == "waiting"]
                waiting.sort(key=lambda c: (-held[c.client], c.since))
                if not self._end_waiting(waiting[:1]):
                    self._refuse("connection (too many in all)")
                    return None
            conn = Conn(client, sock, self._clock())
            self._conns[sock] = conn
            return conn

    def get(self, sock: socket.socket) -> Conn:
        with self._lock:
            return self._conns.get(sock) or Conn("", sock, self._clock(), ended=True)

    def waiting(self, conn: Conn) -> None:
        """Between requests: ``conn`` may be ended to make room."""
        self._phase(conn, "waiting")

    def busy(self, conn: Conn) -> None:
        """A complete request head arrived: ``conn`` is being answered."""
        self._phase(conn, "busy")

    def stream(self, conn: Conn) -> bool:
        """``conn`` becomes an event stream, ending others beyond the limits; False: no
        room (answer 503)."""
        ended = False
        with self._lock:
            streams = [c for c in self._conns.values() if c.phase == "stream"]
            mine = [c for c in streams if c.client == conn.client]
            if len(mine) >= self.max_client_streams:
                ended = self._end_oldest(mine, len(mine) - self.max_client_streams + 1)
            # the total: for all but the kiosk's own browser, which only its own limit ends
            streams = [c for c in streams if not c.ended and not self.own(c.client)]
            if not self.own(conn.client) and len(streams) >= self.max_streams:
                held = Counter(c.client for c in streams)
                streams.sort(key=lambda c: (-held[c.client], c.since))
                ended = self._end_oldest(streams[:1], 1) or ended
                streams = [c for c in streams if not c.ended]
            room = conn.sock in self._conns
            room = room and (self.own(conn.client) or len(streams) < self.max_streams)
            if room:
                conn.phase, conn.since = "stream", self._clock()
            else:
                self._refuse("event stream")
        if ended:
            self.on_stream_ended()
        return room

    def release(self, conn: Conn) -> None:
        """``conn``'s thread is done with it (before the socket is closed)."""
        with self._lock:
            if self._conns.get(conn.sock) is conn:
                del self._conns[conn.sock]

    def counts(self) -> dict[str, int]:
        """Connections by phase, and ``total``."""
        with self._lock:
            found: Counter[str] = Counter(c.phase for c in self._conns.values())
            return {"total": len(self._conns), **found}

    # -- under the lock --------------------------------------------------------------

    def _phase(self, conn: Conn, phase: Phase) -> None:
        with self._lock:
            if not conn.ended:
                conn.phase, conn.since = phase, self._clock()

    def _end_waiting(self, candidates: list[Conn]) -> bool:
        waiting = sorted((c for c in candidates if c.phase == "waiting"), key=lambda c: c.since)
        return self._end_oldest(waiting, 1)

    def _end_oldest(self, candidates: list[Conn], count: int) -> bool:
        """End the first ``count`` of ``candidates`` (oldest first); any ended."""
        victims = sorted(candidates, key=lambda c: c.since)[: max(count, 0)]
        for victim in victims:
            victim.ended = True
            del self._conns[victim.sock]
            with contextlib.suppress(OSError):  # (already gone)
                victim.sock.shutdown(socket.SHUT_RDWR)  # its thread wakes and lets go
            self._note(f"{victim.phase} connection ended to make room")
        return bool(victims)

    def _refuse(self, what: str) -> None:
        self._note(f"{what} refused")

    def _note(self, event: str) -> None:
        """Count ``event``; log the counts at most every :data:`REPORT_EVERY_S` (an
        attacker must not flood the journal)."""
        self._events[event] += 1
        now = self._clock()
        if now - self._reported >= REPORT_EVERY_S:
            summary = ", ".join(f"{n} x {e}" for e, n in sorted(self._events.items()))
            log.warning("kiosk: screen under load: %s", summary)
            self._events.clear()
            self._reported = now


def refuse(sock: socket.socket) -> None:
    """Tell a refused client why, without waiting for it, and close."""
    with contextlib.suppress(OSError):
        sock.send(REFUSED, socket.MSG_DONTWAIT)


class DeadlineReader(io.RawIOBase):
    """A socket's reading side with a deadline: each read waits at most
    ``idle_s``, and never past ``deadline`` (a ``time.monotonic()``; None: no
    deadline). Past it, :class:`TimeoutError`."""

    def __init__(self, sock: socket.socket, idle_s: float = IDLE_TIMEOUT_S) -> None:
        super().__init__()
        self._sock = sock
        self._idle_s = idle_s
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._idle_s
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("the request took too long")
        self._sock.settimeout(timeout)
        return self._sock.recv_into(buffer)


class TimedWriter(io.BufferedIOBase):
    """A socket's writing side where every write must be done within ``timeout_s``."""

    def __init__(self, sock: socket.socket, timeout_s: float | None = None) -> None:
        super().__init__()
        self._sock = sock
        self._timeout_s = timeout_s

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.settimeout(self._timeout_s or SEND_TIMEOUT_S)
        self._sock.sendall(data)  # the timeout bounds the whole sendall (Python >= 3.5)
        return len(data)
