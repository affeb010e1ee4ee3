"""The kiosk's screen, served by the daemon: a local web page for Chromium in kiosk mode.

Routes (all on ``[kiosk] listen``, loopback by default):

==========================  ===================================================
``GET /``                   the traveller view, the state of the moment filled in
``GET /officer``            the officer view (same state, full details once
                            logged in)
``GET /static/<file>``      the pages' script and style
``GET /i18n/index.json``    the languages available and the default
``GET /i18n/<code>.json``   one message catalogue
``GET /voice/<lang>/<clip>``  what the screen says (voice.py): a screen
                            (``/voice/vi/denied``) or a reason
                            (``/voice/vi/reason.expired``), audio/wav or
                            audio/ogg; the Vietnamese clip when the language
                            has none (``Content-Language`` says which)
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
The HTTP layer under these routes (admission, deadlines, the answers' security
headers) is ``httpbase.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from importlib import resources
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.config import KioskConfig
from edge.core.model import normal_plate
from edge.core.passage import VEHICLE_KINDS
from edge.errors import InputError
from edge.kiosk import conns, render, voice
from edge.kiosk.auth import LoginRefused, Officers, read_pin
from edge.kiosk.conns import Connections
from edge.kiosk.httpbase import BaseHandler, BoundedServer
from edge.kiosk.screen import ScreenModel

log = logging.getLogger(__name__)

COOKIE = "cp_officer"
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
        packs = voice.load_packs(cfg.packs)
        if cfg.packs is not None and not cfg.packs.is_dir():
            log.warning("kiosk: [kiosk] packs: no folder %s: no language packs", cfg.packs)
        made = voice.load_packs(cfg.voices, need_catalogue=False)
        if not any(p.code == voice.FALLBACK for p in [*packs, *made]):
            log.warning(
                "kiosk: no Vietnamese voice in %s: the screen does not speak "
                "(checkpoint-edge lang voices makes it)",
                cfg.voices,
            )
        self.voices = voice.Voices([*packs, *made])  # recorded packs before made voices
        self.catalogues = {**catalogues(cfg.catalogues), **voice.catalogues_of(packs)}
        self.language = cfg.language
        if cfg.language not in self.catalogues:
            log.warning(
                "kiosk: [kiosk] language %r: no catalogue or pack has it; the screen starts "
                "in Vietnamese",
                cfg.language,
            )
            self.language = voice.FALLBACK
        self.template = render.traveller_template()
        self.clip_ids = frozenset(voice.clip_ids())
        host, _, port = cfg.listen.rpartition(":")
        self.httpd = BoundedServer((host.strip("[]"), int(port)), _handler(self), self.conns)
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

    @property
    def stopping(self) -> bool:
        """Told to stop: the event streams end."""
        return self._stopping.is_set()

    def tick(self) -> None:
        """The main thread's second: the wrong-PIN alarm ends by the clock alone, and a
        status changed outside the lane (alerts, connectivity) reaches the pages."""
        self.officers.tick()
        self.model.refresh()

    def stop(self) -> None:
        self._stopping.set()
        self.model.wake()  # event streams wake up and end
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler(server: KioskServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        kiosk = server
        connections = server.conns

    return Handler


class _Handler(BaseHandler):
    """The routes (``kiosk``: set by :func:`_handler`)."""

    kiosk: KioskServer

    # -- helpers -----------------------------------------------------------------------

    def _token(self) -> str | None:
        return self.cookie(COOKIE)

    def _loopback(self) -> bool:
        return is_local(str(self.client_address[0]))

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
                self.kiosk.language,
            )
            self._send(200, page.encode(), STATIC_TYPES[".html"])
        elif path == "/officer":
            self._static("officer.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path.startswith("/i18n/"):
            self._i18n(path.removeprefix("/i18n/"))
        elif path.startswith("/voice/"):
            self._voice(path.removeprefix("/voice/"))
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

    def _i18n(self, name: str) -> None:
        """``index.json`` (the languages, the default, the voice's settings) or a catalogue."""
        cfg = self.kiosk.cfg
        if name == "index.json":
            langs = [
                {"code": code, "name": doc.get("name", code)}
                for code, doc in sorted(self.kiosk.catalogues.items())
            ]
            spoken = {
                "on": cfg.voice and bool(self.kiosk.voices.languages()),
                "volume": cfg.voice_volume,
                "clips": sorted(self.kiosk.clip_ids),
            }
            self._json(200, {"languages": langs, "default": self.kiosk.language, "voice": spoken})
            return
        doc = self.kiosk.catalogues.get(name.removesuffix(".json"))
        if doc is None or not name.endswith(".json"):
            self._error(404, "no such language")
        else:
            self._json(200, doc)

    def _voice(self, rest: str) -> None:
        """A clip: 404 for a language the screen does not have, a clip it never says,
        or when no voice has it (the voices were not made)."""
        language, _, clip = rest.partition("/")
        if language not in self.kiosk.catalogues:
            self._error(404, "no such language")
            return
        if clip not in self.kiosk.clip_ids:
            self._error(404, "no such screen or reason")
            return
        found = self.kiosk.voices.find(language, clip)
        body = None
        if found is not None:
            with contextlib.suppress(InputError):  # (gone or changed since it was measured)
                body = voice.read_clip(found[0])
        if found is None or body is None:
            self._error(404, "no voice for this screen")
            return
        path, spoken = found
        self._send(200, body, voice.AUDIO_TYPES[path.suffix.lower()], Content_Language=spoken)

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
        kiosk, version, conn = self.kiosk, -1, self.conn
        model = kiosk.model

        def over() -> bool:
            return conn.ended or kiosk.stopping

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
        if not self.same_origin():
            self._error(403, "cross-origin request refused", "cross_origin")
            return
        body = self.body(MAX_BODY)
        if body is None:
            return
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
