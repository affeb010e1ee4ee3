"""The traveller's pictograms (issue 17): one per screen, large, and distinct by
shape alone, for a traveller who does not read and may not tell colours apart.

Every screen the lane can show (``edge.core.events.Screen``), "offline" (the
page's own) and any other the stylesheet names must map to its own small,
self-contained SVG in kiosk.css. In the real headless Chromium, on the
traveller's page served by a real kiosk, with the shipped stylesheet and SVGs,
each screen is put on as traveller.js does (``body.dataset.screen``; the lane's
own routes to each screen are test_kiosk_browser's) at 800x480 and 1920x1080,
and its ``.icon`` is photographed. The photograph is turned to grayscale and cut
into figure and ground at its own threshold (Otsu), the ground being the side
the border falls on. Each figure must stand clear of its ground in grayscale,
span a good part of the screen's smaller side, and differ from every other
screen's figure (cropped to its bounds, scaled to one size) by a Jaccard
distance of at least ``MIN_DISTANCE``; the "ready" arrow is also turned to each
side a camera can be on. The photographs, the figures side by side and every
distance go to ``$CHECKPOINT_EDGE_SCREENSHOTS`` (default: the test's tmp_path).
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import cv2
import numpy as np
import pytest
from selenium import webdriver

from edge.config import Config
from edge.core.events import Screen
from edge.kiosk.server import PACKAGE

from . import test_kiosk_browser as kb
from .test_e2e import Kiosk

browser = kb.browser  # the fixtures: one headless Chromium for the module,
page = kb.page  # a blank page per test (no console error afterwards),
shots = kb.shots  # the screenshot folder
kiosks = kb.kiosks  # and an App on mock pins

STATIC = PACKAGE / "static"
CSS = re.sub(r"/\*.*?\*/", "", (STATIC / "kiosk.css").read_text(encoding="utf-8"), flags=re.S)
# The traveller's screen <-> its pictogram: `.traveller[data-screen="x"] .icon`
# rules setting a background-image (one or more selectors to a rule).
RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
ICON_SELECTOR = re.compile(r'\.traveller\[data-screen="(\w+)"\] \.icon')
ICON_URL = re.compile(r'background-image:\s*url\("([\w-]+\.svg)"\)')
NAMED = re.compile(r'\.traveller\[data-screen="(\w+)"\]')
SCREENS = sorted({*get_args(Screen), "offline", *NAMED.findall(CSS)})

MIN_SIDE = 0.33  # the icon box, a fraction of the viewport's smaller side (36vmin)
MIN_SIDE_COMPACT = 0.25  # when the reasons need the room (26vmin)
MIN_FIGURE = 0.28  # the drawn figure's larger extent, ditto
MIN_CONTRAST = 80  # grey levels (0-255) between figure and ground
MIN_DISTANCE = 0.35  # Jaccard distance between two screens' figures
NORM = 64  # figures are compared at NORM x NORM pixels


@dataclass(frozen=True)
class View:
    """A screen as photographed, the camera on one side ("ready" turns its arrow)."""

    name: str
    screen: str
    camera: str = "up"


VIEWS = [View(s, s) for s in SCREENS] + [
    View(f"ready-{side}", "ready", side) for side in ("down", "left", "right")
]

SVG = "{http://www.w3.org/2000/svg}"
FORBIDDEN = {"text", "image", "script", "foreignObject", "use", "style", "a"}


def icon_files() -> dict[str, str]:
    """Screen -> the SVG file its ``.icon`` shows, read from kiosk.css."""
    found: dict[str, str] = {}
    for selectors, body in RULE.findall(CSS):
        url = ICON_URL.search(body)
        if url is None:
            continue
        for selector in selectors.split(","):
            match = ICON_SELECTOR.fullmatch(selector.strip())
            if match:
                found[match.group(1)] = url.group(1)
    return found


def test_every_screen_has_its_own_self_contained_pictogram() -> None:
    files = icon_files()
    assert {"ready", "group", "denied", "offline"} <= set(SCREENS)  # the lists were read
    missing = [screen for screen in SCREENS if screen not in files]
    assert missing == [], f"screens without a pictogram in kiosk.css: {missing}"
    shared = {f: [s for s in SCREENS if files[s] == f] for f in set(files.values())}
    assert {f: s for f, s in shared.items() if len(s) > 1} == {}, "one pictogram per screen"
    for screen in SCREENS:
        svg = STATIC / files[screen]
        text = svg.read_bytes()
        root = ET.fromstring(text)
        assert root.tag == f"{SVG}svg", svg.name
        assert root.get("viewBox") == "0 0 100 100", svg.name
        tags = {element.tag.removeprefix(SVG) for element in root.iter()}
        assert not tags & FORBIDDEN, f"{svg.name}: no text, images, scripts or links"
        attributes = " ".join(" ".join(e.attrib.values()) for e in root.iter())
        assert "url(" not in attributes, f"{svg.name}: nothing from elsewhere"
        assert not any("href" in k for e in root.iter() for k in e.attrib), svg.name
        assert len(text) < 2048, f"{svg.name}: small and hand-written"


# -- in the browser --------------------------------------------------------------------

SHOW = """
const [screen, camera, compact, done] = arguments;
document.body.dataset.screen = screen;
document.body.dataset.camera = camera;
document.body.classList.toggle("compact", compact);
const icon = document.querySelector(".traveller .icon");
const url = /url\\("?([^")]*)"?\\)/.exec(getComputedStyle(icon).backgroundImage);
const image = new Image();
image.src = url ? url[1] : "";
const painted = () => requestAnimationFrame(() => requestAnimationFrame(() => {
  const r = icon.getBoundingClientRect();
  done({url: url && url[1], shown: icon.checkVisibility(), box: [r.width, r.height]});
}));
image.decode().then(painted, painted);
"""


def show(driver: webdriver.Chrome, view: View, compact: bool = False) -> dict[str, Any]:
    """Put the traveller's page on a screen (the camera on a side) and return once its
    pictogram is painted: its address, whether it shows, and its box (CSS pixels)."""
    found: dict[str, Any] = driver.execute_async_script(SHOW, view.screen, view.camera, compact)
    return found


def photograph(driver: webdriver.Chrome, view: View, shots: Path) -> np.ndarray:
    """The view's pictogram, checked to be large and to stand out in grayscale: its
    normalised figure."""
    width, height = kb.js(driver, "return [innerWidth, innerHeight]")
    vmin = min(width, height)
    compact = show(driver, view, compact=True)
    assert min(compact["box"]) >= MIN_SIDE_COMPACT * vmin, (view, compact)
    shown = show(driver, view)
    assert shown["url"].endswith("/" + icon_files()[view.screen]), (view, shown)
    assert shown["shown"], f"{view}: the pictogram is hidden at {width}x{height}"
    assert min(shown["box"]) >= MIN_SIDE * vmin, (view, shown)
    png = driver.find_element("css selector", ".traveller .icon").screenshot_as_png
    # the live state did not take the page back meanwhile: this was the view's screen
    assert kb.js(driver, "return document.body.dataset.screen") == view.screen
    (shots / f"pictogram-{view.name}-{width}x{height}.png").write_bytes(png)
    mask, contrast = figure(png)
    assert contrast >= MIN_CONTRAST, f"{view}: figure and ground alike in grayscale"
    assert extent(mask) >= MIN_FIGURE * vmin, f"{view}: a small figure at {width}x{height}"
    return normalised(mask)


def figure(png: bytes) -> tuple[np.ndarray, float]:
    """(the figure as a boolean mask, its grey-level contrast with the ground) of a
    pictogram's screenshot: grayscale, split at Otsu's threshold, the ground being
    the side most of the border falls on."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "no screenshot"
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    _, split = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light = split > 0
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    mask = ~light if border.mean() > 0.5 else light
    contrast = abs(float(gray[mask].mean()) - float(gray[~mask].mean())) if mask.any() else 0.0
    return mask, contrast


