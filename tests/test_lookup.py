"""The online lookup ([lookup]) against a real local HTTP(S) server the test starts.

No real government endpoint is ever called: the service here is a
ThreadingHTTPServer on 127.0.0.1 whose answers each test chooses, including
one that holds its answer until the test lets it go (the lane never waits).
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge.config import Config
from edge.config.judging import LookupConfig
from edge.core.model import Credential, Lookup
from edge.pki import ca as pki
from edge.scan.credentials import Verifier
from edge.scan.lookup import LookupService
from edge.scan.trust import TrustStore

from .conftest import free_port, make_config

QID = "162979388586171100"
CODE = f"001093029317|NGUYEN VAN A|1987-01-18|0|{QID}|<1<00<0123232422".encode()


def personal_qr(text: bytes = CODE) -> Credential:
    return Verifier(TrustStore).read(text)


@dataclass
class Service:
    """The fake national platform: answers by path, records every request."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    hold: threading.Event | None = None  # answer only once it is set
    token: str = ""
    url: str = ""
    redirect: str = ""  # the Location of a 3xx answer

    def answer(self, key: str, status: int, doc: Any) -> None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.answers[f"/check/personal_qr/{key}"] = (status, body)


def serve(service: Service, context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            service.requests.append((self.path, dict(self.headers)))
            if service.hold is not None:
                service.hold.wait(10)
            if service.token and self.headers.get("Authorization") != f"Bearer {service.token}":
                status, body = 401, b'{"error": "unauthorised"}'
            else:
                status, body = service.answers.get(self.path, (404, b"{}"))
            self.send_response(status)
            if service.redirect and 300 <= status < 400:
                self.send_header("Location", service.redirect)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    service.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}/check/{{kind}}/{{key}}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service()
    httpd = serve(svc)
    yield svc
    if svc.hold is not None:
        svc.hold.set()
    httpd.shutdown()
    httpd.server_close()


Answers = queue.Queue[tuple[str, Lookup]]


@pytest.fixture
def lookups() -> Iterator[Callable[..., tuple[LookupService, Answers]]]:
    made: list[LookupService] = []

    def make(url: str, **cfg: Any) -> tuple[LookupService, Answers]:
        answers: Answers = queue.Queue()
        svc = LookupService(
            LookupConfig(url=url, **cfg), post=lambda sha, found: answers.put((sha, found))
        )
        svc.start()
        made.append(svc)
        return svc, answers

    yield make
    for svc in made:
        svc.stop()


def test_a_confirmation_arrives_as_an_event_and_is_cached(
    service: Service, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    service.answer(QID, 200, {"status": "confirmed"})
    svc, answers = lookups(service.url)
    code = personal_qr()
    asked = svc.ask(code)
    assert asked.lookup == Lookup("pending")  # the lane is never kept waiting
    assert answers.get(timeout=5) == (code.sha256, Lookup("confirmed"))
    again = svc.ask(code)
    assert again.lookup == Lookup("confirmed")  # from the cache: no second request
    assert [path for path, _ in service.requests] == [f"/check/personal_qr/{QID}"]
    accept = service.requests[0][1]
    assert accept["Accept"] == "application/json"
    assert accept["User-Agent"].startswith("checkpoint-edge/")


def test_a_refusal_and_its_data_are_kept_sanitised(
    service: Service, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    doc = {
        "status": "refused",
        "plate": "51c-\x1b[31m123.45",
        "drivers": [{"name": "A\x00B", "id_number": "1"}] * 20,
        "secret": "dropped",
    }
    service.answer(QID, 200, doc)
    svc, answers = lookups(service.url)
    svc.ask(personal_qr())
    _, found = answers.get(timeout=5)
    assert found.status == "refused"
    assert found.data["plate"] == "51c- [31m123.45"  # no escape character survives
    assert len(found.data["drivers"]) == 10
    assert found.data["drivers"][0] == {"name": "A B", "id_number": "1"}
    assert "secret" not in found.data


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"not json"),
        (200, json.dumps({"status": "maybe"}).encode()),
        (200, json.dumps(["confirmed"]).encode()),
        (200, json.dumps({"status": "confirmed", "pad": "x" * 70_000}).encode()),
        (500, json.dumps({"status": "confirmed"}).encode()),
        (404, b"{}"),
    ],
    ids=["not-json", "unknown-status", "not-an-object", "too-large", "http-500", "http-404"],
)
def test_nonsense_is_unavailable_never_a_confirmation(
    service: Service,
    lookups: Callable[..., tuple[LookupService, Answers]],
    status: int,
    body: bytes,
) -> None:
    service.answers[f"/check/personal_qr/{QID}"] = (status, body)
    svc, answers = lookups(service.url)
    svc.ask(personal_qr())
    assert answers.get(timeout=5)[1] == Lookup("unavailable")
    assert svc.ask(personal_qr()).lookup == Lookup("pending")  # not cached: asked again


