"""The screen speaking, in the real browser: Debian's headless Chromium on a real App,
its media events observed from the first line of the page on (a capture listener on
the document, installed through the DevTools protocol before any script of the page).

Each new state is said once in the screen's language (the denied screen, then its
main reason; the next traveller refused for the same reason hears it too), the same
state sent again is not said again, a switch of language says it again in the new
one, news that comes while a decision is said waits until it is said to its end,
reason included (only the newest news), a prompt ("ready") is cut short by news, and
no clip ever plays over another. The clips are short tones of a language pack
(``[kiosk] packs``) so that the test is quick; the real voices are measured in
test_voice.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from edge import credtools
from edge.config import Config
from edge.core.lane import SetMode
from edge.kiosk import voice
from edge.scan import declaration

from . import test_kiosk_browser as kb
from .conftest import write_frame
from .test_declaration import make_declaration
from .test_e2e import Kiosk
from .test_voice import write_pack

browser = kb.browser  # the fixtures: one headless Chromium for the module, its page,
page = kb.page  # and an App on mock pins
kiosks = kb.kiosks
pytestmark = kb.pytestmark

OBSERVER = """
window.__media = [];
for (const type of ["play", "playing", "pause", "ended", "error"]) {
  document.addEventListener(type, (event) => {
    const el = event.target;
    const url = new URL(el.currentSrc || el.src || "about:blank");
    const playing = [...document.querySelectorAll("audio, video")].filter((m) => !m.paused);
    window.__media.push(
      {type, id: el.id, clip: url.pathname, playing: playing.length, t: performance.now()});
  }, true);
}
"""
LONG_PROMPT_S = 2.0  # "ready": long enough to be cut short by news
DECISION_S = 1.5  # "denied": long enough for news to come while it is said
CLIP_S = 0.3


@pytest.fixture
def observed(page: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The page, every media event of the next documents recorded in window.__media."""
    added = page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVER})
    yield page
    page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)


def packs(tmp_path: Path) -> Path:
    folder = tmp_path / "packs"
    for code in ("vi", "en"):
        clips = dict.fromkeys(voice.SCREENS, CLIP_S)
        clips |= {"ready": LONG_PROMPT_S, "denied": DECISION_S, "reason.expired": CLIP_S}
        write_pack(folder / code, code, clips, voice.bundled(code))
    return folder


