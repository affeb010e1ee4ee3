"""The kiosk's pages in a real browser: Debian's headless Chromium, driven by Selenium,
against a real App (mock pins, the simulated camera on an image folder).

A QR code put in front of the camera turns the traveller's screen to "approved"
within a second of the lane's decision; an officer's touch on Approve opens the
barrier; wrong PINs and actions without a session are refused, visibly; the
language switch changes every text. Screenshots of each screen at 800x480 (the
official 7" Pi display) and 1920x1080 go to ``$CHECKPOINT_EDGE_SCREENSHOTS``
(default: the test's tmp_path) for review. No test sleeps: each waits for a DOM
condition (WebDriverWait) or a lane event. (The server alone, over HTTP:
test_kiosk_server.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from edge import credtools
from edge.config import Config
from edge.core.lane import Action, Event, FaultRaised, SetMode, Show, State
from edge.kiosk import server as server_mod
from edge.kiosk.server import PACKAGE
from edge.scan import declaration

from . import test_e2e
from .conftest import REPO, make_config, write_frame
from .test_declaration import make_declaration
from .test_e2e import ID_CARD, Kiosk

kiosks = test_e2e.kiosks  # the fixture: an App on mock pins, stopped after the test


def _find(names: tuple[str, ...], extra: tuple[str, ...] = ()) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((path for path in extra if os.access(path, os.X_OK)), None)


CHROMIUM = _find(("chromium", "chromium-browser"))
CHROMEDRIVER = _find(("chromedriver",), ("/usr/lib/chromium/chromedriver",))
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed: tools/setup --test installs Debian's "
    "chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

PIN = "246802"
SIZES = ((800, 480), (1920, 1080))  # the official 7" Pi screen, a full-HD monitor
WAIT_S = 10.0
I18N = PACKAGE / "i18n"
VI: dict[str, str] = json.loads((I18N / "vi.json").read_text(encoding="utf-8"))["messages"]
EN: dict[str, str] = json.loads((I18N / "en.json").read_text(encoding="utf-8"))["messages"]
# What the browser may log at SEVERE level without the page being at fault: the
# server's refusals that a test provokes on purpose, and the event stream's
# reconnection attempts once a test has stopped its kiosk.
EXPECTED = re.compile(
    r"/officer/(login|approve|deny)\b.*status of (403|429)\b"
    r"|/events\?view=\w+ - Failed to load resource: net::ERR_CONNECTION_REFUSED"
)


# -- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module (each test loads its own kiosk's pages)."""
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-extensions",
        "--force-device-scale-factor=1",
        "--window-size=800,480",
        "--lang=vi",
        "--autoplay-policy=no-user-gesture-required",  # the screen speaks (as on the Pi)
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    viewport(driver, *SIZES[0])
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser, on a blank page with an empty console; after the test, the
    console must hold no error of the pages'."""
    browser.get("about:blank")
    browser.get_log("browser")
    viewport(browser, *SIZES[0])
    yield browser
    problems = console_errors(browser)
    browser.get("about:blank")  # close the event stream before the kiosk stops
    assert not problems, f"the page logged errors: {problems}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CHECKPOINT_EDGE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not EXPECTED.search(entry["message"])
    ]


def viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def wait_for(driver: webdriver.Chrome, what: Callable[[webdriver.Chrome], Any]) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.02).until(what)


