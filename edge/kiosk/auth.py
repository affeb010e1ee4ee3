"""Officer sessions for the kiosk screen: a PIN, a session cookie, a CSRF token.

The officer logs in with the PIN configured on the device (``[kiosk] pin_file``,
a file or ``credential:NAME``: :data:`MIN_PIN_DIGITS` to :data:`MAX_PIN_DIGITS`
digits, :func:`check_pin`); the server answers with an HttpOnly,
SameSite=Strict session cookie and a CSRF token that every action must carry in
the ``X-CSRF-Token`` header (a page of another origin can neither read the token
nor, with SameSite=Strict, send the cookie). Sessions end after
``[kiosk] session_s`` or on logout.

Wrong PINs are counted per client (its IP address), so that a guesser locks out
only itself, never the officer at another screen: after :data:`MAX_FAILURES` in
a row a client is refused for :data:`LOCKOUT_S` seconds, and every further
wrong PIN doubles that, up to :data:`MAX_LOCKOUT_S`. A right PIN (after the
lockout) clears that client's count; so does :data:`FORGET_S` without a wrong
PIN. Across all clients, :data:`MAX_FAILURES` wrong PINs within
:data:`ALARM_WINDOW_S` raise an alarm (the kiosk's ``pin-failures`` alert), which
ends once the window holds fewer again.
"""

from __future__ import annotations

import hmac
import itertools
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 16  # the officer page's PIN field takes no more
MAX_FAILURES = 5  # wrong PINs in a row before a client is locked out
LOCKOUT_S = 30.0  # the first lockout; each further wrong PIN doubles it
MAX_LOCKOUT_S = 900.0
FORGET_S = 3600.0  # a client's count is forgotten after this long without a wrong PIN
ALARM_WINDOW_S = 3600.0
MAX_CLIENTS = 1024  # failure records kept (the oldest are forgotten first)


class PinInvalid(ValueError):
    """The configured PIN is not acceptable (too short, not digits, trivial)."""


def check_pin(text: str) -> str:
    """The PIN in ``text`` (surrounding white space ignored), or :class:`PinInvalid`
    saying why; the message never repeats the PIN."""
    pin = text.strip()
    if not re.fullmatch(r"[0-9]+", pin):
        raise PinInvalid("the PIN must be digits only (the screen's keypad has nothing else)")
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise PinInvalid(
            f"the PIN must be {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits (it has {len(pin)})"
        )
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if len(steps) == 1 and steps <= {-1, 0, 1}:
        raise PinInvalid("the PIN must not be one digit repeated or a run like 123456")
    return pin


def read_pin(path: Path) -> str:
    """The PIN of ``path`` (:func:`check_pin`); :class:`PinInvalid` also when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PinInvalid(f"cannot read the PIN: {exc}") from exc
    return check_pin(text)


@dataclass
class Session:
    token: str
    csrf: str
    expires: float


@dataclass
class _Failures:
    """One client's wrong PINs in a row and until when it is locked out."""

    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginRefused(Exception):
    """A login that did not succeed; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, code: str, retry_s: float = 0.0) -> None:
        self.status = status
        self.reason = reason
        self.code = code  # no_pin, locked, wrong_pin: for the page
        self.retry_s = retry_s
        super().__init__(reason)


def lockout_s(failures: int) -> float:
    """How long a client with ``failures`` wrong PINs in a row is locked out (0: not)."""
    if failures < MAX_FAILURES:
        return 0.0
    return min(LOCKOUT_S * 2.0 ** min(failures - MAX_FAILURES, 32), MAX_LOCKOUT_S)


class Officers:
    """The PIN check and the live sessions (thread-safe).

    ``on_alarm(detail)`` is called (outside the lock, on the caller's thread) when
    the alarm about repeated wrong PINs starts, changes or ends (``""``).
    """

    def __init__(
        self,
        pin: str | None,
        session_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_alarm: Callable[[str], None] = lambda _detail: None,
    ) -> None:
        self._pin = pin
        self.session_s = session_s
        self._clock = clock
        self._on_alarm = on_alarm
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._clients: dict[str, _Failures] = {}
        self._recent: deque[tuple[float, str]] = deque(maxlen=10_000)  # (when, client)
        self._alarm = ""
        self._alarm_lock = threading.Lock()  # alarms are told in the order they happened

    @property
    def enabled(self) -> bool:
        """Officer actions from the screen are possible (a PIN is configured)."""
        return self._pin is not None

    def login(self, pin: str, client: str = "") -> Session:
        """A new session for ``client`` (an IP address) if ``pin`` is right and the client
        is not locked out; else :class:`LoginRefused`."""
        try:
            return self._login(pin, client)
        finally:
            self.tick()

    def _login(self, pin: str, client: str) -> Session:
        now = self._clock()
        with self._lock:
            if self._pin is None:
                raise LoginRefused(403, "no officer PIN is configured on this kiosk", "no_pin")
            record = self._clients.get(client)
            if record is not None and now - record.last >= FORGET_S:
                del self._clients[client]
                record = None
            if record is not None and now < record.locked_until:
                wait = record.locked_until - now
                raise LoginRefused(
                    429, f"too many wrong PINs: try again in {wait:.0f} s", "locked", wait
                )
            if not hmac.compare_digest(pin.encode(errors="replace"), self._pin.encode()):
                self._failed(client, record, now)
                raise LoginRefused(403, "wrong PIN", "wrong_pin")
            self._clients.pop(client, None)
            self._prune(now)
            session = Session(
                secrets.token_urlsafe(24), secrets.token_urlsafe(24), now + self.session_s
            )
            self._sessions[session.token] = session
            return session

    def _failed(self, client: str, record: _Failures | None, now: float) -> None:
        if record is None:
            if len(self._clients) >= MAX_CLIENTS:
                oldest = min(self._clients, key=lambda c: self._clients[c].last)
                del self._clients[oldest]
            record = self._clients[client] = _Failures()
        record.count += 1
        record.last = now
        record.locked_until = now + lockout_s(record.count)
        self._recent.append((now, client))

    def tick(self) -> None:
        """Re-judge the alarm (call now and then: it ends by the clock alone)."""
        with self._alarm_lock:
            self._tick()

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            while self._recent and now - self._recent[0][0] >= ALARM_WINDOW_S:
                self._recent.popleft()
            detail = ""
            if len(self._recent) >= MAX_FAILURES:
                clients = sorted({c for _, c in self._recent})
                locked = sum(1 for r in self._clients.values() if now < r.locked_until)
                shown = ", ".join(clients[:3]) + (", ..." if len(clients) > 3 else "")
                detail = (
                    f"{len(self._recent)} wrong officer PINs on the screen within "
                    f"{ALARM_WINDOW_S / 60:.0f} min from {len(clients)} client(s) ({shown}); "
                    f"{locked} locked out now"
                )
            changed = detail != self._alarm
            self._alarm = detail
        if changed:
            self._on_alarm(detail)

    @property
    def alarm(self) -> str:
        """What the alarm says (``""``: none)."""
        with self._lock:
            return self._alarm

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self._clock()
        with self._lock:
            self._prune(now)
            return self._sessions.get(token)

    def check(self, token: str | None, csrf: str | None) -> Session | None:
        """The session if ``token`` is live and ``csrf`` is its CSRF token."""
        session = self.session(token)
        if session is None or not csrf:
            return None
        if not hmac.compare_digest(csrf.encode(errors="replace"), session.csrf.encode()):
            return None
        return session

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def _prune(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]