def media(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = kb.js(driver, "return window.__media || []")
    return events


def said(driver: webdriver.Chrome, clip: str, event: str = "ended") -> Callable[[Any], bool]:
    return lambda d: any(e["type"] == event and e["clip"] == clip for e in media(d))


def at(event: dict[str, Any]) -> float:
    when: float = event["t"]
    return when


def plays(events: list[dict[str, Any]]) -> list[str]:
    return [e["clip"] for e in events if e["type"] == "play"]


def assert_never_over_itself(events: list[dict[str, Any]]) -> None:
    """Every clip ends (ended, pause or error) before the next one plays, all of them in
    the page's one voice element, and never two media playing at once."""
    current: str | None = None
    for e in events:
        assert e["id"] == "voice", e
        assert e["playing"] <= 1, e
        if e["type"] == "play":
            assert current is None, f"{e['clip']} played over {current}: {events}"
            current = e["clip"]
        elif e["type"] in ("ended", "pause", "error") and e["clip"] == current:
            current = None


def expired_pair(tmp_path: Path) -> tuple[str, str, str]:
    """(trust list, two travellers' declarations that expired 2 h ago), one issuer."""
    made = credtools.keys_new("VN-HN", "ES256", tmp_path / "keys")
    key, kid = credtools.load_private_key(Path(made["private_key"]))
    expired_at = datetime.now(UTC) - timedelta(hours=2)
    # valid 28 h before it expired (issued 2 h before that), whatever the time of day
    decl = replace(make_declaration(now=expired_at - timedelta(hours=28)), expires_at=expired_at)
    other = replace(decl, declaration_id="WXYZ-WXYZ-WXYZ", id_number="001200054321")
    return (
        str(made["trust_list"]),
        declaration.issue(decl, key, kid),
        declaration.issue(other, key, kid),
    )


def test_each_state_is_said_once_in_its_language_and_never_over_another(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    observed: webdriver.Chrome,
) -> None:
    page = observed
    trust, first, second = expired_pair(tmp_path)
    cfg = kb.screen_config(
        tmp_path,
        lane={"mode": "auto"},
        trust={"files": [trust]},
        camera={"loop": True, "hold_s": 0.1, "gap_s": 0.1},
        kiosk={"packs": str(packs(tmp_path)), "voice_volume": 40},
    )
    write_frame(frames_dir / "00-empty.png", None)  # nobody there yet
    kiosk, url = kb.start(kiosks, cfg)
    kb.open_page(page, url + "/")
    kb.wait_for(page, said(page, "/voice/vi/ready"))
    assert kb.js(page, "return document.getElementById('voice').volume") == pytest.approx(0.4)

    # a refused traveller hears the screen, then why
    kb.show_code(frames_dir, "01-expired.png", first)
    kb.wait_for(page, kb.showing("denied", kb.VI["screen.denied"]))
    kb.wait_for(page, said(page, "/voice/vi/reason.expired"))
    (frames_dir / "01-expired.png").unlink()  # the traveller steps back
    assert plays(media(page)) == ["/voice/vi/ready", "/voice/vi/denied", "/voice/vi/reason.expired"]

    # the same state sent again is not said again; another language says it again
    model = kiosk.app.kiosk.model if kiosk.app.kiosk is not None else None
    assert model is not None
    model.touch()  # every page is sent the state again
    kb.tap(page, page.find_element(By.CSS_SELECTOR, '.lang[data-lang="en"]'))
    kb.wait_for(page, kb.showing("denied", kb.EN["screen.denied"]))
    kb.wait_for(page, said(page, "/voice/en/reason.expired"))
    assert plays(media(page))[3:] == ["/voice/en/denied", "/voice/en/reason.expired"]

    # the next traveller, refused for the same reason: the same screen, and yet news to
    # them, said to its end, reason included, though news comes while it is said; of
    # two pieces of news meanwhile, only the newer is said after it
    kb.show_code(frames_dir, "02-expired.png", second)
    kb.wait_for(page, lambda d: plays(media(d)).count("/voice/en/denied") == 2)
    (frames_dir / "02-expired.png").unlink()
    runner = kiosk.app.runner
    runner.post(SetMode("closed", by="test"))
    runner.post(SetMode("surge", by="test"))
    kb.wait_for(page, kb.showing("surge", kb.EN["screen.surge"]))
    news_shown: float = kb.js(page, "return performance.now()")
    kb.wait_for(page, said(page, "/voice/en/surge"))
    events = media(page)
    reason_end = [at(e) for e in events if e["type"] == "ended" and "reason" in e["clip"]][-1]
    assert news_shown < reason_end  # the news was on screen while the reason was said
    assert reason_end <= next(at(e) for e in events if e["type"] == "play" and "surge" in e["clip"])
    assert "/voice/en/closed" not in plays(events)

    # a prompt is cut short by news
    runner.post(SetMode("auto", by="test"))
    kb.wait_for(page, said(page, "/voice/en/ready", "playing"))
    runner.post(SetMode("closed", by="test"))
    kb.wait_for(page, lambda d: plays(media(d))[-1] == "/voice/en/closed")
    kb.wait_for(page, said(page, "/voice/en/ready", "pause"))
    events = media(page)
    assert not [e for e in events if e["type"] == "ended" and e["clip"] == "/voice/en/ready"]
    assert_never_over_itself(media(page))


def test_a_silent_kiosk_asks_for_no_clip(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    observed: webdriver.Chrome,
) -> None:
    page = observed
    cfg = kb.screen_config(tmp_path, kiosk={"packs": str(packs(tmp_path)), "voice": False})
    kiosk, url = kb.start(kiosks, cfg)
    kb.open_page(page, url + "/")
    kb.wait_for(page, kb.showing("ready", kb.VI["screen.ready"]))
    kiosk.app.runner.post(SetMode("closed", by="test"))
    kb.wait_for(page, kb.showing("closed", kb.VI["screen.closed"]))
    # render() would have set the element's source before returning: none, no events
    assert kb.js(page, "return document.getElementById('voice').getAttribute('src')") is None
    assert media(page) == []