def test_a_slow_service_is_unavailable_at_the_deadline_and_its_late_answer_cached(
    service: Service, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    service.answer(QID, 200, {"status": "confirmed"})
    service.hold = threading.Event()
    svc, answers = lookups(service.url, timeout_s=0.3)
    first, second = personal_qr(), personal_qr(CODE + b"\r\n")  # the same QID, two scans
    svc.ask(first)
    svc.ask(second)
    got = sorted([answers.get(timeout=5), answers.get(timeout=5)], key=lambda a: a[0])
    expected = [(first.sha256, Lookup("unavailable")), (second.sha256, Lookup("unavailable"))]
    assert got == sorted(expected, key=lambda a: a[0])
    assert len(service.requests) == 1  # one question for both
    assert svc.ask(first).lookup == Lookup("pending")  # scanned again: the question is out
    service.hold.set()  # the answer comes late: to the code still waiting, and remembered
    assert answers.get(timeout=5) == (first.sha256, Lookup("confirmed"))
    assert svc.ask(second).lookup == Lookup("confirmed")
    assert len(service.requests) == 1
    assert answers.empty()


def test_an_unreachable_service_and_a_wrong_token_are_unavailable(
    service: Service,
    lookups: Callable[..., tuple[LookupService, Answers]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/check/{{kind}}/{{key}}"
    svc, answers = lookups(closed)
    svc.ask(personal_qr())
    assert answers.get(timeout=5)[1] == Lookup("unavailable")

    service.token = "s3cret-token"
    service.answer(QID, 200, {"status": "confirmed"})
    token = tmp_path / "token"
    token.write_text("wrong\n")
    svc, answers = lookups(service.url, token_file=token)
    with caplog.at_level(logging.WARNING):
        svc.ask(personal_qr())
        assert answers.get(timeout=5)[1] == Lookup("unavailable")
    assert "HTTP 401" in caplog.text
    assert QID not in caplog.text  # the key names a person: never logged

    token.write_text("s3cret-token\n")
    svc, answers = lookups(service.url, token_file=token)
    svc.ask(personal_qr())
    assert answers.get(timeout=5)[1] == Lookup("confirmed")
    assert service.requests[-1][1]["Authorization"] == "Bearer s3cret-token"


def test_a_client_certificate_for_a_service_that_asks_for_one(
    tmp_path: Path, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    pki.init(tmp_path)
    pki.issue(tmp_path, "device", "lane-1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "broker.pem", tmp_path / "broker.key")
    context.load_verify_locations(tmp_path / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    svc_ = Service()
    svc_.answer(QID, 200, {"status": "confirmed"})
    httpd = serve(svc_, context)
    try:
        without, answers = lookups(svc_.url, ca_file=tmp_path / "ca.pem")
        without.ask(personal_qr())
        assert answers.get(timeout=5)[1] == Lookup("unavailable")  # refused in the handshake
        with_cert, answers = lookups(
            svc_.url,
            ca_file=tmp_path / "ca.pem",
            cert_file=tmp_path / "lane-1.pem",
            key_file=tmp_path / "lane-1.key",
        )
        with_cert.ask(personal_qr())
        assert answers.get(timeout=5)[1] == Lookup("confirmed")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_off_or_not_looked_up_leaves_the_code_alone(
    lookups: Callable[..., tuple[LookupService, Answers]], service: Service
) -> None:
    off, _ = lookups("")
    code = personal_qr()
    assert off.ask(code) is code
    only_greenlane, _ = lookups(service.url, kinds=("greenlane",))
    assert only_greenlane.ask(code) is code
    card = Verifier(TrustStore).read(b"001093029317||Nguyen Van A|18011987|Nam|Thon 1|01012022")
    assert only_greenlane.ask(card) is card
    assert service.requests == []


def test_the_config_is_checked(tmp_path: Path) -> None:
    from edge.errors import ConfigError

    def problems(**lookup: Any) -> list[str]:
        try:
            make_config(tmp_path, lookup=lookup)
        except ConfigError as exc:
            return exc.problems
        return []

    assert problems(url="ftp://x/{key}")[0].startswith("lookup.url: must be an http")
    assert problems(url="https://x/check")[0].startswith("lookup.url: must be an http")
    assert problems(url="https://x/{key}/{other}")[0].startswith("lookup.url: only {kind}")
    assert problems(kinds=["id_card"])[0].startswith("lookup.kinds: unknown 'id_card'")
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    assert problems(url="https://x/{key}", cert_file=str(cert)) == [
        "lookup.cert_file: cert_file and key_file must be given together"
    ]
    assert problems(url="http://x/{key}", ca_file=str(cert)) == [
        "lookup.ca_file: needs an https:// lookup.url"
    ]
    token = tmp_path / "token"
    token.write_text("secret")
    assert problems(url="http://qr.example.vn/{key}", token_file=str(token)) == [
        "lookup.token_file: needs an https:// lookup.url (or a loopback one)"
    ]  # a bearer token never crosses a network in clear
    assert problems(url="http://127.0.0.1:8000/{key}", token_file=str(token)) == []
    cfg: Config = make_config(tmp_path, lookup={"url": "https://qr.example.vn/c/{kind}/{key}"})
    assert cfg.lookup.timeout_s == 1.5


def test_a_redirect_is_not_followed_and_is_unavailable(
    service: Service, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    """A redirect could carry the question and the token elsewhere: never followed."""
    elsewhere = Service()
    other = serve(elsewhere)
    try:
        elsewhere.answer(QID, 200, {"status": "confirmed"})
        target = elsewhere.url.format(kind="personal_qr", key=QID)
        service.answers[f"/check/personal_qr/{QID}"] = (302, b"")
        service.redirect = target
        svc, answers = lookups(service.url, token_file=None)
        code = personal_qr()
        svc.ask(code)
        assert answers.get(timeout=5) == (code.sha256, Lookup("unavailable"))
        assert elsewhere.requests == []
    finally:
        other.shutdown()
        other.server_close()


def test_the_question_goes_out_only_once_the_code_is_handed_on(
    service: Service, lookups: Callable[..., tuple[LookupService, Answers]]
) -> None:
    """The kiosk posts the scanned code to the lane, then sends its question: an answer
    can never overtake the code it is for."""
    service.answer(QID, 200, {"status": "confirmed"})
    svc, answers = lookups(service.url)
    code = personal_qr()
    prepared, send = svc.prepare(code)
    assert prepared.lookup == Lookup("pending")
    assert answers.empty()
    assert service.requests == []  # nothing asked yet
    _again, send_again = svc.prepare(code)  # the same code again meanwhile: one question
    send()
    send_again()
    assert answers.get(timeout=5) == (code.sha256, Lookup("confirmed"))
    assert len(service.requests) == 1
    assert (svc.asked, svc.answered, svc.unavailable) == (1, 1, 0)


def test_an_answer_that_drips_in_is_cut_off() -> None:
    """Each read within the socket timeout, but the whole body past its deadline."""
    import io
    import time

    from edge.scan import lookup as lookup_mod

    whole = io.BufferedReader(io.BytesIO(b'{"status": "confirmed"}'))
    assert lookup_mod._read_by(whole, time.monotonic() + 60) == b'{"status": "confirmed"}'
    huge = io.BufferedReader(io.BytesIO(b"x" * (lookup_mod.MAX_BODY * 2)))
    assert len(lookup_mod._read_by(huge, time.monotonic() + 60)) == lookup_mod.MAX_BODY + 1

    now = [0.0]  # the test's clock: each byte takes 1 ms, however fast this machine is

    class Drip(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            now[0] += 0.001
            buffer[0:1] = b" "  # one byte per read, for ever
            return 1

    with pytest.raises(TimeoutError):
        lookup_mod._read_by(io.BufferedReader(Drip(), buffer_size=1), 0.05, lambda: now[0])
    assert 0.05 < now[0] < 0.06  # cut off at the deadline, not at the size limit
