"""The optional online confirmation of unsigned codes (``[lookup]``): it never blocks the lane.

In 2021 the checkpoint apps asked the national platform about a personal QR
(by its QID) and the transport ministry's system about a green-lane vehicle
code (by its token). Here that question is one HTTP GET to a configured URL
template (``{kind}``, ``{key}``), with a bearer token (a file or a systemd
credential) and/or a TLS client certificate, answered by JSON::

    {"status": "confirmed" | "refused",
     "plate": "51C-123.45", "vehicle": "truck",             (a green-lane code)
     "drivers": [{"name": "...", "id_number": "..."}],
     "valid_until": "2021-08-01T00:00:00Z"}

Anything else (another status, a non-200 answer, no answer within
``timeout_s``, an unreachable service, a body over 64 KiB or not JSON) is
``unavailable``: the officer decides (``lookup_unavailable``).

The lane never waits: :meth:`LookupService.ask` returns at once the credential
with a cached answer, or marked ``pending`` while the question goes out on a
worker thread; the answer (or ``unavailable`` at the deadline, whichever comes
first) reaches the lane later as an event through ``post``. Confirmed and
refused answers are cached for ``cache_s``; a question already out is not asked
twice, and an answer that comes after a code's deadline still fills the cache
(and goes to any code still waiting). At most 32 questions are out at once:
beyond that (a service down under a crowd) a code is unavailable at once.
Nothing personal is logged: not the key, not the URL it is in, not the
answer's data.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from edge import __version__
from edge.config.judging import LookupConfig, loopback_url
from edge.core.model import Credential, Lookup
from edge.core.passage import LookupStatus
from edge.scan import registry
from edge.scan.text import clean_text

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_CACHED = 4096
MAX_INFLIGHT = 32  # questions out at once; beyond: unavailable at once (a service down)
LATE_FACTOR = 4  # an answer may still come this many times timeout_s late: for the cache
MAX_DRIVERS = 10
WORKERS = 4
STATUSES: tuple[LookupStatus, ...] = ("confirmed", "refused")  # what a service may answer

Post = Callable[[str, Lookup], None]


def sanitised(doc: Any) -> Lookup:
    """A service's JSON answer as a Lookup: only the known fields, cleaned and bounded."""
    if not isinstance(doc, dict) or doc.get("status") not in STATUSES:
        return Lookup("unavailable")
    data: dict[str, Any] = {}
    # a green-lane vehicle's plate and kind; until when it holds; who a personal QR's
    # confirmation is of (compared with the code: a QID copied onto another's code fails)
    fields = (("plate", 15), ("vehicle", 20), ("valid_until", 40), ("name", 100),
              ("number", 20), ("birth_date", 10))  # fmt: skip
    for key, limit in fields:
        value = doc.get(key)
        if isinstance(value, str) and clean_text(value):
            data[key] = clean_text(value)[:limit]
    drivers = doc.get("drivers")
    if isinstance(drivers, list):
        data["drivers"] = [
            {k: clean_text(d[k])[:100] for k in ("name", "id_number") if isinstance(d.get(k), str)}
            for d in drivers[:MAX_DRIVERS]
            if isinstance(d, dict)
        ]
    return Lookup(doc["status"], data)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not an answer: it could carry the question (and the bearer token)
    to another host. urllib then raises HTTPError: ``unavailable``."""

    def redirect_request(self, *_args: Any, **_kw: Any) -> None:
        return None


class LookupService:
    """Asks the configured service about unsigned codes, on its own threads."""

    def __init__(
        self,
        cfg: LookupConfig,
        post: Post,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.post = post
        self.clock = clock
        self.enabled = bool(cfg.url)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[float, Lookup]] = OrderedDict()
        # question -> the codes waiting for its answer (sha256 -> their deadline)
        self._waiting: dict[tuple[str, str], dict[str, threading.Timer]] = {}
        self._inflight: set[tuple[str, str]] = set()  # questions asked, not yet answered
        self._pool: ThreadPoolExecutor | None = None
        self._opener = self._build_opener() if self.enabled else None
        self._token = ""
        if cfg.token_file is not None:
            self._token = cfg.token_file.read_text(encoding="utf-8").strip()
        self.asked = self.answered = self.unavailable = 0  # for tests and telemetry

    def _build_opener(self) -> urllib.request.OpenerDirector:
        cfg = self.cfg
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if loopback_url(cfg.url):
            handlers.append(urllib.request.ProxyHandler({}))  # never through a proxy
        if cfg.url.startswith("https://"):
            context = ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file is not None else None
            )
            if cfg.cert_file is not None and cfg.key_file is not None:
                context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
            handlers.append(urllib.request.HTTPSHandler(context=context))
        return urllib.request.build_opener(*handlers)

    def start(self) -> None:
        if self.enabled and self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="lookup")

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- any thread ------------------------------------------------------------------

    def question(self, credential: Credential) -> tuple[str, str] | None:
        """(kind, key) to ask about ``credential``, or None when it is not looked up."""
        if not self.enabled or not credential.valid or credential.claims is None:
            return None
        fmt = registry.get(credential.kind)
        if fmt is None or credential.kind not in self.cfg.kinds:
            return None
        key = fmt.lookup_key(credential.claims)
        return (credential.kind, key) if key else None

    def ask(self, credential: Credential) -> Credential:
        """:meth:`prepare` and :meth:`send` at once (for callers that do not hand the
        code on in between)."""
        prepared, send = self.prepare(credential)
        send()
        return prepared

    def prepare(self, credential: Credential) -> tuple[Credential, Callable[[], None]]:
        """``credential`` as the lane first sees it (with a cached answer, ``pending``
        while its question is out, or unchanged when nothing is looked up) and what sends
        the question: call it after the code reached the lane, so that the answer can
        never arrive before the code it is for."""
        question = self.question(credential)
        pool = self._pool
        if question is None or pool is None:
            return credential, _nothing
        now = self.clock()
        with self._lock:
            cached = self._cache.get(question)
            if cached is not None and now - cached[0] <= self.cfg.cache_s:
                return replace(credential, lookup=cached[1]), _nothing
            waiting = self._waiting.setdefault(question, {})
            if credential.sha256 not in waiting:  # each waiting code has its own deadline
                deadline = threading.Timer(
                    self.cfg.timeout_s, self._expire, (question, credential.sha256)
                )
                deadline.daemon = True
                waiting[credential.sha256] = deadline
                deadline.start()
            ask = question not in self._inflight  # one question out at a time
            if ask and len(self._inflight) >= MAX_INFLIGHT:
                waiting.pop(credential.sha256).cancel()
                log.warning("lookup: %d questions unanswered: not asking more", MAX_INFLIGHT)
                return replace(credential, lookup=Lookup("unavailable")), _nothing
            self._inflight.add(question)
            if ask:
                self.asked += 1

        def send() -> None:
            if ask:
                pool.submit(self._fetch, question)

        return replace(credential, lookup=Lookup("pending")), send

    # -- worker threads --------------------------------------------------------------

    def _fetch(self, question: tuple[str, str]) -> None:
        try:
            answer = self._request(question)
        except Exception:  # a bug here must leave the answer "unavailable"
            log.exception("lookup: %s: request failed", question[0])
            answer = Lookup("unavailable")
        self._answered(question, answer)

    def _request(self, question: tuple[str, str]) -> Lookup:
        kind, key = question
        url = self.cfg.url.format(
            kind=urllib.parse.quote(kind, safe=""), key=urllib.parse.quote(key, safe="")
        )
        headers = {"Accept": "application/json", "User-Agent": f"checkpoint-edge/{__version__}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only (config)
        assert self._opener is not None
        late = max(5.0, LATE_FACTOR * self.cfg.timeout_s)  # past the deadline: for the cache
        try:
            with self._opener.open(request, timeout=late) as response:
                body = _read_by(response, time.monotonic() + late)
                status = response.status
        except urllib.error.HTTPError as exc:
            log.warning("lookup: %s: the service answered HTTP %d", kind, exc.code)
            return Lookup("unavailable")
        except (OSError, ValueError) as exc:  # unreachable, refused, timeout, TLS, too slow
            log.warning("lookup: %s: no answer: %s", kind, type(exc).__name__)
            return Lookup("unavailable")
        if status != 200 or len(body) > MAX_BODY:
            log.warning("lookup: %s: unusable answer (HTTP %d, %d bytes)", kind, status, len(body))
            return Lookup("unavailable")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            log.warning("lookup: %s: the answer is not JSON", kind)
            return Lookup("unavailable")
        answer = sanitised(doc)
        if answer.status == "unavailable":
            log.warning("lookup: %s: the answer has no confirmed/refused status", kind)
        return answer

    def _expire(self, question: tuple[str, str], sha256: str) -> None:
        """A code's deadline: it is told ``unavailable``; the question stays out (its
        answer, if it comes, goes to the cache and to codes still waiting)."""
        with self._lock:
            waiting = self._waiting.get(question, {})
            if waiting.pop(sha256, None) is None:
                return  # answered in time
            self.unavailable += 1
        log.warning("lookup: %s: no answer within %.1f s", question[0], self.cfg.timeout_s)
        self.post(sha256, Lookup("unavailable"))

    def _answered(self, question: tuple[str, str], answer: Lookup) -> None:
        """The service answered: cached when it says something, told to every code
        still waiting."""
        with self._lock:
            if answer.status in STATUSES:
                self._cache[question] = (self.clock(), answer)
                self._cache.move_to_end(question)
                while len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
            self._inflight.discard(question)
            waiting = self._waiting.pop(question, {})
            if answer.status == "unavailable":
                self.unavailable += len(waiting)
            else:
                self.answered += len(waiting)
        for sha256, deadline in waiting.items():
            deadline.cancel()
            self.post(sha256, answer)


def _nothing() -> None:
    """No question to send."""


def _read_by(response: Any, deadline: float, clock: Callable[[], float] = time.monotonic) -> bytes:
    """The body, at most MAX_BODY + 1 bytes, read by ``deadline``: a service that drips
    its answer a byte at a time (each within the socket timeout) is cut off (TimeoutError)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        if clock() > deadline:
            raise TimeoutError("the answer took too long")
        chunk = response.read1(min(8192, MAX_BODY + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