def normalised(mask: np.ndarray) -> np.ndarray:
    """The figure cropped to its bounds, centred on a square, at NORM x NORM."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.uint8) * 255
    side = max(crop.shape)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square = np.zeros((side, side), np.uint8)
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return np.asarray(cv2.resize(square, (NORM, NORM), interpolation=cv2.INTER_AREA) >= 128)


def extent(mask: np.ndarray) -> int:
    """The figure's larger extent, in pixels."""
    ys, xs = np.nonzero(mask)
    return int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard distance: 0 for the same shape, 1 for shapes with nothing in common."""
    return 1.0 - float((a & b).sum()) / float((a | b).sum())


def montage(figures: dict[View, np.ndarray]) -> np.ndarray:
    """The normalised figures side by side (white on black), for review."""
    tiles = [np.pad(f.astype(np.uint8) * 255, 4) for f in figures.values()]
    return np.hstack(tiles)


@pytest.fixture
def reduced_motion(page: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The page as for a traveller who asked for less motion: the "ready" arrow holds
    still for its photograph (the nudge is checked elsewhere: test_kiosk_browser)."""
    features = [{"name": "prefers-reduced-motion", "value": "reduce"}]
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    yield page
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


@kb.pytestmark
def test_each_screens_pictogram_is_large_and_distinct_by_shape_in_grayscale(
    tmp_path: Path,
    frames_dir: Path,
    kiosks: Callable[[Config], Kiosk],
    reduced_motion: webdriver.Chrome,
    shots: Path,
    record_property: Callable[[str, object], None],
) -> None:
    driver = reduced_motion
    _, url = kb.start(kiosks, kb.screen_config(tmp_path))
    kb.open_page(driver, url + "/")
    kb.wait_for(driver, kb.showing("ready", kb.VI["screen.ready"]))
    report: list[str] = []
    for width, height in kb.SIZES:
        kb.viewport(driver, width, height)
        kb.wait_for(driver, lambda d, w=width: kb.js(d, "return innerWidth") == w)
        figures = {view: photograph(driver, view, shots) for view in VIEWS}
        cv2.imwrite(str(shots / f"pictograms-grayscale-{width}x{height}.png"), montage(figures))
        distances = {
            (a.name, b.name): distance(figures[a], figures[b])
            for a, b in itertools.combinations(VIEWS, 2)
            if a.screen != b.screen
        }
        closest = min(distances, key=distances.__getitem__)
        report += [f"{width}x{height} {a} {b} {d:.3f}" for (a, b), d in sorted(distances.items())]
        (shots / "pictograms-distances.txt").write_text("\n".join(report) + "\n", "utf-8")
        record_property(f"closest_{width}x{height}", f"{closest} {distances[closest]:.3f}")
        alike = {pair: round(d, 3) for pair, d in distances.items() if d < MIN_DISTANCE}
        assert alike == {}, f"pictograms alike in shape at {width}x{height}: {alike}"
