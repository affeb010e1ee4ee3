"""Decode and scan-to-decision timings on 1280x720 frames.

Prints, for each decoder:
- the median decode time per frame, for frames with a QR code and without;
- the time from a code coming into view to the lane's decision, median and
  95th percentile, through the whole kiosk: a camera running at 30 fps (the
  FrameSource interface, pacing itself like a sensor) read by the real capture
  thread, the latest-frame slot, the scanner thread, verification of a signed
  declaration (the bundled sample, against the demo trust list), the policy,
  the lane thread and the passage fsynced to a store in a temporary
  directory, in ``auto`` mode with gpiozero mock pins. The code comes into
  view at a random moment between two frames, as a traveller's does, so the
  wait for the next frame is part of the time.

Run: ``.venv/bin/python bench/decode_bench.py [--frames N] [--decisions N]``
"""

from __future__ import annotations

import argparse
import io
import logging
import platform
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import segno

from edge import config as config_mod
from edge.core.lane import RecordPassage, State
from edge.devices.frames import Gray
from edge.scan.decoder import Decoder, PyzbarDecoder, ZxingDecoder
from edge.service.app import App

SIZE = (720, 1280)
SAMPLES = Path(__file__).resolve().parent.parent / "edge" / "samples"
CAMERA_FPS = 30.0
# A movement declaration is about this long once signed and base45-encoded.
PAYLOAD_LEN = 400


def frame_with(payload: bytes | None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = rng.normal(128, 20, SIZE).clip(0, 255).astype(np.uint8)  # a textured scene
    if payload is None:
        return frame
    qr = segno.make_qr(payload, error="m")
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=4, border=4)
    code = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    h, w = code.shape
    top, left = (SIZE[0] - h) // 2, (SIZE[1] - w) // 3
    frame[top : top + h, left : left + w] = code
    return frame


def payload(n: int) -> bytes:
    body = f"BENCH{n:06d}".encode()
    return (body * (PAYLOAD_LEN // len(body) + 1))[:PAYLOAD_LEN]


def median_ms(decoder: Decoder, frames: list[np.ndarray]) -> float:
    decoder.decode(frames[0])  # warm-up
    times = []
    for f in frames:
        t = time.perf_counter()
        decoder.decode(f)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


class BenchCamera:
    """A camera (the FrameSource interface) at CAMERA_FPS: ``read`` waits for the next
    frame time, like a sensor's exposure, and returns the code while it is in view."""

    description = "bench camera"
    fps = CAMERA_FPS
    self_paced = True

    def __init__(self, code: Gray, empty: Gray) -> None:
        self.code, self.empty = code, empty
        self.in_view = threading.Event()
        self._next = 0.0

    def open(self) -> None:
        self._next = time.monotonic()

    def read(self) -> Gray | None:
        self._next += 1.0 / self.fps
        time.sleep(max(0.0, self._next - time.monotonic()))  # the sensor's frame period
        return self.code if self.in_view.is_set() else self.empty

    def close(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def scan_to_decision_ms(decoder_name: str, decisions: int, workdir: Path) -> list[float]:
    """Code in view -> decision recorded, for ``decisions`` presentations (ms each)."""
    cv2_image = cv2.imread(str(SAMPLES / "01-declaration.png"), cv2.IMREAD_GRAYSCALE)
    code = np.ascontiguousarray(cv2_image, dtype=np.uint8)
    camera = BenchCamera(code, np.full_like(code, 128))
    cfg = config_mod.from_mapping(
        {
            "device": {"id": "bench"},
            "camera": {"source": f"images:{workdir}"},  # replaced by the bench camera
            "scan": {"decoder": decoder_name},
            "gpio": {"pin_factory": "mock"},
            "lane": {"mode": "auto", "open_s": 0.2},
            "mqtt": {"host": "127.0.0.1", "port": 9, "ack": "broker"},
            "store": {"dir": str(workdir / f"store-{decoder_name}")},
            "trust": {"files": [str(SAMPLES / "demo-trust.json")]},
            # the sample is long-lived; the same traveller again is no replay here
            "policy": {"max_declaration_age_h": 1_000_000, "replay_window_s": 0},
        },
        base_dir=workdir,
    )
    app = App(cfg, source=camera)
    decided = threading.Event()
    outcomes: list[str] = []

    def listen(_e: object, actions: list[object], _s: object) -> None:
        for action in actions:
            if isinstance(action, RecordPassage):
                outcomes.append(action.draft.decision)
                decided.set()

    app.runner.add_listener(listen)
    app.start()
    rng = random.Random(1)
    times = []
    try:
        for _ in range(decisions):
            time.sleep(rng.uniform(0, 1 / CAMERA_FPS))  # any moment between two frames
            decided.clear()
            t = time.perf_counter()
            camera.in_view.set()
            if not decided.wait(10):
                raise RuntimeError("no decision within 10 s")
            times.append((time.perf_counter() - t) * 1000)
            camera.in_view.clear()
            # out of view long enough to be a new presentation, and the lane ready again
            time.sleep(cfg.scan.leave_s + 0.1)
            while app.runner.state is not State.READY:
                time.sleep(0.05)
    finally:
        app.stop()
    if set(outcomes) != {"approved"}:
        raise RuntimeError(f"the signed sample was not approved every time: {outcomes}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per decode measurement")
    parser.add_argument("--decisions", type=int, default=30, help="scans per decision measurement")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    with_code = [frame_with(payload(n), n) for n in range(args.frames)]
    without = [frame_with(None, n) for n in range(args.frames)]
    print(f"checkpoint-edge decode benchmark: {platform.machine()}, {platform.python_version()}")
    print(
        f"frames {SIZE[1]}x{SIZE[0]}, QR payload {PAYLOAD_LEN} bytes (version "
        f"{segno.make_qr(payload(0), error='m').version}, ECC M)"
    )
    print(
        f"{'decoder':8} {'code ms':>9} {'no code ms':>11} {'in view->decision ms':>21}"
        f" {'p95':>7}  (camera {CAMERA_FPS:g} fps, signed declaration)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for decoder in (ZxingDecoder(), PyzbarDecoder()):
            hit = median_ms(decoder, with_code)
            miss = median_ms(decoder, without)
            assert decoder.decode(with_code[0]), f"{decoder.name} missed the benchmark code"
            e2e = scan_to_decision_ms(decoder.name, args.decisions, Path(tmp))
            p95 = percentile(e2e, 0.95)
            median = statistics.median(e2e)
            print(f"{decoder.name:8} {hit:9.1f} {miss:11.1f} {median:21.1f} {p95:7.1f}")


if __name__ == "__main__":
    main()
