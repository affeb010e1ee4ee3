"""The dashboard's web server: the page, its API, and the login in front of them.

Routes:

=========================  =========================================================
``GET /``                  the page (``static/index.html``)
``GET /static/<file>``     its script and style; ``/static/vendor/<file>``: uPlot
``GET /api/config``        the zone, whether a login is needed and done, whether the
                           fleet is configured, how often the page refreshes
``GET /api/summary``       ``?from=ISO&to=ISO&site=...`` (query.py): the figures of
                           :func:`edge.central.summary.summary`, plus ``"tz"``
``GET /api/fleet``         ``{"configured", "connected", "kiosks": [...]}`` (fleet.py)
``POST /api/login``        ``{"password": "..."}`` -> session cookie + CSRF token
``POST /api/logout``       (the CSRF token in ``X-CSRF-Token``)
=========================  =========================================================

Counts only: no route gives personal data (tracing stays with ``trace``).

With a password (required when the server listens beyond loopback), ``/api/*``
but ``config`` and ``login`` need a session: an HttpOnly, SameSite=Strict cookie,
given for the right password. Wrong passwords lock their client (IP address) out
for a while, longer each time (:class:`edge.kiosk.auth.Officers`, the kiosk's
officer sessions). Without one (loopback only), requests must name this server
(``Host``), so that a page of another site cannot read the API through a DNS
name rebound to 127.0.0.1.

Connections are bounded and time-limited, and every answer carries a strict CSP,
as the kiosk's screen (:mod:`edge.kiosk.httpbase`): the page has no inline
script or style, and writes whatever a device sent (site names, reason codes)
as text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from edge.central.contract import DatabaseError, PassageDB
from edge.central.summary import RangeError, summary
from edge.dashboard import query
from edge.dashboard.fleet import FleetView
from edge.kiosk.auth import LoginRefused, Officers
from edge.kiosk.conns import Connections
from edge.kiosk.httpbase import BaseHandler, BoundedServer
from edge.kiosk.server import STATIC_TYPES

log = logging.getLogger(__name__)

COOKIE = "cp_dashboard"
MAX_BODY = 4096
REFRESH_S = 5.0  # how often the page asks again
SESSION_S = 12 * 3600.0  # a control room's shift
TOP_SITES = 8  # checkpoints drawn as their own series; the others are summed up
PACKAGE = resources.files("edge.dashboard")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host")
CACHE_ENTRIES = 64  # summaries kept (each for one refresh): the pages' ranges and sites


@dataclass(frozen=True)
class Settings:
    """``host``, ``port``: where to listen; ``password``: the login's (None: no login);
    ``tz``: the zone of "today" and of times given without an offset."""

    host: str = "127.0.0.1"
    port: int = 8090
    tz: str = "Asia/Ho_Chi_Minh"
    password: str | None = None
    session_s: float = SESSION_S
    refresh_s: float = REFRESH_S


class Dashboard:
    """The server, on its own threads (one per connection)."""

    def __init__(
        self,
        db: PassageDB,
        settings: Settings,
        fleet: FleetView | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connections: Connections | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.zone = ZoneInfo(settings.tz)
        self.fleet = fleet
        self.clock = clock
        self.users = Officers(settings.password, settings.session_s)
        self.conns = connections or Connections()
        self.httpd = BoundedServer((settings.host, settings.port), _handler(self), self.conns)
        port = self.httpd.server_address[1]
        names = {*LOOPBACK_NAMES, settings.host.lower()}
        self.hosts = {f"{name}:{port}" for name in names}
        if port == 80:  # a browser leaves the default port out of Host
            self.hosts |= names
        self._thread: threading.Thread | None = None
        self._cache: dict[
            tuple[tuple[str, tuple[str, ...]], ...], tuple[float, dict[str, Any]]
        ] = {}
        self._cache_lock = threading.Lock()

    @property
    def login(self) -> bool:
        return self.users.enabled

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("dashboard: at %s%s", self.address, " (login)" if self.login else "")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """The figures a query asks for; BadQuery or RangeError (400), DatabaseError (503)."""
        key = tuple(sorted((k, tuple(v)) for k, v in params.items()))
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]  # every open page polls: one answer per refresh for all of them
        asked = query.parse(params, self.zone, self.clock())
        doc = {**summary(self.db, asked.start, asked.end, asked.site), "tz": self.settings.tz}
        with self._cache_lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) < CACHE_ENTRIES:
                self._cache[key] = (now + self.settings.refresh_s, doc)
        return doc

    def fleet_state(self) -> dict[str, Any]:
        if self.fleet is None:
            return {"configured": False, "connected": False, "kiosks": []}
        return {"configured": True, **self.fleet.state()}


def _handler(server: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        dash = server
        connections = server.conns

    return Handler


class _Handler(BaseHandler):
    """The routes (``dash``: set by :func:`_handler`)."""

    dash: Dashboard

    def _token(self) -> str | None:
        return self.cookie(COOKIE)

    def _logged_in(self) -> bool:
        return not self.dash.login or self.dash.users.session(self._token()) is not None

    def _known_host(self) -> bool:
        """With a login, any name; without (loopback), only this server's own names, and
        never through a proxy: a reverse proxy on this machine would make every browser
        of the network look local (behind one, the dashboard needs --login)."""
        if self.dash.login:
            return True
        if any(self.headers.get(h) is not None for h in PROXY_HEADERS):
            return False
        return self.headers.get("Host", "").lower() in self.dash.hosts

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._known_host():
            self.close_connection = True
            self._error(421, "unknown host name, or a proxy: behind one, use --login", "host")
            return
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/vendor/"):
            self._static(path.removeprefix("/static/vendor/"), "vendor")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/api/config":
            self._config()
        elif path in ("/api/summary", "/api/fleet"):
            if not self._logged_in():
                self._error(401, "log in first", "login")
            elif path == "/api/summary":
                self._summary(parse_qs(url.query, keep_blank_values=True))
            else:
                self._json(200, self.dash.fleet_state())
        else:
            self._error(404, "not found")

    def _static(self, name: str, folder: str = "") -> None:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            self._error(404, "not found")
            return
        entry = PACKAGE / "static" / folder / name if folder else PACKAGE / "static" / name
        if not entry.is_file():
            self._error(404, "not found")
            return
        self._send(200, entry.read_bytes(), STATIC_TYPES[suffix])

    def _config(self) -> None:
        session = self.dash.users.session(self._token()) if self.dash.login else None
        self._json(
            200,
            {
                "tz": self.dash.settings.tz,
                "login": self.dash.login,
                "logged_in": self._logged_in(),
                "csrf": session.csrf if session is not None else None,
                "fleet": self.dash.fleet is not None,
                "refresh_s": self.dash.settings.refresh_s,
                "top_sites": TOP_SITES,
            },
        )

    def _summary(self, params: dict[str, list[str]]) -> None:
        try:
            doc = self.dash.summary(params)
        except (query.BadQuery, RangeError) as exc:
            self._error(400, str(exc), "query")
        except DatabaseError as exc:
            log.error("dashboard: the database did not answer: %s", exc)  # noqa: TRY400
            self._error(503, "the database is not available", "database")
        else:
            self._json(200, doc)

    # -- POST ----------------------------------------------------------------------------

    def do_POST(self) -> None:
        self.close_connection = True  # a refused request's body is never read as the next one
        path = urlsplit(self.path).path
        if not self._known_host():
            self._error(421, "unknown host name", "host")
            return
        if path not in ("/api/login", "/api/logout"):
            self._error(404, "not found")
            return
        if not self.same_origin():
            self._error(403, "cross-origin request refused", "cross_origin")
            return
        body = self.body(MAX_BODY)
        if body is None:
            return
        if path == "/api/login":
            self._login(body)
            return
        users = self.dash.users
        if self.dash.login and users.check(self._token(), self.headers.get("X-CSRF-Token")) is None:
            self._error(403, "not logged in, or the page's token is missing", "session")
            return
        users.logout(self._token())
        self._json(200, {"logged_in": False}, Set_Cookie=f"{COOKIE}=; Max-Age=0; Path=/")

    def _login(self, body: bytes) -> None:
        try:
            doc = json.loads(body or b"{}")
            password = doc.get("password") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            password = None
        if not isinstance(password, str) or not password:
            self._error(400, 'send {"password": "..."}')
            return
        try:
            session = self.dash.users.login(password, str(self.client_address[0]))
        except LoginRefused as exc:
            reason, code = _refusal(exc)
            log.warning("dashboard: login from %s refused: %s", self.client_address[0], reason)
            self._json(exc.status, {"error": reason, "code": code, "retry_s": round(exc.retry_s)})
            return
        log.info("dashboard: logged in from %s", self.client_address[0])
        cookie = (
            f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={int(self.dash.users.session_s)}"
        )
        self._json(200, {"logged_in": True, "csrf": session.csrf}, Set_Cookie=cookie)


def _refusal(exc: LoginRefused) -> tuple[str, str]:
    """The officers' refusal in the dashboard's words (a password, not a PIN)."""
    if exc.code == "locked":
        return f"too many wrong passwords: try again in {exc.retry_s:.0f} s", "locked"
    if exc.code == "no_pin":
        return "this dashboard has no login", "no_login"
    return "wrong password", "wrong_password"
