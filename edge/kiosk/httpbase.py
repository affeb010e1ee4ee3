"""The screen server's HTTP layer, under its routes (``server.py``): each connection
admitted by :class:`~edge.kiosk.conns.Connections` and served on its own thread,
its reads and writes under deadlines, and every answer with the same security
headers. Nothing here knows a route or the screen's state.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from edge.kiosk import conns
from edge.kiosk.conns import Conn, Connections, DeadlineReader, TimedWriter

log = logging.getLogger("edge.kiosk.server")  # the server's lines, under one name

HTTP_CODES = {400: "bad_request", 404: "not_found", 413: "too_large"}


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, admitted (or refused at once) by :class:`Connections`
    in the accepting thread, so that no client can exhaust the kiosk's threads."""

    daemon_threads = True
    request_queue_size = 128  # a burst of connects must not overflow the backlog

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        connections: Connections,
    ) -> None:
        super().__init__(address, handler)
        self.conns = connections

    def process_request(self, request: Any, client_address: Any) -> None:
        conn = self.conns.admit(str(client_address[0]), request)
        if conn is None:
            conns.refuse(request)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address, conn), daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had
            self.conns.release(conn)
            self.shutdown_request(request)

    def _serve(self, request: Any, client_address: Any, conn: Conn) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one connection's end, logged
            self.handle_error(request, client_address)
        finally:
            self.conns.release(conn)  # before the close: its socket is no longer shut down
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away, or was ended to make room
            log.debug("kiosk: connection from %s ended: %s", client_address[0], exc)
        else:
            log.error("kiosk: request from %s failed", client_address[0], exc_info=exc)


class BaseHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 on one admitted connection (``connections``: set by the subclass), and
    the answers' helpers."""

    connections: Connections
    server_version = "checkpoint-edge"
    protocol_version = "HTTP/1.1"
    timeout = conns.IDLE_TIMEOUT_S  # replaced by the deadlines of setup()
    conn: Conn
    reader: DeadlineReader
    rfile: io.BufferedReader  # (setup() makes it one)

    def setup(self) -> None:
        super().setup()
        self.conn = self.connections.get(self.request)
        self.rfile.close()  # (socket.makefile's: its reference would keep the socket open)
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = TimedWriter(self.connection)

    def handle_one_request(self) -> None:
        """Wait for a request (:data:`conns.IDLE_TIMEOUT_S`, giving way to newcomers
        meanwhile), then read its head and body within :data:`conns.HEAD_TIMEOUT_S`."""
        self.connections.waiting(self.conn)
        self.reader.deadline = None
        try:
            first = self.rfile.peek(1)
        except OSError:  # idle too long, reset, or ended to make room
            first = b""
        if not first or self.conn.ended:
            self.close_connection = True
            return
        self.reader.deadline = time.monotonic() + conns.HEAD_TIMEOUT_S
        try:
            super().handle_one_request()
        finally:
            self.reader.deadline = None

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.connections.busy(self.conn)
        return True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kiosk: %s %s", self.address_string(), format % args)

    def same_origin(self) -> bool:
        """No ``Origin`` (not a browser's cross-origin request), or this very server."""
        origin = self.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == self.headers.get("Host", "")

    def body(self, limit: int) -> bytes | None:
        """The request's body, at most ``limit`` bytes; None (a 413 sent) otherwise."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= limit:
            self._error(413, "request too large")
            return None
        return self.rfile.read(length) if length else b""

    def cookie(self, name: str) -> str | None:
        """The value of the request's cookie ``name`` (None: not sent)."""
        morsel = SimpleCookie(self.headers.get("Cookie", "")).get(name)
        return morsel.value if morsel is not None else None

    # -- answers -------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'none'",
        )
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, **headers: str) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8", **headers)

    def _error(self, status: int, reason: str, code: str = "") -> None:
        """``code``: stable, for the page (the text is for people)."""
        self._json(status, {"error": reason, "code": code or HTTP_CODES.get(status, "error")})
