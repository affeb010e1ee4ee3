"""Decode and scan-to-decision timings on 1280x720 frames.

Prints, for each decoder:
- the median decode time per frame, for frames with a QR code and without;
- the median time from the first frame that shows a code to the lane's
  decision, through the real pipeline (latest-frame slot, scanner thread, lane
  thread, passage fsynced to a store in a temporary directory), in ``auto``
  mode with gpiozero mock pins.

Run: ``.venv/bin/python bench/decode_bench.py [--frames N] [--decisions N]``
"""

from __future__ import annotations

import argparse
import io
import logging
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import segno

from edge import config as config_mod
from edge.app import App
from edge.devices.frames import Frame
from edge.lane import RecordPassage
from edge.scan.decoder import Decoder, PyzbarDecoder, ZxingDecoder

SIZE = (720, 1280)
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


def scan_to_decision_ms(decoder_name: str, decisions: int, workdir: Path) -> float:
    empty = workdir / f"frames-{decoder_name}"
    empty.mkdir()
    cfg = config_mod.from_mapping(
        {
            "device": {"id": "bench"},
            "camera": {"source": f"images:{empty}"},
            "scan": {"decoder": decoder_name},
            "gpio": {"pin_factory": "mock"},
            "lane": {"mode": "auto"},
            "mqtt": {"host": "127.0.0.1", "port": 9, "ack": "broker"},
            "store": {"dir": str(workdir / f"store-{decoder_name}")},
        },
        base_dir=workdir,
    )
    app = App(cfg)
    decided = threading.Event()
    app.runner.add_listener(
        lambda _e, actions, _s: (
            decided.set() if any(isinstance(a, RecordPassage) for a in actions) else None
        )
    )
    app.start()
    frames = [frame_with(payload(n), n) for n in range(decisions)]
    times = []
    try:
        for n, image in enumerate(frames):
            decided.clear()
            t = time.monotonic()
            app.slot.put(Frame(image, n, t + 10.0 * n))  # frame times far apart: new presentations
            if not decided.wait(10):
                raise RuntimeError("no decision within 10 s")
            times.append((time.monotonic() - t) * 1000)
    finally:
        app.stop()
    return statistics.median(times)


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
    print(f"{'decoder':8} {'code ms':>9} {'no code ms':>11} {'frame->decision ms':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for decoder in (ZxingDecoder(), PyzbarDecoder()):
            hit = median_ms(decoder, with_code)
            miss = median_ms(decoder, without)
            assert decoder.decode(with_code[0]), f"{decoder.name} missed the benchmark code"
            e2e = scan_to_decision_ms(decoder.name, args.decisions, Path(tmp))
            print(f"{decoder.name:8} {hit:9.1f} {miss:11.1f} {e2e:19.1f}")


if __name__ == "__main__":
    main()
