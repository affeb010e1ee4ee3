"""The control room's dashboard: its API over a database filled by devices through a
real broker and the real ingest (SQLite and PostgreSQL), its refusals, its login,
the kiosks' live state from a real mosquitto, and its page in headless Chromium
(the totals of the API, the charts, hostile checkpoint names shown as text, no
console error; a screenshot for the docs).

The server's clock is the test's (``NOW``): "today" never depends on the day the
tests run.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from edge import cli
from edge.central.db import open_db
from edge.central.ingest import Ingest
from edge.config import MqttConfig
from edge.core.model import iso_utc
from edge.dashboard.fleet import FleetView
from edge.dashboard.server import COOKIE, PACKAGE, Dashboard, Settings
from edge.kiosk import auth
from edge.mqtt import topics

from .conftest import REPO, Mosquitto
from .test_fleet import RawClient
from .test_ingest import ingest_config, ingests
from .test_ingest_hostile import Publisher, database, passage, publisher
from .test_kiosk_browser import CHROMEDRIVER, CHROMIUM, browser, js, viewport, wait_for
from .test_summary import T0, expected, send_all, varied

__all__ = ["browser", "database", "ingests", "publisher"]  # fixtures used by name

NOW = T0 + timedelta(hours=10)  # 17:00 in Ho Chi Minh City on 2026-11-26
TZ = "Asia/Ho_Chi_Minh"
TODAY = (T0 - timedelta(hours=7), T0 + timedelta(hours=17))  # its midnights, in UTC
PASSWORD = "correct horse battery"
HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "\u202eQL1 reversed",
    'Chốt <b>đậm</b> & "quoted"',
)
COUNTS = ("passages", "approved", "denied", "vehicles", "occupants", "surge")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed: tools/setup --test installs it",
)


def messages(n: int = 300) -> list[dict[str, Any]]:
    """``varied`` passages, and some at checkpoints with hostile names (the last one
    stays lane-0's, as ``send_all`` wants)."""
    msgs = varied(random.Random(18), n)
    for i, site in enumerate(HOSTILE, start=1):
        ts = iso_utc(T0 + timedelta(hours=2 + i))
        reasons = ["expired", "rule_failed:VR-VN-0002", "new_reason_2027"]
        msgs.insert(0, passage("lane-h", i, site=site, ts=ts, decision="denied", reasons=reasons))
    return msgs


def fill(
    url: str,
    broker: Mosquitto,
    publisher: Publisher,
    ingests: Callable[..., Ingest],
    tmp_path: Path,
) -> list[dict[str, Any]]:
    msgs = messages()
    ingest = ingests(ingest_config(tmp_path, broker.port, database=url))
    send_all(broker, publisher, msgs, [])
    ingest.stop()
    return msgs


@pytest.fixture
def filled(
    tmp_path: Path, broker: Mosquitto, publisher: Publisher, ingests: Callable[..., Ingest]
) -> str:
    """An SQLite database filled with :func:`messages` by the real ingest: its URL."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    fill(url, broker, publisher, ingests, tmp_path)
    return url


@pytest.fixture
def empty(tmp_path: Path) -> str:
    """An SQLite database as an ingest creates it, nothing in it yet: its URL."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    open_db(url).close()
    return url


@pytest.fixture
def dashboards() -> Iterator[Callable[..., Dashboard]]:
    """Dashboards on 127.0.0.1 (a free port), on the test's clock; stopped after."""
    made: list[Dashboard] = []

    def make(url: str, fleet: FleetView | None = None, **settings: Any) -> Dashboard:
        db = open_db(url, readonly=True)
        dash = Dashboard(db, Settings(port=0, tz=TZ, **settings), fleet, clock=lambda: NOW)
        dash.start()
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.stop()
        if dash.fleet is not None:
            dash.fleet.stop()
        dash.db.close()


def request(
    dash: Dashboard,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON or bytes) of one request to ``dash``."""
    parts = urlsplit(dash.address)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    answer = conn.getresponse()
    raw = answer.read()
    conn.close()
    heads = {k.lower(): v for k, v in answer.getheaders()}
    if heads.get("content-type", "").startswith("application/json"):
        return answer.status, heads, json.loads(raw)
    return answer.status, heads, raw


def summary_of(dash: Dashboard, **params: str) -> tuple[int, Any]:
    status, _, doc = request(dash, "GET", f"/api/summary?{urlencode(params)}")
    return status, doc


# -- the API ---------------------------------------------------------------------------


def test_the_api_sums_up_what_the_ingest_stored(
    database: str,
    broker: Mosquitto,
    publisher: Publisher,
    ingests: Callable[..., Ingest],
    dashboards: Callable[..., Dashboard],
    tmp_path: Path,
) -> None:
    msgs = fill(database, broker, publisher, ingests, tmp_path)
    dash = dashboards(database)
    start, end = T0, T0 + timedelta(days=2)
    status, doc = summary_of(dash, **{"from": iso_utc(start), "to": iso_utc(end)})
    assert status == 200
    assert doc == {**doc, **expected(msgs, start, end)}
    assert doc["passages"] == len(msgs)
    assert doc["approved"] + doc["denied"] == doc["passages"]
    assert set(doc["by_site"]) >= set(HOSTILE)
    assert doc["by_reason"]["new_reason_2027"] == len(HOSTILE)
    assert len(doc["by_hour"]) == 48
    assert doc["tz"] == TZ
    # counts only: nothing of a traveller's anywhere in the answer
    text = json.dumps(doc, ensure_ascii=False)
    assert "001190000001" not in text
    assert "Trần" not in text

    # today (in Ho Chi Minh City) by default; times without an offset are of that zone
    status, today = summary_of(dash)
    assert status == 200
    assert (today["from"], today["to"]) == tuple(iso_utc(t) for t in TODAY)
    assert today == {**today, **expected(msgs, *TODAY)}
    assert summary_of(dash, **{"from": "2026-11-26T00:00", "to": "2026-11-27T00:00"})[1] == today

    # one checkpoint
    site = HOSTILE[0]
    status, one = summary_of(dash, **{"from": iso_utc(start), "to": iso_utc(end), "site": site})
    assert status == 200
    assert list(one["by_site"]) == [site]
    assert one["passages"] == doc["by_site"][site]["passages"] == 1


def test_bad_parameters_are_refused_with_a_reason(
    filled: str,
    dashboards: Callable[..., Dashboard],
) -> None:
    url = filled
    dash = dashboards(url)
    day = {"from": "2026-11-26T00:00:00Z", "to": "2026-11-27T00:00:00Z"}
    bad = {
        "from=2026-11-26T00:00:00Z": "both from and to",
        "to=2026-11-26T00:00:00Z": "both from and to",
        "from=yesterday&to=2026-11-27T00:00:00Z": "from: not an ISO 8601 time",
        f"from={'9' * 500}&to=2026-11-27T00:00:00Z": "from: not an ISO 8601 time",
        "from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z": "to must be after from",
        "from=2026-01-01T00:00:00Z&to=2026-11-26T00:00:00Z": "at most 93 days",
        f"{urlencode(day)}&site=a&site=b": "site: given more than once",
        f"{urlencode(day)}&site={'x' * 101}": "site: longer than 100",
        f"{urlencode(day)}&site=%1b%5b2J": "site: holds a control character",
        f"{urlencode(day)}&id_number=001190000001": "unknown parameter 'id_number'",
    }
    for query, reason in bad.items():
        status, heads, doc = request(dash, "GET", f"/api/summary?{query}")
        assert status == 400, query
        assert heads["content-type"].startswith("application/json")
        assert doc["code"] == "query"
        assert reason in doc["error"], (query, doc)
    # a checkpoint nobody has heard of: nothing there, not an error
    status, doc = summary_of(dash, **day, site="Nowhere")
    assert (status, doc["passages"], doc["by_site"]) == (200, 0, {})


def test_a_database_that_goes_away_is_a_503_and_one_never_there_stops_the_start(
    tmp_path: Path,
    filled: str,
    dashboards: Callable[..., Dashboard],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dash = dashboards(filled)
    path = filled.removeprefix("sqlite:///")
    assert summary_of(dash)[0] == 200
    assert summary_of(dash)[0] == 200  # (the same query again: the answer of this refresh)
    with sqlite3.connect(path) as conn:  # someone removes the roll-ups
        conn.execute("DROP TABLE hourly")
    status, doc = summary_of(dash, site="QL14")  # a query not answered yet
    assert (status, doc["code"]) == (503, "database")

    old = tmp_path / "old.db"  # a database no ingest of this version has opened
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE passages (pid TEXT)")
    assert cli.main(["dashboard", "--database", f"sqlite:///{old}"]) == 1
    assert "no roll-ups yet" in capsys.readouterr().err

    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert cli.main(["dashboard", "--database", missing]) == 1
    err = capsys.readouterr().err
    assert "cannot open the database" in err
    assert "does not exist" in err


def test_the_command_refuses_to_listen_beyond_loopback_without_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    base = ["dashboard", "--database", url]
    assert cli.main([*base, "--listen", "0.0.0.0:8090"]) == 2
    err = capsys.readouterr().err
    assert "listens beyond loopback (0.0.0.0), whose password it lacks: give --password-file" in err
    assert cli.main([*base, "--listen", "[::]:8090"]) == 2
    assert "give --password-file" in capsys.readouterr().err
    assert cli.main([*base, "--login"]) == 2
    assert "--login asks for a login, whose password it lacks" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    assert cli.main([*base, "--login", "--password-file", str(short)]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert cli.main([*base, "--password-file", str(tmp_path / "none"), "--login"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert cli.main([*base, "--tz", "Mars/Olympus"]) == 2
    assert "not a time zone" in capsys.readouterr().err
    assert cli.main([*base, "--listen", "8090"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_the_command_serves_until_stopped(filled: str) -> None:
    url = filled
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "dashboard", "--database", url, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        address = re.fullmatch(r"checkpoint-edge dashboard: http://127\.0\.0\.1:(\d+)\n", line)
        assert address, line
        conn = http.client.HTTPConnection("127.0.0.1", int(address.group(1)), timeout=10)
        conn.request("GET", "/api/summary?from=2026-11-26T00:00Z&to=2026-11-28T00:00Z")
        answer = conn.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["passages"] == len(messages())
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


# -- the login ---------------------------------------------------------------------------


def test_with_a_password_the_api_needs_a_session_and_wrong_passwords_lock_out(
    empty: str, dashboards: Callable[..., Dashboard]
) -> None:
    url = empty
    dash = dashboards(url, password=PASSWORD)
    status, _, config = request(dash, "GET", "/api/config")
    assert (status, config["login"], config["logged_in"]) == (200, True, False)
    for path in ("/api/summary", "/api/fleet"):
        status, _, doc = request(dash, "GET", path)
        assert (status, doc["code"]) == (401, "login")
    status, _, page = request(dash, "GET", "/")  # the page itself holds no data
    assert status == 200
    assert b'id="login-form"' in page

    status, heads, doc = request(dash, "POST", "/api/login", {"password": PASSWORD})
    assert status == 200
    cookie = heads["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    session = {"Cookie": cookie.split(";")[0]}
    status, _, figures = request(dash, "GET", "/api/summary", headers=session)
    assert (status, figures["passages"]) == (200, 0)
    assert request(dash, "GET", "/api/fleet", headers=session)[2]["configured"] is False
    # logging out needs the page's CSRF token, then the session is gone
    assert request(dash, "POST", "/api/logout", headers=session)[0] == 403
    csrf = {**session, "X-CSRF-Token": doc["csrf"]}
    assert request(dash, "POST", "/api/logout", headers=csrf)[0] == 200
    assert request(dash, "GET", "/api/summary", headers=session)[0] == 401

    # a guesser is locked out, even when it then guesses right
    for _ in range(auth.MAX_FAILURES):
        status, _, doc = request(dash, "POST", "/api/login", {"password": "wrong" * 3})
        assert (status, doc["code"], doc["error"]) == (403, "wrong_password", "wrong password")
    status, heads, doc = request(dash, "POST", "/api/login", {"password": PASSWORD})
    assert (status, doc["code"]) == (429, "locked")
    assert "too many wrong passwords" in doc["error"]
    assert "set-cookie" not in heads
    # nor is a login from another site's page accepted
    other = {"Origin": "http://evil.example"}
    assert request(dash, "POST", "/api/login", {"password": PASSWORD}, other)[0] == 403


def test_without_a_login_only_this_servers_own_names_are_served(
    empty: str, dashboards: Callable[..., Dashboard]
) -> None:
    url = empty
    dash = dashboards(url)
    status, heads, _ = request(dash, "GET", "/")
    assert status == 200
    assert "script-src 'self'" in heads["content-security-policy"]
    assert "unsafe-inline" not in heads["content-security-policy"]
    port = urlsplit(dash.address).port
    rebound = {"Host": f"evil.example:{port}"}
    assert request(dash, "GET", "/api/summary", headers=rebound)[0] == 421
    assert request(dash, "GET", "/api/summary", headers={"Host": f"LOCALHOST:{port}"})[0] == 200
    # a reverse proxy on this machine: every browser of the network would look local
    for proxy in ({"X-Forwarded-For": "10.0.0.7"}, {"Forwarded": "for=10.0.0.7"}):
        assert request(dash, "GET", "/api/summary", headers=proxy)[0] == 421, proxy
    assert request(dash, "GET", "/api/config")[2]["login"] is False
    assert request(dash, "GET", "/static/vendor/uPlot.iife.min.js")[0] == 200
    for path in ("/static/../server.py", "/static/vendor/README.md", "/static/%2e%2e/x.js"):
        assert request(dash, "GET", path)[0] == 404, path


def test_the_vendored_chart_library_is_the_one_its_readme_names() -> None:
    vendor = Path(str(PACKAGE / "static" / "vendor"))
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^\s+([0-9a-f]{64})  (\S+)$", readme, re.M)
    sums = {name: digest for digest, name in found}
    assert set(sums) == {"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"}
    for name, digest in sums.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text(encoding="utf-8")
    assert "- version: 1.6.32" in readme
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(REPO / "tools" / "vendor-chart")], check=True)


# -- the kiosks ----------------------------------------------------------------------------


def publish_fleet(port: int) -> None:
    """Two kiosks' retained state, as kiosks publish it: one online with an alert, one
    gone, whose meta names its site with a hostile 10 KB string."""
    raw = RawClient(port, [])
    seen = iso_utc(NOW - timedelta(minutes=2))
    raw.publish(topics.status("lane-1"), {"state": "online", "session": 3, "ts": seen}, True)
    raw.publish(topics.meta("lane-1"), {"version": "0.1.0", "site": "QL1-Km1500"}, True)
    tele = {"ts": seen, "mode": "officer", "state": "idle", "outbox_depth": 12,
            "oldest_unacked_s": 95.5}  # fmt: skip
    raw.publish(topics.telemetry("lane-1"), tele, True)
    alert = {"name": "camera-down", "severity": "critical", "detail": "no frames", "raised": seen}
    raw.publish(topics.alert("lane-1", "camera-down"), alert, True)
    site = HOSTILE[0] + HOSTILE[1] + "x" * 10_000
    # a time that is none: it must not become the fleet's latest, nor break the table
    raw.publish(topics.status("lane-2"), {"state": "offline", "session": 1, "ts": "zz"}, True)
    raw.publish(topics.meta("lane-2"), {"site": site, "mode": "\ud800surge"}, True)
    raw.close()


def fleet_of(broker: Mosquitto) -> FleetView:
    """The dashboard's view of the fleet, once :func:`publish_fleet` has published it."""
    publish_fleet(broker.port)
    return FleetView(MqttConfig(host="127.0.0.1", port=broker.port)).start()


def test_the_kiosks_live_state_comes_from_the_broker(
    empty: str, broker: Mosquitto, dashboards: Callable[..., Dashboard]
) -> None:
    dash = dashboards(empty, fleet_of(broker))
    status, _, doc = request(dash, "GET", "/api/fleet")
    assert status == 200
    assert (doc["configured"], doc["connected"]) == (True, True)
    one, two = doc["kiosks"]
    assert one == {**one, "device": "lane-1", "state": "online", "mode": "officer",
                   "site": "QL1-Km1500", "outbox_depth": 12, "oldest_unacked_s": 95.5,
                   "alerts": ["camera-down"]}  # fmt: skip
    assert (two["device"], two["state"]) == ("lane-2", "offline")
    assert two["site"] == (HOSTILE[0] + HOSTILE[1] + "x" * 80)[:80]  # bounded
    assert two["mode"] == "?surge"  # a lone surrogate cannot go out as UTF-8
    assert two["last_seen"] is None  # its "zz" is no time
    assert one["last_seen"] == iso_utc(NOW - timedelta(minutes=2))


# -- the page --------------------------------------------------------------------------------

# what the browser may log without the page being at fault: the refusals a test provokes
EXPECTED = re.compile(r"/api/login - Failed to load resource: .*status of 403")


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not EXPECTED.search(e["message"])
    ]


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    browser.get("about:blank")
    browser.get_log("browser")
    viewport(browser, 1280, 800)
    yield browser
    problems = console_errors(browser)
    browser.get("about:blank")
    assert not problems, f"the page logged errors: {problems}"


