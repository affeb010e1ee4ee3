"""One scan per presentation of a code, from real decoded frames."""

from __future__ import annotations

import queue

import numpy as np

from edge.core.model import Credential
from edge.devices.frames import Frame, LatestFrame
from edge.scan.credentials import Verifier
from edge.scan.decoder import ZxingDecoder
from edge.scan.scanner import ScanThread, SeenFilter
from edge.scan.trust import TrustStore

from .conftest import qr_frame

READ = Verifier(TrustStore).read  # an empty trust store: only the shape of codes matters here


def test_seen_filter_one_scan_while_in_view() -> None:
    f = SeenFilter(leave_s=0.5)
    assert f.update([b"a"], 0.0) == [b"a"]
    assert f.update([b"a"], 0.1) == []
    assert f.update([], 0.3) == []  # a missed frame is not leaving
    assert f.update([b"a"], 0.5) == []
    assert f.update([b"a", b"b"], 0.6) == [b"b"]
    assert f.update([], 1.2) == []
    assert f.update([b"a"], 1.3) == [b"a"]  # out of view for 0.7 s: a new presentation


def test_seen_filter_duplicates_within_a_frame() -> None:
    assert SeenFilter(0.5).update([b"a", b"a"], 0.0) == [b"a"]


def test_latest_frame_drops_old_frames() -> None:
    slot = LatestFrame()
    img = qr_frame(None, (10, 10))
    for n in range(3):
        slot.put(Frame(img, n, float(n)))
    got = slot.get(timeout=0)
    assert got is not None
    assert got.number == 2
    assert slot.dropped == 2
    assert slot.get(timeout=0) is None
    slot.close()
    assert slot.get(timeout=None) is None


def test_a_code_held_in_view_scans_once_per_presentation() -> None:
    scans: list[Credential] = []
    scanner = ScanThread(
        LatestFrame(), ZxingDecoder(), leave_s=0.5, on_scan=scans.append, read=READ
    )
    code, empty = qr_frame(b"traveller-1"), qr_frame(None)
    # 10 fps: 1 s of the code, 1 s empty, the code again for 0.5 s
    timeline = [(code, t / 10) for t in range(10)] + [(empty, 1 + t / 10) for t in range(10)]
    timeline += [(code, 2 + t / 10) for t in range(5)]
    for n, (image, t) in enumerate(timeline):
        scanner.process(Frame(image, n, t))
    assert len(scans) == 2
    assert scans[0].sha256 == scans[1].sha256
    assert scans[0].kind == "unrecognised"
    assert scanner.frames == len(timeline)
    assert scanner.median_decode_ms() is not None


def test_a_broken_frame_is_counted_not_fatal() -> None:
    scans: list[Credential] = []
    scanner = ScanThread(
        LatestFrame(), ZxingDecoder(), leave_s=0.5, on_scan=scans.append, read=READ
    )
    scanner.process(Frame(np.zeros((4, 4, 4, 4), np.uint8), 1, 0.0))  # not an image
    scanner.process(Frame(qr_frame(b"after"), 2, 0.1))
    assert scanner.errors == 1
    assert len(scans) == 1


def test_scan_thread_takes_frames_from_the_slot() -> None:
    slot = LatestFrame()
    scans: queue.Queue[Credential] = queue.Queue()
    thread = ScanThread(slot, ZxingDecoder(), leave_s=0.5, on_scan=scans.put, read=READ)
    thread.start()
    slot.put(Frame(qr_frame(b"through-the-slot"), 1, 0.0))
    scanned = scans.get(timeout=5)
    thread.stop()
    thread.join(2)
    assert not thread.is_alive()
    assert scanned.sha256 == Credential.from_raw("x", b"through-the-slot").sha256
