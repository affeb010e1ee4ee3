"""Officer sessions for the kiosk screen: a PIN, a session cookie, a CSRF token.

The officer logs in with the PIN configured on the device (``[kiosk] pin_file``,
a file or ``credential:NAME``); the server answers with an HttpOnly,
SameSite=Strict session cookie and a CSRF token that every action must carry in
the ``X-CSRF-Token`` header (a page of another origin can neither read the token
nor, with SameSite=Strict, send the cookie). Wrong PINs are counted: after
:data:`MAX_FAILURES` in a row, logins are refused for :data:`LOCKOUT_S`
seconds. Sessions end after ``[kiosk] session_s`` or on logout.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_FAILURES = 5
LOCKOUT_S = 60.0


@dataclass
class Session:
    token: str
    csrf: str
    expires: float


class LoginRefused(Exception):
    """A login that did not succeed; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, code: str, retry_s: float = 0.0) -> None:
        self.status = status
        self.reason = reason
        self.code = code  # no_pin, locked, wrong_pin: for the page
        self.retry_s = retry_s
        super().__init__(reason)


class Officers:
    """The PIN check and the live sessions (thread-safe)."""

    def __init__(
        self,
        pin: str | None,
        session_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pin = pin
        self.session_s = session_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._failures = 0
        self._locked_until = 0.0

    @property
    def enabled(self) -> bool:
        """Officer actions from the screen are possible (a PIN is configured)."""
        return self._pin is not None

    def login(self, pin: str) -> Session:
        now = self._clock()
        with self._lock:
            if self._pin is None:
                raise LoginRefused(403, "no officer PIN is configured on this kiosk", "no_pin")
            if now < self._locked_until:
                wait = self._locked_until - now
                raise LoginRefused(
                    429, f"too many wrong PINs: try again in {wait:.0f} s", "locked", wait
                )
            if not hmac.compare_digest(pin.encode(errors="replace"), self._pin.encode()):
                self._failures += 1
                if self._failures >= MAX_FAILURES:
                    self._failures = 0
                    self._locked_until = now + LOCKOUT_S
                raise LoginRefused(403, "wrong PIN", "wrong_pin")
            self._failures = 0
            self._prune(now)
            session = Session(
                secrets.token_urlsafe(24), secrets.token_urlsafe(24), now + self.session_s
            )
            self._sessions[session.token] = session
            return session

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