def on_page(driver: webdriver.Chrome, dash: Dashboard) -> Dashboard:
    """``dash``'s page loaded, its figures and kiosks shown."""
    driver.get(dash.address)
    wait_for(driver, updated)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#kiosks td"))
    return dash


def updated(driver: webdriver.Chrome) -> bool:
    return bool(js(driver, "return document.body.dataset.updated || ''"))


def totals(driver: webdriver.Chrome) -> dict[str, int]:
    shown = js(
        driver,
        "return Object.fromEntries(arguments[0].map((n) => "
        "[n, document.getElementById('t-' + n).textContent]))",
        list(COUNTS),
    )
    return {name: int(text.replace(",", "")) for name, text in shown.items()}


@needs_browser
def test_the_page_shows_the_apis_figures_and_hostile_names_as_text(
    page: webdriver.Chrome,
    filled: str,
    broker: Mosquitto,
    dashboards: Callable[..., Dashboard],
) -> None:
    dash = on_page(page, dashboards(filled, fleet_of(broker)))
    _, today = summary_of(dash)
    assert totals(page) == {name: today[name] for name in COUNTS}
    assert js(page, "return document.querySelectorAll('#chart canvas').length") == 1
    assert js(page, "return document.querySelectorAll('#chart-decisions canvas').length") == 1
    # every hostile checkpoint name is in the page as text, none as markup
    cells = js(page, "return [...document.querySelectorAll('#sites td')].map((c) => c.textContent)")
    assert set(HOSTILE) <= set(cells)
    options = js(page, "return [...document.querySelectorAll('#site option')].map((o) => o.text)")
    assert set(HOSTILE) <= set(options)
    assert js(page, "return document.querySelectorAll('main img, main b, main script').length") == 0
    reasons = js(page, "return [...document.querySelectorAll('#reasons td.code')]"
                       ".map((c) => c.textContent)")  # fmt: skip
    assert "new_reason_2027" in reasons  # an unknown code: shown as it is
    labels = js(page, "return [...document.querySelectorAll('#reasons td:first-child')]"
                      ".map((c) => c.textContent)")  # fmt: skip
    assert "Declaration expired" in labels
    assert "Rule not met: VR-VN-0002" in labels
    kiosks = js(page, "return [...document.querySelectorAll('#kiosks tbody tr')]"
                      ".map((r) => [...r.cells].map((c) => c.textContent))")  # fmt: skip
    assert kiosks[0][:7] == ["lane-1", "QL1-Km1500", "online", "officer", "12", "96 s",
                             "camera-down"]  # fmt: skip
    assert kiosks[1][1].startswith(HOSTILE[0])
    # the long name stays in its cell: the page does not scroll sideways
    assert js(page, "return document.documentElement.scrollWidth <= innerWidth")

    # another range and one checkpoint: the figures follow
    site = HOSTILE[0]
    js(page, "document.getElementById('from').value = '2026-11-26T00:00'")
    js(page, "document.getElementById('to').value = '2026-11-28T00:00'")
    js(page, "document.getElementById('site').value = arguments[0]", site)
    before = js(page, "return document.body.dataset.updated")
    page.find_element(By.CSS_SELECTOR, "#range button[type=submit]").click()
    wait_for(page, lambda d: js(d, "return document.body.dataset.updated") != before)
    _, one = summary_of(
        dash, **{"from": "2026-11-26T00:00", "to": "2026-11-28T00:00", "site": site}
    )
    assert totals(page) == {name: one[name] for name in COUNTS}