def js(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def tap(driver: webdriver.Chrome, element: WebElement) -> None:
    """A finger's touch (pointer type "touch"), as on the kiosk's touch screen."""
    finger = PointerInput(interaction.POINTER_TOUCH, "finger")
    actions = ActionBuilder(driver, mouse=finger)
    actions.pointer_action.move_to(element).pointer_down().pointer_up()
    actions.perform()


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    """An element's text exactly as the catalogue gave it (no-break spaces kept)."""
    return str(js(driver, "return document.getElementById(arguments[0]).textContent", element_id))


def shown_reasons(driver: webdriver.Chrome) -> list[str]:
    """The reasons listed on the traveller's page, read in one go (the script may
    replace the list's items at any moment)."""
    return list(
        js(
            driver,
            "return [...document.querySelectorAll('#reasons li')].map((li) => li.innerText.trim())",
        )
    )


def screen_of(driver: webdriver.Chrome) -> tuple[str, str]:
    """(data-screen, title text) of the traveller's page."""
    found = js(
        driver,
        "return [document.body.dataset.screen, document.getElementById('title').textContent]",
    )
    return found[0], found[1]


def showing(screen: str, text: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda d: screen_of(d) == (screen, text)


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Load a page and wait until its script runs it (the elements are then the
    script's, not the server's first render, which test_first_html_shows_the_state
    looks at without script)."""
    driver.get(url)
    wait_for(driver, scripted)


def scripted(driver: webdriver.Chrome) -> bool:
    """The page's script has taken over from the server's first render."""
    return bool(js(driver, "return document.documentElement.dataset.script === 'ready'"))


def visible(element_id: str) -> Callable[[webdriver.Chrome], WebElement | bool]:
    def check(d: webdriver.Chrome) -> WebElement | bool:
        element = d.find_element(By.ID, element_id)
        return element if element.is_displayed() else False

    return check


def assert_fits(driver: webdriver.Chrome, ids: tuple[str, ...]) -> None:
    """No scrolling of the page, and each element named entirely on screen."""
    found = js(
        driver,
        """
        const page = document.documentElement;
        const out = {scroll: [page.scrollWidth, page.scrollHeight, innerWidth, innerHeight]};
        for (const id of arguments[0]) {
          const r = document.getElementById(id).getBoundingClientRect();
          out[id] = [r.left, r.top, r.right, r.bottom];
        }
        return out;
        """,
        list(ids),
    )
    width, height, inner_w, inner_h = found.pop("scroll")
    assert (width, height) == (inner_w, inner_h), f"the page scrolls at {inner_w}x{inner_h}"
    for name, (left, top, right, bottom) in found.items():
        assert left >= 0
        assert top >= 0
        assert right <= inner_w + 0.5
        assert bottom <= inner_h + 0.5, f"#{name} is cut off at {inner_w}x{inner_h}"


def shoot(driver: webdriver.Chrome, folder: Path, name: str, fits: tuple[str, ...]) -> None:
    """``name-800x480.png`` and ``name-1920x1080.png``, each checked to fit its screen."""
    for width, height in SIZES:
        viewport(driver, width, height)
        wait_for(driver, lambda d, w=width: js(d, "return innerWidth") == w)
        assert_fits(driver, fits)
        assert driver.save_screenshot(str(folder / f"{name}-{width}x{height}.png"))
    viewport(driver, *SIZES[0])


def no_raw_keys(driver: webdriver.Chrome) -> None:
    """Every visible text came from a catalogue: no key shows through."""
    text = js(driver, "return document.body.innerText")
    leaked = re.findall(
        r"\b(?:screen|reason|need|officer|field|state|mode|kind|vehicle|group)\.[a-z_.]+\b", text
    )
    assert not leaked, f"catalogue keys on screen: {leaked}"


# -- the kiosk -------------------------------------------------------------------------


def screen_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A kiosk with its screen on a free port and an officer PIN; officer mode."""
    pin = tmp_path / "officer-pin"
    pin.write_text(PIN + "\n")
    base: dict[str, dict[str, Any]] = {
        "kiosk": {"listen": "127.0.0.1:0", "pin_file": str(pin)},
        "lane": {"mode": "officer", "decision_timeout_s": 60, "open_s": 5},
        "passage": {"fields": ["name", "id_number"]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return make_config(tmp_path, **base)


def start(kiosks: Callable[[Config], Kiosk], cfg: Config) -> tuple[Kiosk, str]:
    kiosk = kiosks(cfg).start()
    assert kiosk.app.kiosk is not None, "the screen did not start"
    return kiosk, kiosk.app.kiosk.address


def signed(tmp_path: Path, now: datetime | None = None, **changes: Any) -> tuple[str, str]:
    """(trust list file, a signed declaration's QR payload) from a fresh demo issuer.

    The declaration is valid at ``now`` (the wall clock unless given): every date in
    it, the test date included, is derived from that one instant.
    """
    made = credtools.keys_new("VN-HN", "ES256", tmp_path / "keys")
    key, kid = credtools.load_private_key(Path(made["private_key"]))
    decl = make_declaration(now=now or datetime.now(UTC))
    return str(made["trust_list"]), declaration.issue(replace(decl, **changes), key, kid)


def show_code(frames: Path, name: str, payload: str | bytes | None) -> None:
    """Put a code in front of the camera at once (written aside, then renamed into view)."""
    hidden = frames / f".{name}"
    write_frame(hidden, payload)
    hidden.replace(frames / name)


def log_in(driver: webdriver.Chrome, pin: str) -> None:
    for digit in pin:
        tap(driver, driver.find_element(By.CSS_SELECTOR, f'#pad button[data-key="{digit}"]'))
    tap(driver, driver.find_element(By.ID, "login-submit"))


# -- the tests -------------------------------------------------------------------------


def test_a_scanned_declaration_shows_approved_within_a_second(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    shots: Path,
    record_property: Callable[[str, object], None],
) -> None:
    trust, payload = signed(tmp_path)
    write_frame(frames_dir / "00-empty.png", None)  # an empty scene, looped: nobody there yet
    cfg = screen_config(
        tmp_path,
        lane={"mode": "auto"},
        trust={"files": [trust]},
        camera={"loop": True, "hold_s": 0.1, "gap_s": 0.1},
    )
    kiosk, url = start(kiosks, cfg)
    decided: list[float] = []

    def on_lane(_e: Event, actions: list[Action], _s: State) -> None:
        if any(isinstance(a, Show) and a.screen == "approved" for a in actions):
            decided.append(time.time())

    kiosk.app.runner.add_listener(on_lane)
    open_page(page, url + "/")
    wait_for(page, showing("ready", VI["screen.ready"]))
    no_raw_keys(page)
    shoot(page, shots, "traveller-ready", ("title", "hint", "languages"))
    # when the DOM first shows each screen (wall clock, as time.time() on this machine)
    js(
        page,
        """
        window.shownAt = {};
        const note = () => {
          const screen = document.body.dataset.screen;
          const title = document.getElementById('title').textContent;
          if (!(screen in window.shownAt)) {
            window.shownAt[screen] = {at: performance.timeOrigin + performance.now(), title};
          }
        };
        new MutationObserver(note).observe(
          document.body, {attributes: true, childList: true, subtree: true, characterData: true});
        """,
    )

    show_code(frames_dir, "01-code.png", payload)
    shown = wait_for(page, lambda d: js(d, "return window.shownAt.approved || false"))
    assert kiosk.relay.wait_for(True), "the barrier did not open"
    (frames_dir / "01-code.png").unlink()  # the traveller walks on
    assert decided, "the lane never decided"
    latency = shown["at"] / 1000 - decided[0]
    record_property("decision_to_screen_ms", round(latency * 1000, 1))
    print(f"decision to screen: {latency * 1000:.1f} ms")  # for the report (pytest -s)
    assert shown["title"] == VI["screen.approved"]
    assert -0.05 < latency < 1.0, f"{latency * 1000:.0f} ms from the decision to the screen"

    # masked: initials and the last digits; never the name nor the whole number
    person = page.find_element(By.ID, "person").text
    assert "•••••••••345" in person
    assert person.startswith("T. N. H. T. T. N. P. T.")
    source = page.page_source
    assert "079190012345" not in source
    assert "Phương Thảo" not in source
    shoot(page, shots, "traveller-approved", ("title", "hint", "person", "languages"))


def test_the_officer_logs_in_and_a_touch_on_approve_opens_the_barrier(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    shots: Path,
) -> None:
    cfg = screen_config(tmp_path)
    write_frame(frames_dir / "01-id-card.png", ID_CARD.encode())
    kiosk, url = start(kiosks, cfg)
    kiosk.wait_state(State.AWAITING_DECISION)

    open_page(page, url + "/")
    wait_for(page, showing("awaiting_officer", VI["screen.awaiting_officer"]))
    assert page.find_element(By.ID, "person").text.startswith("N. V. M.")
    reasons = shown_reasons(page)
    assert reasons == [VI["reason.id_card_only"]]
    assert page.find_element(By.ID, "needs").is_displayed()
    no_raw_keys(page)
    shoot(page, shots, "traveller-awaiting_officer", ("title", "reasons", "needs", "languages"))

    open_page(page, url + "/officer")
    wait_for(page, visible("pad"))
    assert not page.find_element(By.ID, "approve").is_displayed()  # nothing before the PIN
    shoot(page, shots, "officer-login", ("pad", "login-submit"))
    log_in(page, PIN)
    wait_for(page, visible("approve"))
    codes = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#codes .code"))
    fields = codes[0].text
    assert VI["kind.id_card"] in fields
    assert "Nguyen Van Minh" in fields  # the officer sees the decoded card in full
    assert "012345678901" in fields
    assert "12 Ly Thuong Kiet, Ha Noi" in fields
    assert page.find_element(By.ID, "rec-value").text == VI["recommendation.refer"]
    assert page.find_element(By.ID, "mode-value").text == VI["mode.officer"]
    assert page.find_element(By.ID, "lane-value").text == VI["state.awaiting_decision"]
    assert page.find_element(By.ID, "decide").is_displayed()
    no_raw_keys(page)
    shoot(page, shots, "officer-deciding", ("approve", "deny", "rec-value"))

    kiosk.relay.clear_states()
    tap(page, page.find_element(By.ID, "approve"))
    assert kiosk.relay.wait_for(True), "the officer's approve did not open the barrier"
    first_row = wait_for(
        page, lambda d: d.find_elements(By.CSS_SELECTOR, "#recent tbody tr[data-decision]")
    )[0]
    assert VI["decided_by.officer"] in first_row.text
    assert page.find_element(By.ID, "action-feedback").text == VI["officer.sent.approve"]
    wait_for(page, lambda d: d.find_element(By.ID, "lane-value").text == VI["state.open"])
    shoot(page, shots, "officer-approved", ("approve", "deny", "action-feedback"))


def awaiting_officer_colours(png: bytes) -> tuple[float, float]:
    """(share of the page in the awaiting-officer amber, share of dark text pixels)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "no screenshot"
    amber = np.array([0x07, 0xC1, 0xFF])  # BGR of --amber in kiosk.css
    background = float(np.all(np.abs(image.astype(int) - amber) <= 8, axis=2).mean())
    return background, float((image.sum(axis=2) < 200).mean())


def test_a_screenshot_of_the_first_html_shows_the_state(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
) -> None:
    """``chromium --headless --screenshot`` as a person takes one, and a browser without
    script: the page shows the lane's state at once (colour, title, reasons, person)."""
    assert CHROMIUM is not None
    write_frame(frames_dir / "01-id-card.png", ID_CARD.encode())
    kiosk, url = start(kiosks, screen_config(tmp_path))
    kiosk.wait_state(State.AWAITING_DECISION)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-proxy-server", "--force-device-scale-factor=1", "--window-size=800,480",
            f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", url + "/",
        ],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    background, ink = awaiting_officer_colours(shot.read_bytes())
    assert background > 0.5, f"the awaiting-officer colour covers {background:.0%} of the page"
    assert ink > 0.01, "no text on the page"

    page.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        page.get(url + "/")
        assert screen_of(page) == ("awaiting_officer", VI["screen.awaiting_officer"])
        assert text_of(page, "hint") == VI["screen.awaiting_officer.hint"]
        reasons = shown_reasons(page)
        assert reasons == [VI["reason.id_card_only"]]
        assert page.find_element(By.ID, "person").text.startswith("N. V. M.")
        background, ink = awaiting_officer_colours(page.get_screenshot_as_png())
        assert background > 0.5
        assert ink > 0.01
    finally:
        page.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_the_officer_checks_a_vehicle_by_touch_and_it_passes_once(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    shots: Path,
) -> None:
    cfg = screen_config(
        tmp_path,
        lane={"group_s": 60},
        camera={"loop": True, "hold_s": 0.3, "gap_s": 0.2},
        passage={"fields": ["name", "id_number", "plate"]},
    )
    write_frame(frames_dir / "zz-nobody.png", None)
    kiosk, url = start(kiosks, cfg)
    open_page(page, url + "/officer")
    log_in(page, PIN)
    wait_for(page, visible("vehicle-kinds"))
    tap(page, page.find_element(By.CSS_SELECTOR, '#vehicle-kinds button[data-kind="bus"]'))
    kiosk.wait_state(State.GROUP)
    wait_for(page, visible("vehicle-now"))
    assert page.find_element(By.ID, "vehicle-kind").text == VI["vehicle.bus"]
    for i, card in enumerate((ID_CARD, "001090000002||Tran Thi Binh|05051985|Nữ|Thôn 2|01012022")):
        show_code(frames_dir, f"{i:02}.png", card)
        wanted = VI["group.people"].replace("{count}", str(i + 1))
        wait_for(page, lambda d, w=wanted: d.find_element(By.ID, "vehicle-people").text == w)
        (frames_dir / f"{i:02}.png").unlink()
    plate = page.find_element(By.ID, "plate")
    tap(page, plate)
    plate.send_keys("51b 012.34")
    tap(page, page.find_element(By.CSS_SELECTOR, "#plate-form button"))
    wait_for(page, lambda d: d.find_element(By.ID, "plate").get_attribute("value") == "51B-012.34")
    shoot(page, shots, "officer-vehicle", ("vehicle-now", "approve"))
    kiosk.relay.clear_states()
    tap(page, page.find_element(By.ID, "approve"))
    assert kiosk.relay.wait_for(True), "the officer's approve did not open the barrier"
    draft = kiosk.wait_recorded()
    assert draft.vehicle is not None
    assert (draft.vehicle.kind, draft.vehicle.plate) == ("bus", "51B-012.34")
    assert draft.occupants == ((0,), (1,))
    no_raw_keys(page)


def test_a_wrong_pin_and_actions_without_a_session_are_refused(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    shots: Path,
) -> None:
    write_frame(frames_dir / "01-id-card.png", ID_CARD.encode())
    kiosk, url = start(kiosks, screen_config(tmp_path))
    kiosk.wait_state(State.AWAITING_DECISION)
    open_page(page, url + "/officer")
    wait_for(page, visible("pad"))

    # the page's own origin, but no session: refused, with or without a made-up token
    for headers in ({}, {"X-CSRF-Token": "guessed"}):
        status, error = page.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            fetch('/officer/approve', {method: 'POST', headers: arguments[0]})
              .then(async (r) => done([r.status, (await r.json()).error]))
              .catch((e) => done([0, String(e)]));
            """,
            headers,
        )
        assert (status, error) == (403, "not logged in, or the page's token is missing")

    log_in(page, "0000")
    error = wait_for(page, visible("login-error"))
    assert error.text == VI["officer.error.wrong_pin"]
    assert not page.find_element(By.ID, "approve").is_displayed()
    shoot(page, shots, "officer-wrong-pin", ("pad", "login-error"))

    pin = page.find_element(By.ID, "pin")
    for _ in range(4):  # five wrong PINs in a row: locked out, even for the right one
        pin.send_keys("1111\n")
        wait_for(page, lambda d: d.find_element(By.ID, "pin").get_attribute("value") == "")
    pin.send_keys(PIN + "\n")
    locked = VI["officer.error.locked"].split("{", 1)[0]
    wait_for(page, lambda d: d.find_element(By.ID, "login-error").text.startswith(locked))
    assert not page.find_element(By.ID, "approve").is_displayed()
    shoot(page, shots, "officer-locked", ("pad", "login-error"))
    assert kiosk.relay.state is False
    assert not [s for s in kiosk.relay.states if s.state]  # the barrier never opened


def test_the_officer_view_says_why_no_login_is_possible(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = start(kiosks, screen_config(tmp_path))
    # a tablet on the network while [kiosk] allow_remote is off (as the server sees it:
    # only loopback is reachable from this test)
    monkeypatch.setattr(server_mod, "is_local", lambda _host: False)
    open_page(page, url + "/officer")
    error = wait_for(page, visible("login-error"))
    assert error.text == VI["officer.error.remote"]
    assert not page.find_element(By.ID, "login-submit").is_enabled()

    other = tmp_path / "no-pin"
    (other / "frames").mkdir(parents=True)
    _, url = start(kiosks, screen_config(other, kiosk={"pin_file": ""}))
    open_page(page, url + "/officer")
    error = wait_for(page, visible("login-error"))
    assert error.text == VI["officer.error.no_pin"]
    assert not page.find_element(By.ID, "login-submit").is_enabled()


def test_the_traveller_switches_to_english_and_back(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk], page: webdriver.Chrome
) -> None:
    _, url = start(kiosks, screen_config(tmp_path))
    open_page(page, url + "/")
    wait_for(page, showing("ready", VI["screen.ready"]))
    buttons = {
        b.get_attribute("data-lang"): b for b in page.find_elements(By.CSS_SELECTOR, ".lang")
    }
    assert {"vi", "en"} <= set(buttons)
    assert buttons["vi"].text == "Tiếng Việt"
    assert buttons["vi"].get_attribute("aria-pressed") == "true"

    tap(page, buttons["en"])
    wait_for(page, showing("ready", EN["screen.ready"]))
    assert text_of(page, "hint") == EN["screen.ready.hint"]
    assert js(page, "return document.documentElement.lang") == "en"
    assert buttons["en"].get_attribute("aria-pressed") == "true"
    page.refresh()  # remembered by this browser
    wait_for(page, showing("ready", EN["screen.ready"]))

    tap(page, page.find_element(By.CSS_SELECTOR, '.lang[data-lang="vi"]'))
    wait_for(page, showing("ready", VI["screen.ready"]))
    assert text_of(page, "hint") == VI["screen.ready.hint"]
    assert js(page, "return document.documentElement.lang") == "vi"


def test_screens_for_review_denied_closed_surge_failsafe_and_offline(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    page: webdriver.Chrome,
    shots: Path,
) -> None:
    expired_at = datetime.now(UTC) - timedelta(hours=2)
    # Valid 28 h before it expired (issued 2 h before that), whatever the time of day.
    trust, payload = signed(tmp_path, now=expired_at - timedelta(hours=28), expires_at=expired_at)
    write_frame(frames_dir / "01-expired.png", payload)
    cfg = screen_config(tmp_path, lane={"mode": "auto"}, trust={"files": [trust]})
    kiosk, url = start(kiosks, cfg)
    open_page(page, url + "/")
    wait_for(page, showing("denied", VI["screen.denied"]))
    reasons = shown_reasons(page)
    assert reasons == [VI["reason.expired"]]
    shoot(page, shots, "traveller-denied", ("title", "reasons", "person", "languages"))

    runner = kiosk.app.runner
    for event, screen, name in (
        (SetMode("closed", by="test"), "closed", "closed"),
        (SetMode("surge", by="test"), "surge", "surge"),
        (FaultRaised("camera", "test"), "failsafe", "failsafe"),
    ):
        runner.post(event)
        wait_for(page, showing(screen, VI[f"screen.{screen}"]))
        no_raw_keys(page)
        shoot(page, shots, f"traveller-{name}", ("title", "hint", "languages"))
    assert shown_reasons(page) == [VI["reason.fault_camera"]]

    kiosk.stop()  # the daemon goes away: no old decision may stay on screen
    wait_for(page, showing("offline", VI["screen.offline"]))
    shoot(page, shots, "traveller-offline", ("title", "hint"))


def test_a_failed_vaccination_rule_is_read_in_the_screens_language(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk], page: webdriver.Chrome
) -> None:
    """A DCC one dose short: the traveller reads Vietnam's rule itself, then in English."""
    from edge.rules.book import bundled_rules
    from edge.rules.rules import RuleSet

    from .test_rules import Signer, vaccination

    signer = Signer()
    now = datetime.now(UTC)
    text = signer.sign(vaccination(dn=1), iat=now - timedelta(days=10), exp=now + timedelta(30))
    write_frame(frames_dir / "01-dcc.png", text)
    cfg = screen_config(
        tmp_path,
        lane={"mode": "auto"},
        policy={"accept": ["dcc"]},
        trust={"files": [str(signer.pem(tmp_path / "signer.pem"))]},
    )
    _, url = start(kiosks, cfg)
    rules = RuleSet.load([bundled_rules()]).rules
    (rule,) = [r for r in rules if r.identifier == "VR-VN-0002"]
    open_page(page, url + "/")
    wait_for(page, showing("denied", VI["screen.denied"]))
    assert shown_reasons(page) == [rule.descriptions["vi"]]
    tap(page, page.find_element(By.CSS_SELECTOR, '.lang[data-lang="en"]'))
    wait_for(page, showing("denied", EN["screen.denied"]))
    assert shown_reasons(page) == [rule.descriptions["en"]]
    no_raw_keys(page)


# -- deploy/kiosk: the Pi's side ---------------------------------------------------------

DEPLOY = REPO / "deploy" / "kiosk"


def test_the_pi_launcher_waits_for_the_screen_then_starts_chromium_on_it(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    _, url = start(kiosks, screen_config(tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "chromium-args"
    fake = bin_dir / "chromium"  # a browser that notes its arguments and exits at once
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{called}"\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "CHECKPOINT_KIOSK_URL": url + "/?camera=left",
    }
    launcher = subprocess.Popen(
        [str(DEPLOY / "checkpoint-kiosk-browser"), "--extra"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert launcher.stderr is not None
        for line in launcher.stderr:  # the launcher says when its browser has exited
            if "the browser exited" in line:
                break
        else:
            pytest.fail("the launcher never started the browser")
    finally:
        os.killpg(launcher.pid, signal.SIGTERM)
        launcher.wait(10)
    args = called.read_text().splitlines()
    assert args[0] == "--kiosk"
    assert f"--user-data-dir={tmp_path}/.local/share/checkpoint-kiosk/chromium" in args
    assert {"--noerrdialogs", "--hide-crash-restore-bubble", "--no-first-run"} <= set(args)
    assert args[-2:] == ["--extra", url + "/?camera=left"]


def test_the_pi_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (tools/setup --test installs it)")
    for script, shell in (
        ("checkpoint-kiosk-browser", "bash"),
        ("install-kiosk.sh", "bash"),
        ("labwc/autostart", "sh"),  # labwc runs it with sh
    ):
        path = DEPLOY / script
        assert shell == "sh" or os.access(path, os.X_OK), f"{script} is not executable"
        result = subprocess.run(
            [shellcheck, "-s", shell, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
