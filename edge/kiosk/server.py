"""The kiosk's screen, served by the daemon: a local web page for Chromium in kiosk mode.

Routes (all on ``[kiosk] listen``, loopback by default):

==========================  ===================================================
``GET /``                   the traveller view, the state of the moment filled in
``GET /officer``            the officer view (same state, full details once
                            logged in)
``GET /static/<file>``      the pages' script and style
``GET /i18n/index.json``    the languages available and the default
``GET /i18n/<code>.json``   one message catalogue
``GET /events?view=...``    Server-Sent Events: the state as JSON, pushed on
                            every change (``traveller`` or ``officer``)
``GET /state``              the same state once (for scripts and tests)
``POST /officer/login``     ``{"pin": "..."}`` -> session cookie + CSRF token
``GET /officer/session``    whether this browser is logged in (+ CSRF token)
``POST /officer/logout``
``POST /officer/approve``   the officer's approve, as the hardware button
``POST /officer/deny``      the officer's deny
``POST /officer/vehicle``   ``{"kind": "car", "plate": ""}``: open a vehicle group
``POST /officer/plate``     ``{"plate": "51H-123.45"}``: the plate of the vehicle being decided
==========================  ===================================================

Officer actions need a live session (cookie), its CSRF token in the
``X-CSRF-Token`` header, a same-origin request (an ``Origin`` header, when sent,
must be this server), and a loopback client unless ``[kiosk] allow_remote``.
Personal data never appears in the traveller's state nor in the log.

Connections are bounded and time-limited (``conns.py``): per client and in
total, a deadline for each request's head, a bounded number of event streams,
and a send timeout, so that slow or hostile clients cannot lock the screen out.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.config import KioskConfig
from edge.core.model import normal_plate
from edge.core.passage import VEHICLE_KINDS
from edge.kiosk import conns, render
from edge.kiosk.auth import LoginRefused, Officers, read_pin
from edge.kiosk.conns import Conn, Connections, DeadlineReader, TimedWriter
from edge.kiosk.screen import ScreenModel

log = logging.getLogger(__name__)

COOKIE = "cp_officer"
HTTP_CODES = {400: "bad_request", 404: "not_found", 413: "too_large"}
KEEPALIVE_S = 15.0
MAX_BODY = 4096
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json; charset=utf-8",
}
PACKAGE = resources.files("edge.kiosk")
TEMPLATES = frozenset({"traveller.html"})  # served filled in (render.py), never raw


def is_local(host: str) -> bool:
    """A client on this very kiosk (127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6)."""
    try:
        address = ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def catalogues(extra: Path | None) -> dict[str, dict[str, Any]]:
    """Every message catalogue: the bundled ones, then those of ``extra`` (which may
    add languages or replace bundled ones)."""
    found: dict[str, dict[str, Any]] = {}
    sources: list[Any] = [PACKAGE / "i18n"]
    if extra is not None:
        sources.append(extra)
    for folder in sources:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if not entry.name.endswith(".json"):
                continue
            try:
                doc = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.error("kiosk: catalogue %s ignored: %s", entry.name, exc)  # noqa: TRY400
                continue
            if isinstance(doc, dict) and isinstance(doc.get("messages"), dict):
                found[entry.name.removesuffix(".json")] = doc
            else:
                log.error('kiosk: catalogue %s ignored: no "messages" table', entry.name)
    return found


class KioskServer:
    """The screen's HTTP server, on its own threads (one per connection)."""

    def __init__(
        self,
        cfg: KioskConfig,
        model: ScreenModel,
        *,
        on_approve: Callable[[], None],
        on_deny: Callable[[], None],
        on_vehicle: Callable[[str, str], None] = lambda _kind, _plate: None,
        on_plate: Callable[[str], None] = lambda _plate: None,
        on_pin_alarm: Callable[[str], None] = lambda _detail: None,
        connections: Connections | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.on_approve = on_approve
        self.on_deny = on_deny
        self.on_vehicle = on_vehicle
        self.on_plate = on_plate
        pin = read_pin(cfg.pin_file) if cfg.pin_file is not None else None
        self.officers = Officers(pin, cfg.session_s, on_alarm=on_pin_alarm)
        self.conns = connections or Connections()
        self.conns.on_stream_ended = model.wake
        self.catalogues = catalogues(cfg.catalogues)
        self.template = render.traveller_template()
        host, _, port = cfg.listen.rpartition(":")
        self.httpd = _BoundedServer((host.strip("[]"), int(port)), _handler(self), self.conns)
        bound_port = self.httpd.server_address[1]
        # DNS rebinding: only requests that name this server (or loopback) are served
        self.hosts = {f"{h}:{bound_port}" for h in ("127.0.0.1", "localhost", "[::1]")}
        self.hosts.add(f"{host}:{bound_port}")
        # the kiosk's own browser: loopback, or this very address (listen on the LAN)
        own = {"127.0.0.1", "::1", "::ffff:127.0.0.1", host.strip("[]")}
        self.conns.own = lambda client: client in own
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="kiosk-http"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("kiosk: screen at %s (officer view at /officer)", self.address)

    def stop(self) -> None:
        self._stopping.set()
        self.model.wake()  # event streams wake up and end
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _BoundedServer(ThreadingHTTPServer):
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


def _handler(server: KioskServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        kiosk = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    kiosk: KioskServer
    server_version = "checkpoint-edge"
    protocol_version = "HTTP/1.1"
    timeout = conns.IDLE_TIMEOUT_S  # replaced by the deadlines of setup()
    conn: Conn
    reader: DeadlineReader
    rfile: io.BufferedReader  # (setup() makes it one)

    def setup(self) -> None:
        super().setup()
        self.conn = self.kiosk.conns.get(self.request)
        self.rfile.close()  # (socket.makefile's: its reference would keep the socket open)
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = TimedWriter(self.connection)

    def handle_one_request(self) -> None:
        """Wait for a request (:data:`conns.IDLE_TIMEOUT_S`, giving way to newcomers
        meanwhile), then read its head and body within :data:`conns.HEAD_TIMEOUT_S`."""
        self.kiosk.conns.waiting(self.conn)
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
        self.kiosk.conns.busy(self.conn)
        return True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kiosk: %s %s", self.address_string(), format % args)

    # -- helpers -----------------------------------------------------------------------

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

    def _token(self) -> str | None:
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel is not None else None

    def _loopback(self) -> bool:
        return is_local(str(self.client_address[0]))

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None:
            return True  # not a browser's cross-origin request
        return urlsplit(origin).netloc == self.headers.get("Host", "")

    # -- GET -----------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        if urlsplit(self.path).path == "/events":
            self._send(200, b"", "text/event-stream; charset=utf-8")  # headers, no stream
            return
        self.do_GET()

    def _known_host(self) -> bool:
        """The request names this server (not a rebound DNS name), or remote use is on."""
        return self.kiosk.cfg.allow_remote or self.headers.get("Host", "") in self.kiosk.hosts

    def do_GET(self) -> None:
        if not self._known_host():
            self.close_connection = True
            self._error(421, "unknown host name", "host")
            return
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            page = render.traveller_page(
                self.kiosk.template,
                self.kiosk.model.snapshot(officer=False),
                self.kiosk.catalogues,
                self.kiosk.cfg.language,
            )
            self._send(200, page.encode(), STATIC_TYPES[".html"])
        elif path == "/officer":
            self._static("officer.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/i18n/index.json":
            langs = [
                {"code": code, "name": doc.get("name", code)}
                for code, doc in sorted(self.kiosk.catalogues.items())
            ]
            self._json(200, {"languages": langs, "default": self.kiosk.cfg.language})
        elif path.startswith("/i18n/") and path.endswith(".json"):
            doc = self.kiosk.catalogues.get(path.removeprefix("/i18n/").removesuffix(".json"))
            if doc is None:
                self._error(404, "no such language")
            else:
                self._json(200, doc)
        elif path == "/state":
            self._json(200, self._state(parse_qs(url.query).get("view", [""])[0]))
        elif path == "/events":
            self._events(parse_qs(url.query).get("view", ["traveller"])[0])
        elif path == "/officer/session":
            session = self.kiosk.officers.session(self._token())
            self._json(
                200,
                {
                    "enabled": self.kiosk.officers.enabled,
                    "logged_in": session is not None,
                    "csrf": session.csrf if session else None,
                    "remote_allowed": self._loopback() or self.kiosk.cfg.allow_remote,
                },
            )
        else:
            self._error(404, "not found")

    def _static(self, name: str) -> None:
        if "/" in name or name.startswith(".") or not name or name in TEMPLATES:
            self._error(404, "not found")
            return
        suffix = name[name.rfind(".") :] if "." in name else ""
        entry = PACKAGE / "static" / name
        if suffix not in STATIC_TYPES or not entry.is_file():
            self._error(404, "not found")
            return
        self._send(200, entry.read_bytes(), STATIC_TYPES[suffix])

    def _officer_view(self) -> bool:
        return self.kiosk.officers.session(self._token()) is not None

    def _state(self, view: str) -> dict[str, Any]:
        return self.kiosk.model.snapshot(officer=view == "officer" and self._officer_view())

    def _events(self, view: str) -> None:
        """Server-Sent Events: the state now, then at every change, until the client
        goes, the server stops, or the stream is ended to make room for a newer one
        (:class:`Connections`). (The officer's details: while the session lives.)"""
        self.close_connection = True
        if not self.kiosk.conns.stream(self.conn):
            self._error(503, "too many event streams", "busy")
            return
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, conns.STREAM_SNDBUF)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        model, version, conn = self.kiosk.model, -1, self.conn
        stopping = self.kiosk._stopping

        def over() -> bool:
            return conn.ended or stopping.is_set()

        try:
            while not over():
                now = model.version
                if now != version:
                    version = now
                    data = json.dumps(self._state(view), ensure_ascii=False)
                    self.wfile.write(f"event: state\ndata: {data}\n\n".encode())
                else:
                    self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                model.wait_newer(version, KEEPALIVE_S, until=over)
        except OSError:  # gone, not reading (the send timeout), or ended to make room
            pass  # a page reconnects by itself

    # -- POST ----------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.close_connection = True  # a refused request's body is never read as the next one
        if not self._known_host():
            self._error(421, "unknown host name", "host")
            return
        if not path.startswith("/officer/"):
            self._error(404, "not found")
            return
        if not self._loopback() and not self.kiosk.cfg.allow_remote:
            self._error(
                403, "officer actions only from this kiosk ([kiosk] allow_remote)", "remote"
            )
            return
        if not self._same_origin():
            self._error(403, "cross-origin request refused", "cross_origin")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(413, "request too large")
            return
        body = self.rfile.read(length) if length else b""
        action = path.removeprefix("/officer/")
        if action == "login":
            self._login(body)
        elif action == "logout":
            self.kiosk.officers.logout(self._token())
            self._json(200, {"logged_in": False}, Set_Cookie=f"{COOKIE}=; Max-Age=0; Path=/")
        elif action in ("approve", "deny", "vehicle", "plate"):
            self._action(action, body)
        else:
            self._error(404, "not found")

    def _action(self, action: str, body: bytes) -> None:
        """An officer's action: only with a live session and its CSRF token."""
        session = self.kiosk.officers.check(self._token(), self.headers.get("X-CSRF-Token"))
        if session is None:
            self._error(403, "not logged in, or the page's token is missing", "session")
        elif action in ("vehicle", "plate"):
            self._vehicle(action, body)
        else:
            (self.kiosk.on_approve if action == "approve" else self.kiosk.on_deny)()
            log.info("kiosk: officer %s from the screen", action)
            self._json(202, {"accepted": action})

    def _vehicle(self, action: str, body: bytes) -> None:
        """Open a vehicle group (kind, optional plate), or type the plate of the one open."""
        try:
            doc = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            self._error(400, "send a JSON object")
            return
        plate = normal_plate(doc.get("plate", ""))
        if plate is None:
            self._error(400, "plate: up to 15 of 0-9 A-Z . - (as on the plate)", "plate")
            return
        if action == "plate":
            if not plate:
                self._error(400, "plate: empty", "plate")
                return
            self.kiosk.on_plate(plate)
        else:
            kind = doc.get("kind", "car")
            if kind not in VEHICLE_KINDS:
                self._error(400, f"kind: one of {', '.join(VEHICLE_KINDS)}", "kind")
                return
            self.kiosk.on_vehicle(kind, plate)
        log.info("kiosk: officer %s from the screen", action)  # the plate is personal: not logged
        self._json(202, {"accepted": action})

    def _login(self, body: bytes) -> None:
        try:
            doc = json.loads(body or b"{}")
            pin = doc.get("pin") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            pin = None
        if not isinstance(pin, str) or not pin:
            self._error(400, 'send {"pin": "..."}')
            return
        try:
            session = self.kiosk.officers.login(pin, str(self.client_address[0]))
        except LoginRefused as exc:
            log.warning("kiosk: officer login refused: %s", exc.reason)
            self._json(
                exc.status,
                {"error": exc.reason, "code": exc.code, "retry_s": round(exc.retry_s)},
            )
            return
        log.info("kiosk: officer logged in on the screen")
        cookie = (
            f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={int(self.kiosk.officers.session_s)}"
        )
        self._json(200, {"logged_in": True, "csrf": session.csrf}, Set_Cookie=cookie)