@needs_browser
def test_a_screenshot_of_the_dashboard_for_the_docs(
    page: webdriver.Chrome,
    tmp_path: Path,
    filled: str,
    broker: Mosquitto,
    dashboards: Callable[..., Dashboard],
) -> None:
    """``dashboard.png``, the whole page 1280 wide, in ``$CHECKPOINT_EDGE_SCREENSHOTS``
    (docs/dashboard.png is one, optimised)."""
    on_page(page, dashboards(filled, fleet_of(broker)))
    # the whole page, 1280 wide
    viewport(page, 1280, int(js(page, "return document.documentElement.scrollHeight")))
    wait_for(page, lambda d: js(d, "return innerHeight >= document.documentElement.scrollHeight"))
    folder = Path(os.environ.get("CHECKPOINT_EDGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(folder / "dashboard.png"))
    assert js(page, "return document.documentElement.scrollWidth <= innerWidth")


@needs_browser
def test_the_page_asks_for_the_password_and_then_shows_the_figures(
    page: webdriver.Chrome, empty: str, dashboards: Callable[..., Dashboard]
) -> None:
    url = empty
    dash = dashboards(url, password=PASSWORD)
    page.get(dash.address)
    form = wait_for(page, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert form
    assert not page.find_element(By.ID, "main").is_displayed()
    page.find_element(By.ID, "password").send_keys("not the password")
    page.find_element(By.ID, "login-button").click()
    wait_for(page, lambda d: d.find_element(By.ID, "login-error").text == "wrong password")
    page.find_element(By.ID, "password").send_keys(PASSWORD)
    page.find_element(By.ID, "login-button").click()
    wait_for(page, updated)
    assert totals(page)["passages"] == 0
    cookies = {c["name"]: c for c in page.get_cookies()}
    assert cookies[COOKIE]["httpOnly"] is True
    assert cookies[COOKIE]["sameSite"] == "Strict"
    page.find_element(By.ID, "logout").click()
    wait_for(page, lambda d: d.find_element(By.ID, "login").is_displayed())
