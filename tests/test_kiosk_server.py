"""The kiosk screen's server over real HTTP: live state (SSE) and its latency, officer
sessions, CSRF and origin checks, personal data, catalogues. (The pages themselves
in a real browser: test_kiosk_browser.py.)"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import publish

from edge.config import Config
from edge.core import lane as lane_mod
from edge.core.lane import OfficerApproved, RecordPassage, State
from edge.core.policy import BasicPolicy
from edge.kiosk import render
from edge.kiosk import server as server_mod
from edge.kiosk.screen import ScreenModel
from edge.mqtt import topics
from edge.scan import reasons as scan_reasons
from edge.scan import registry
from edge.service.alerts import FAULT_ALERTS

from . import test_e2e
from .conftest import Mosquitto, make_config, write_frame
from .test_e2e import ID_CARD, Kiosk

kiosks = test_e2e.kiosks  # the fixture
PIN = "471105"


def screen_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    pin = tmp_path / "officer-pin"
    pin.write_text(PIN + "\n")
    (tmp_path / "frames").mkdir(exist_ok=True)
    base: dict[str, dict[str, Any]] = {
        "kiosk": {"listen": "127.0.0.1:0", "pin_file": str(pin)},
        "lane": {"mode": "officer", "decision_timeout_s": 60, "open_s": 0.5},
        "passage": {"fields": ["name", "id_number"]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return make_config(tmp_path, **base)


class Client:
    """A browser's side, over a real socket: cookies kept, JSON in and out."""

    def __init__(self, url: str, source: str = "") -> None:
        """``source``: the client's own address (127.0.0.2: another client)."""
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.source = (source, 0) if source else None
        self.cookie = ""

    def request(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=10, source_address=self.source
        )
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **headers}
        if self.cookie:
            hdrs["Cookie"] = self.cookie
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        set_cookie = resp.getheader("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        conn.close()
        return resp.status, json.loads(raw) if raw.startswith(b"{") else {"body": raw.decode()}

    def login(self, pin: str = PIN) -> str:
        status, doc = self.request("POST", "/officer/login", {"pin": pin})
        assert status == 200, doc
        return str(doc["csrf"])


class Events:
    """An EventSource: the state pushed by /events, message by message."""

    def __init__(self, url: str, view: str = "traveller", cookie: str = "") -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        self.conn.request(
            "GET", f"/events?view={view}", headers={"Cookie": cookie} if cookie else {}
        )
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type", "").startswith("text/event-stream")

    def next(self) -> tuple[float, dict[str, Any]]:
        """(arrival time, state) of the next state message."""
        data = None
        while True:
            raw = self.resp.fp.readline()
            if not raw:
                raise EOFError("the event stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and data is not None:
                return time.monotonic(), json.loads(data)

    def until(self, predicate: Callable[[dict[str, Any]], bool]) -> tuple[float, dict[str, Any]]:
        while True:
            at, state = self.next()
            if predicate(state):
                return at, state

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def screen(tmp_path: Path, kiosks: Callable[[Config], Kiosk]) -> Callable[..., tuple[Kiosk, str]]:
    """Start a kiosk with its screen; ``code``: an ID card in front of the camera
    (the officer must decide)."""

    def start(code: bool = False) -> tuple[Kiosk, str]:
        cfg = screen_config(tmp_path)
        if code:
            write_frame(tmp_path / "frames" / "01.png", ID_CARD.encode())
        kiosk = kiosks(cfg).start()  # (the kiosks fixture stops it)
        assert kiosk.app.kiosk is not None
        return kiosk, kiosk.app.kiosk.address

    return start


def test_a_decision_reaches_the_screen_within_200_ms(
    screen: Callable[..., tuple[Kiosk, str]],
) -> None:
    kiosk, url = screen(code=True)
    decided: list[float] = []
    kiosk.app.runner.add_listener(
        lambda e, a, s: (
            decided.append(time.monotonic())
            if any(isinstance(x, RecordPassage) for x in a)
            else None
        )
    )
    events = Events(url)
    _, waiting = events.until(lambda s: s["screen"] == "awaiting_officer")
    assert waiting["traveller"] == {"initials": "N. V. M.", "id_last": "•••••••••901"}
    kiosk.press(kiosk.cfg.gpio.approve_pin)
    arrived, approved = events.until(lambda s: s["screen"] == "approved")
    latency = arrived - decided[0]
    assert 0 <= latency < 0.2, f"{latency * 1000:.0f} ms from the decision to the screen"
    text = json.dumps(approved, ensure_ascii=False)
    assert "Nguyen" not in text
    assert "012345678901" not in text
    assert "officer" not in approved  # no session: no officer view
    events.close()


def test_officer_actions_need_the_pin_a_session_and_the_csrf_token(
    screen: Callable[..., tuple[Kiosk, str]],
) -> None:
    kiosk, url = screen(code=True)
    kiosk.wait_state(State.AWAITING_DECISION)
    browser = Client(url)
    status, doc = browser.request("POST", "/officer/approve")
    assert (status, doc["error"]) == (403, "not logged in, or the page's token is missing")
    status, doc = browser.request("POST", "/officer/login", {"pin": "0000"})
    assert (status, doc["error"]) == (403, "wrong PIN")
    csrf = browser.login()
    status, _ = browser.request("POST", "/officer/approve")  # a forged form: no token
    assert status == 403
    status, _ = browser.request(
        "POST", "/officer/approve", **{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert status == 403
    assert kiosk.relay.state is False
    officer = Events(url, "officer", browser.cookie)
    _, state = officer.until(lambda s: s["screen"] == "awaiting_officer")
    (code,) = state["officer"]["codes"]
    assert code["kind"] == "id_card"
    assert code["fields"]["name"] == "Nguyen Van Minh"  # the officer sees it all
    assert state["officer"]["recommendation"] == "refer"
    status, doc = browser.request("POST", "/officer/approve", **{"X-CSRF-Token": csrf})
    assert (status, doc) == (202, {"accepted": "approve"})
    kiosk.wait(lambda e, _a, _s: isinstance(e, OfficerApproved))
    assert kiosk.relay.wait_for(True)
    _, state = officer.until(lambda s: s["screen"] == "approved")
    assert state["officer"]["recent"][0]["decided_by"] == "officer"
    officer.close()
    status, _ = browser.request("POST", "/officer/logout")
    assert status == 200
    status, _ = browser.request("POST", "/officer/deny", **{"X-CSRF-Token": csrf})
    assert status == 403


def test_wrong_pins_lock_out_their_client_only_and_raise_an_alert(
    screen: Callable[..., tuple[Kiosk, str]],
) -> None:
    kiosk, url = screen()
    guesser = Client(url)
    for _ in range(5):
        assert guesser.request("POST", "/officer/login", {"pin": "1"})[0] == 403
    status, doc = guesser.request("POST", "/officer/login", {"pin": PIN})
    assert status == 429
    assert "too many wrong PINs" in doc["error"]
    assert doc["retry_s"] == 30
    assert "pin-failures" in kiosk.app.alerts.names()
    (alert,) = [a for a in kiosk.app.alerts.open() if a.name == "pin-failures"]
    assert alert.detail.startswith("5 wrong officer PINs")
    assert PIN not in alert.detail
    officer = Client(url, source="127.0.0.2")  # the officer, at another screen
    assert officer.login()
    assert "pin-failures" in kiosk.app.alerts.names()  # a right PIN does not hide it


def test_no_officer_actions_from_another_host_unless_allowed(
    screen: Callable[..., tuple[Kiosk, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = screen()
    # (a client on another host, as the server sees it: only loopback is reachable here)
    monkeypatch.setattr(server_mod, "is_local", lambda host: False)
    status, doc = Client(url).request("POST", "/officer/login", {"pin": PIN})
    assert status == 403
    assert "only from this kiosk" in doc["error"]


def test_who_is_local() -> None:
    assert server_mod.is_local("127.0.0.1")
    assert server_mod.is_local("127.8.9.10")
    assert server_mod.is_local("::1")
    assert server_mod.is_local("::ffff:127.0.0.1")
    assert not server_mod.is_local("192.168.1.20")
    assert not server_mod.is_local("::ffff:10.0.0.1")
    assert not server_mod.is_local("not an address")


def test_without_a_pin_the_screen_shows_but_takes_no_orders(
    tmp_path: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    kiosk = kiosks(screen_config(tmp_path, kiosk={"pin_file": ""})).start()
    assert kiosk.app.kiosk is not None
    browser = Client(kiosk.app.kiosk.address)
    assert browser.request("GET", "/officer/session")[1]["enabled"] is False
    status, doc = browser.request("POST", "/officer/login", {"pin": PIN})
    assert (status, doc["error"]) == (403, "no officer PIN is configured on this kiosk")


def test_pages_catalogues_and_no_path_escapes(
    tmp_path: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    extra = tmp_path / "catalogues"
    extra.mkdir()
    (extra / "km.json").write_text(
        json.dumps({"name": "ភាសាខ្មែរ", "messages": {"screen.ready": "..."}})
    )
    (extra / "broken.json").write_text("{")
    kiosk = kiosks(screen_config(tmp_path, kiosk={"catalogues": str(extra)})).start()
    assert kiosk.app.kiosk is not None
    browser = Client(kiosk.app.kiosk.address)
    status, index = browser.request("GET", "/i18n/index.json")
    assert status == 200
    codes = {lang["code"] for lang in index["languages"]}
    assert {"vi", "en", "km"} <= codes
    assert "broken" not in codes
    assert index["default"] == "vi"
    assert browser.request("GET", "/i18n/km.json")[1]["name"] == "ភាសាខ្មែរ"
    assert browser.request("GET", "/i18n/xx.json")[0] == 404
    for path in ("/static/../server.py", "/static/..%2Fserver.py", "/static/.hidden", "/nope"):
        assert browser.request("GET", path)[0] == 404, path
    conn = http.client.HTTPConnection(browser.host, browser.port, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200
    assert "default-src 'self'" in (resp.getheader("Content-Security-Policy") or "")
    assert resp.getheader("X-Frame-Options") == "DENY"
    conn.close()


def test_the_officer_screen_hears_of_alerts_and_connectivity_without_a_lane_event(
    screen: Callable[..., tuple[Kiosk, str]],
) -> None:
    kiosk, url = screen()
    browser = Client(url)
    browser.login()
    officer = Events(url, "officer", browser.cookie)
    officer.until(lambda s: "officer" in s)
    kiosk.app.alerts.raise_("disk-low", "12 MB free at the store", "critical")
    assert kiosk.app.supervise()  # the main thread's second: the status is compared
    _, state = officer.until(lambda s: "disk-low" in s["officer"]["alerts"])
    assert state["officer"]["connected"] is False  # (no broker in this test)
    officer.close()


def test_a_lane_event_takes_its_status_with_it_and_the_second_pushes_only_news() -> None:
    """The lane reaches the screen one way: its listener. What the event changed in the
    status (its fault alert) goes out with it, and the main thread's second does not
    push it again; a change outside the lane does go out then."""
    status: dict[str, Any] = {"connected": True, "alerts": []}
    model = ScreenModel(status=lambda: dict(status))
    lane = lane_mod.Lane(
        BasicPolicy(), mode="officer", decision_timeout_s=20, open_s=5, failsafe_retry_s=10
    )
    now = datetime.now(UTC)
    lane.start(now)
    event = lane_mod.FaultRaised("camera", "gone")
    actions = lane.handle(event, now)
    status["alerts"] = [FAULT_ALERTS["camera"]]  # raised by the view's listener, which runs first
    model.lane_event(event, actions, lane.state, lane)
    version = model.version
    assert version == 1
    assert model.snapshot(officer=True)["officer"]["alerts"] == [FAULT_ALERTS["camera"]]
    model.refresh()
    assert model.version == version  # nothing new: not pushed again
    status["connected"] = False
    model.refresh()
    assert model.version == version + 1
    model.refresh()
    assert model.version == version + 1
    # the page speaks a decision when the lane shows one anew, not when it is sent again
    shown = model.snapshot(officer=False)["shown"]
    model.touch()
    assert model.snapshot(officer=False)["shown"] == shown
    event = lane_mod.FaultCleared("camera")
    model.lane_event(event, lane.handle(event, now), lane.state, lane)
    assert model.snapshot(officer=False)["shown"] == shown + 1


def test_the_central_ingest_is_unknown_until_its_retained_status_is_seen(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk]
) -> None:
    """As in the simulation: no ingest has ever run, so "Central" is neither online
    nor offline; then what its retained status says, whatever the ack mode."""
    cfg = screen_config(tmp_path, mqtt={"port": broker.port, "ack": "broker"})
    kiosk = kiosks(cfg).start()
    assert kiosk.app.kiosk is not None
    url = kiosk.app.kiosk.address
    browser = Client(url)
    browser.login()
    officer = Events(url, "officer", browser.cookie)
    publisher = kiosk.app.publisher
    assert publisher.wait_until(lambda p: p.link is not None and p.link.connected, 10)
    assert kiosk.app.supervise()  # the main thread's second: the status is compared
    _, state = officer.until(lambda s: s.get("officer", {}).get("connected") is True)
    assert state["officer"]["central_online"] is None
    for doc, expected in (({"state": "online"}, True), ({"state": "offline"}, False)):
        publish.single(
            topics.central_status(), json.dumps(doc), qos=1, retain=True,
            hostname="127.0.0.1", port=broker.port, protocol=mqtt.MQTTv5,
        )  # fmt: skip
        assert publisher.wait_until(lambda p, e=expected: p.central_online is e, 10)
        assert kiosk.app.supervise()
        _, state = officer.until(lambda s, e=expected: s["officer"]["central_online"] is e)
    officer.close()


def test_a_rebound_host_name_is_refused(screen: Callable[..., tuple[Kiosk, str]]) -> None:
    _, url = screen()
    browser = Client(url)
    status, doc = browser.request("GET", "/state", Host="evil.example:8080")
    assert (status, doc["code"]) == (421, "host")
    status, doc = browser.request("POST", "/officer/login", {"pin": PIN}, Host="evil.example")
    assert (status, doc["code"]) == (421, "host")
    assert browser.request("GET", "/state")[0] == 200  # its own name is fine


def test_the_first_html_carries_the_state_escaped() -> None:
    """The traveller's page as served: the state of the moment in the markup and as
    JSON for the script; what a code brought (initials) can never become markup."""
    catalogues = server_mod.catalogues(None)
    hostile = "</script><img src=x onerror=alert(1)>"
    state = {
        "version": 3,
        "screen": "denied",
        "reasons": ["expired", "denied", "fault_sprocket"],
        "needs": [],
        "traveller": {"initials": hostile, "id_last": "•••123"},
    }
    page = render.traveller_page(render.traveller_template(), state, catalogues, "vi")
    vi = catalogues["vi"]["messages"]
    assert 'data-screen="denied"' in page
    assert f'<h1 id="title">{vi["screen.denied"]}</h1>' in page
    # the screen's own code is not repeated; an unknown fault reads as a fault
    assert f"<li>{vi['reason.expired']}</li><li>{vi['reason.fault']}</li>" in page
    assert "<img" not in page
    assert page.count("</script>") == 2  # the page's own two script elements only
    embedded = page.split('id="initial-state">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == state
    assert '<html lang="vi"' in page
    english = render.traveller_page(render.traveller_template(), state, catalogues, "xx")
    assert '<html lang="en"' in english  # an unknown default language: English


def test_the_page_is_served_filled_in_and_its_template_never_raw(
    screen: Callable[..., tuple[Kiosk, str]],
) -> None:
    kiosk, url = screen(code=True)
    kiosk.wait_state(State.AWAITING_DECISION)
    conn = http.client.HTTPConnection(*urlsplit(url).netloc.split(":"), timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    page = resp.read().decode()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert 'data-screen="awaiting_officer"' in page
    assert "${" not in page
    conn.request("GET", "/static/traveller.html")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    conn.close()


def test_catalogues_have_every_screen_reason_and_format_in_both_languages() -> None:
    """Every text the screens can need, in Vietnamese and English: screens, reason
    codes (the scanner's, the policy's, the lane's, the faults'), what a traveller
    may be asked to show, and for every registered format its name, its fields and
    its reasons."""
    vi, en = (server_mod.catalogues(None)[lang]["messages"] for lang in ("vi", "en"))
    assert set(vi) == set(en)
    codes = {
        value
        for name, value in vars(scan_reasons).items()
        if name.isupper() and isinstance(value, str)
    }
    codes |= {scan_reasons.NO_DECISION, scan_reasons.NO_CREDENTIAL, scan_reasons.SURGE}
    codes |= {scan_reasons.CLOSED, scan_reasons.SHUTDOWN, scan_reasons.OPERATOR_OPEN}
    codes |= {"internal_error", "not_verified"}
    codes |= {f"fault_{name}" for name in FAULT_ALERTS}  # the lane's faults
    screens = {"ready", "reading", "awaiting_officer", "approved", "denied", "surge", "closed"}
    wanted = {f"reason.{code}" for code in codes}
    wanted |= {f"screen.{s}" for s in {*screens, "failsafe"}}
    wanted |= {f"need.{n}" for n in ("id_card", "proof", "declaration")}
    wanted |= {f"kind.{kind}" for kind in registry.KINDS}
    for fmt in registry.FORMATS:
        wanted |= {f"field.{name}" for name in fmt.labels()}
        wanted |= {f"reason.{code}" for code in fmt.reasons}
        if fmt.alone:
            wanted.add(f"reason.{fmt.alone}")
    assert not wanted - set(vi), f"missing: {sorted(wanted - set(vi))}"
    for key, text in vi.items():
        assert text.strip(), key
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", en[key])), key
