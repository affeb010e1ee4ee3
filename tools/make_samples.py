"""Render the sample camera frames bundled for the kiosk simulation (edge/samples/).

Run from the repository root: ``.venv/bin/python tools/make_samples.py``.
Each sample is a 1280x720 grayscale scene; some hold a QR code the way a
phone screen shows it, one holds none. The payloads carry no personal data.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import segno

OUT = Path(__file__).resolve().parent.parent / "edge" / "samples"
SIZE = (720, 1280)


def scene(seed: int) -> np.ndarray:
    """A plain, slightly uneven background, like a lane seen by the kiosk camera."""
    y, x = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    base = 120 + 40 * np.sin(x / 300.0 + seed) + 20 * np.cos(y / 200.0)
    return np.clip(base, 0, 255).astype(np.uint8)


def with_code(payload: str, seed: int, scale: int, at: tuple[int, int]) -> np.ndarray:
    qr = segno.make_qr(payload, error="m")
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=4)
    code = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    # a phone: a dark bezel around a bright screen showing the code
    frame = scene(seed)
    top, left = at
    h, w = code.shape
    frame[top - 30 : top + h + 30, left - 20 : left + w + 20] = 25
    frame[top : top + h, left : left + w] = code
    return frame


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    samples = {
        "01-code.png": with_code(
            "checkpoint-edge sample 1: not a travel declaration", 1, 6, (180, 420)
        ),
        "02-no-code.png": scene(2),
        "03-code.png": with_code(
            "checkpoint-edge sample 3: not a travel declaration", 3, 5, (220, 640)
        ),
    }
    for name, image in samples.items():
        cv2.imwrite(str(OUT / name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(OUT / name)


if __name__ == "__main__":
    main()
