"""What the decoder reads on degraded photos, and what it costs per frame.

zxing's labelled photos (``../shared/testdata/qr-photos``: qrcode-1, hand-held,
and qrcode-3, tilted) all read at full quality, so this derives a harder set
from them, deterministically (fixed seeds, nothing stored): each photo placed in
a 1280x720 camera frame over a textured scene, then one of the degradations a
kiosk camera sees (:data:`VARIANTS`): the code further away (smaller), motion
blur, defocus, sensor noise, low contrast with glare, JPEG re-compression, and
a mix of them.

Prints:

- reads per set and variant for the raw decoder (zxing-cpp called once, as the
  kiosk did before) and the kiosk's chain (:class:`ZxingDecoder`, which looks
  again at codes it located but could not read), plus candidate chains with
  ``--candidates``;
- CPU per frame (thread CPU time, ms) on idle frames (no code: a textured
  scene, a flat one, the photos with their code painted out) and on frames with
  a readable code, raw and chain measured in the same process in interleaved
  rounds: median over rounds, [min, max], the ratio to raw, and the share of one
  core at 30 fps.

Run: ``.venv/bin/python bench/photo_bench.py [--rounds 7] [--candidates] [--every N]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge.scan.decoder import ZxingDecoder  # noqa: E402

PHOTOS = REPO.parent / "shared" / "testdata" / "qr-photos"
SETS = ("qrcode-1", "qrcode-3")
FRAME = (720, 1280)  # the kiosk's default camera frame (height, width)

Gray = np.ndarray


def photo_cases(root: Path = PHOTOS) -> list[tuple[str, Gray, bytes]]:
    """(set/name, grayscale photo, expected bytes) for every labelled photo, sorted."""
    cases = []
    for folder in SETS:
        for image in sorted((root / folder).iterdir()):
            if image.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
                gray = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
                cases.append(
                    (f"{folder}/{image.name}", gray, image.with_suffix(".txt").read_bytes())
                )
    return cases


def scene(seed: int, size: tuple[int, int] = FRAME) -> Gray:
    """A textured background: smooth blotches around mid-gray."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.normal(128, 20, (h // 8 + 1, w // 8 + 1))
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 255).astype(np.uint8)


def place(photo: Gray, scale: float, seed: int, size: tuple[int, int] = FRAME) -> Gray:
    """``photo`` (fitted to 640x480 first) scaled by ``scale`` somewhere in a scene."""
    h, w = photo.shape
    fit = min(640 / w, 480 / h, 1.0) * scale
    if fit != 1.0:
        photo = cv2.resize(
            photo, (max(1, round(w * fit)), max(1, round(h * fit))), interpolation=cv2.INTER_AREA
        )
    frame = scene(seed, size)
    rng = np.random.default_rng(seed)
    ph, pw = photo.shape
    top = int(rng.integers(0, size[0] - ph + 1))
    left = int(rng.integers(0, size[1] - pw + 1))
    frame[top : top + ph, left : left + pw] = photo
    return frame


def motion(image: Gray, length: int, seed: int) -> Gray:
    """Linear motion blur over ``length`` pixels at a seeded angle."""
    angle = np.random.default_rng(seed).uniform(0, 180)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def defocus(image: Gray, sigma: float) -> Gray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def noise(image: Gray, sigma: float, seed: int) -> Gray:
    """Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    grain = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return (image + grain).clip(0, 255).astype(np.uint8)


def jpeg(image: Gray, quality: int) -> Gray:
    _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def glare(image: Gray, contrast: float, seed: int) -> Gray:
    """Contrast cut to ``contrast`` around the mean, plus a bright seeded blob."""
    rng = np.random.default_rng(seed)
    h, w = image.shape
    f = image.astype(np.float32)
    f = (f - f.mean()) * contrast + f.mean()
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy = np.exp(-((np.arange(h, dtype=np.float32) - cy) ** 2) / (2 * (0.15 * w) ** 2))
    xx = np.exp(-((np.arange(w, dtype=np.float32) - cx) ** 2) / (2 * (0.15 * w) ** 2))
    f += np.outer(yy, xx).astype(np.float32) * 120
    return noise(f.clip(0, 255).astype(np.uint8), 4, seed)


# name -> (photo, seed) -> a 1280x720 frame
VARIANTS: dict[str, Callable[[Gray, int], Gray]] = {
    "far-0.375": lambda p, s: place(p, 0.375, s),  # the code at ~2.7x the distance
    "far-0.3": lambda p, s: place(p, 0.3, s),
    "motion-7px": lambda p, s: motion(place(p, 1.0, s), 7, s),
    "defocus-2px": lambda p, s: defocus(place(p, 1.0, s), 2.0),
    "noise-30": lambda p, s: noise(place(p, 1.0, s), 30, s),
    "glare-0.2": lambda p, s: glare(place(p, 1.0, s), 0.2, s),
    "jpeg-8": lambda p, s: jpeg(place(p, 1.0, s), 8),
    "mix": lambda p, s: jpeg(noise(motion(place(p, 0.5, s), 5, s), 10, s), 30),
}


def derived_set(cases: list[tuple[str, Gray, bytes]]) -> list[tuple[str, str, Gray, bytes]]:
    """(variant, set/name, frame, expected) for every photo and variant; seed = photo index."""
    return [
        (variant, name, make(photo, seed), expected)
        for variant, make in VARIANTS.items()
        for seed, (name, photo, expected) in enumerate(cases)
    ]


# --- candidate chains (what was tried; the kiosk keeps ZxingDecoder's) -------------------------


class Candidate:
    """One zxing pass that also reports located-but-unread codes, then ``steps`` in turn."""

    def __init__(self, name: str, steps: list[Callable[[Gray, list[Any]], set[bytes]]]) -> None:
        import zxingcpp

        self.name = name
        self.zx = zxingcpp
        self.steps = steps

    def decode(self, image: Gray) -> list[bytes]:
        results = self.zx.read_barcodes(
            image, formats=self.zx.BarcodeFormat.QRCode, return_errors=True
        )
        found = [bytes(r.bytes) for r in results if r.valid]
        missed = [r for r in results if not r.valid]
        if found or not missed:
            return found
        for step in self.steps:
            got = step(image, missed)
            if got:
                return sorted(got)
        return []


def _zx(image: Gray, **kw: Any) -> set[bytes]:
    import zxingcpp

    codes = zxingcpp.read_barcodes(
        np.ascontiguousarray(image), formats=zxingcpp.BarcodeFormat.QRCode, **kw
    )
    return {bytes(r.bytes) for r in codes if r.valid}


def _box(r: Any, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    p = r.position
    xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
    mx, my = (max(xs) - min(xs)) * 0.25 + 8, (max(ys) - min(ys)) * 0.25 + 8
    return (
        int(max(0, min(xs) - mx)),
        int(max(0, min(ys) - my)),
        int(min(shape[1], max(xs) + mx)),
        int(min(shape[0], max(ys) + my)),
    )


def binarizer(name: str) -> Callable[[Gray, list[Any]], set[bytes]]:
    import zxingcpp

    b = getattr(zxingcpp.Binarizer, name)
    return lambda image, missed: _zx(image, binarizer=b)


def crop_cv2(scale: float, sharpen: bool) -> Callable[[Gray, list[Any]], set[bytes]]:
    def step(image: Gray, missed: list[Any]) -> set[bytes]:
        out: set[bytes] = set()
        for r in missed:
            x0, y0, x1, y1 = _box(r, image.shape)
            c = cv2.resize(
                image[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
            )
            if sharpen:
                c = cv2.addWeighted(c, 1.8, cv2.GaussianBlur(c, (0, 0), 2), -0.8, 0)
            out |= _zx(c)
        return out

    return step


def half_cv2(image: Gray, missed: list[Any]) -> set[bytes]:
    return _zx(cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))


def pyzbar_crop(image: Gray, missed: list[Any]) -> set[bytes]:
    from edge.scan.decoder import PyzbarDecoder

    out: set[bytes] = set()
    for r in missed:
        x0, y0, x1, y1 = _box(r, image.shape)
        c = cv2.resize(image[y0:y1, x0:x1], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        out |= set(PyzbarDecoder().decode(np.ascontiguousarray(c)))
    return out


def pyzbar_whole(image: Gray, missed: list[Any]) -> set[bytes]:
    from edge.scan.decoder import PyzbarDecoder

    return set(PyzbarDecoder().decode(image))


def candidates() -> list[Any]:
    return [
        Candidate("GlobalHistogram", [binarizer("GlobalHistogram")]),
        Candidate("FixedThreshold", [binarizer("FixedThreshold")]),
        Candidate("pyzbar", [pyzbar_whole]),
        Candidate("pyzbar-crop-2x", [pyzbar_crop]),
        Candidate("half", [half_cv2]),
        Candidate("crop-2x", [crop_cv2(2, False)]),
        Candidate("crop-3x-sharp", [crop_cv2(3, True)]),
        Candidate("crop-3x-sharp+half(cv2)", [crop_cv2(3, True), half_cv2]),
    ]


# --- measurements ------------------------------------------------------------------------------


def reads(decoder: Any, frames: list[tuple[str, str, Gray, bytes]]) -> dict[tuple[str, str], int]:
    """(variant, set) -> photos whose expected bytes the decoder returned."""
    counts: dict[tuple[str, str], int] = {}
    for variant, name, frame, expected in frames:
        key = (variant, name.split("/")[0])
        counts[key] = counts.get(key, 0) + (expected in decoder.decode(frame))
    return counts


def idle_frames(cases: list[tuple[str, Gray, bytes]]) -> list[Gray]:
    """Frames without a code: textured and flat scenes, and the photos with the code painted out."""
    raw = ZxingDecoder(retry=False)
    frames = [scene(10_000 + i) for i in range(8)]
    frames.append(np.full(FRAME, 128, np.uint8))
    rng = np.random.default_rng(0)
    frames.append(rng.normal(128, 20, FRAME).clip(0, 255).astype(np.uint8))  # as decode_bench
    for seed, (_, photo, _) in enumerate(cases[::4]):
        frame = place(photo, 1.0, seed)
        for r in raw._read(frame):
            x0, y0, x1, y1 = _box(r, frame.shape)
            frame[y0:y1, x0:x1] = int(np.median(frame))
        frames.append(frame)
    return frames


def code_frames(cases: list[tuple[str, Gray, bytes]]) -> list[Gray]:
    return [place(photo, 1.0, seed) for seed, (_, photo, _) in enumerate(cases[::4])]


def cpu_ms(decoder: Any, frames: list[Gray]) -> float:
    """Median thread CPU time per frame, ms."""
    times = []
    for frame in frames:
        t = time.thread_time_ns()
        decoder.decode(frame)
        times.append((time.thread_time_ns() - t) / 1e6)
    return statistics.median(times)


def interleaved(
    decoders: dict[str, Any], frames: list[Gray], rounds: int
) -> dict[str, list[float]]:
    """Per-decoder medians, one per round; the order alternates between rounds."""
    names = list(decoders)
    for d in decoders.values():
        d.decode(frames[0])  # warm-up
    per: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            per[n].append(cpu_ms(decoders[n], frames))
    return per


class Counting:
    """Counts zxing passes (read_barcodes calls) of a ZxingDecoder."""

    def __init__(self, decoder: ZxingDecoder) -> None:
        self.passes = 0
        zx = decoder._zx

        def read_barcodes(*a: Any, **kw: Any) -> Any:
            self.passes += 1
            return zx.read_barcodes(*a, **kw)

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                return read_barcodes if name == "read_barcodes" else getattr(zx, name)

        decoder._zx = Proxy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved CPU rounds")
    parser.add_argument("--candidates", action="store_true", help="also the candidate chains")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--every", type=int, default=1, help="only every Nth photo (quick runs)")
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"no photos at {args.photos}")

    cases = photo_cases(args.photos)[:: args.every]
    derived = derived_set(cases)
    print(f"checkpoint-edge photo benchmark: {platform.machine()}, {platform.python_version()}")
    print(
        f"{len(cases)} photos x {len(VARIANTS)} variants = {len(derived)} frames "
        f"{FRAME[1]}x{FRAME[0]}"
    )

    decoders: dict[str, Any] = {"raw": ZxingDecoder(retry=False), "chain": ZxingDecoder()}
    if args.candidates:
        decoders.update({c.name: c for c in candidates()})
    table = {name: reads(d, derived) for name, d in decoders.items()}
    keys = list(table["raw"])
    widths = {n: max(len(n), 3) + 1 for n in decoders}
    print()
    print("reads (photos read of each set)")
    print(f"{'variant':12} {'set':9} {'of':>3}" + "".join(f"{n:>{widths[n]}}" for n in decoders))
    for key in keys:
        of = sum(1 for v, name, _, _ in derived if (v, name.split("/")[0]) == key)
        cells = "".join(f"{table[n][key]:>{widths[n]}}" for n in decoders)
        print(f"{key[0]:12} {key[1]:9} {of:>3}" + cells)
    totals = {n: sum(t.values()) for n, t in table.items()}
    print(
        f"{'total':12} {'':9} {len(derived):>3}"
        + "".join(f"{totals[n]:>{widths[n]}}" for n in decoders)
    )
    print(f"chain - raw = {totals['chain'] - totals['raw']} more frames read")

    idle = idle_frames(cases)
    with_code = code_frames(cases)
    raw_first = ZxingDecoder(retry=False)
    # derived frames where the first pass located a code it could not read: the retry runs
    retried = [
        frame
        for _, _, frame, _ in derived[::3]
        if any(not r.valid for r in raw_first._read(frame, return_errors=True))
    ]
    counted = ZxingDecoder()
    counter = Counting(counted)
    for frame in idle:
        counted.decode(frame)  # 1280x720
    print()
    print(f"zxing passes on {len(idle)} idle frames: {counter.passes} (one each = no extra pass)")
    print()
    print(f"CPU per frame, thread time, median of {args.rounds} interleaved rounds [min, max]")
    print(f"{'frames':22} {'raw ms':>22} {'chain ms':>22} {'chain/raw':>9} {'core @30fps':>18}")
    pair = {"raw": decoders["raw"], "chain": decoders["chain"]}
    idle_vga = [scene(20_000 + i, (480, 640)) for i in range(8)]
    rows = (
        (f"idle ({len(idle)})", idle),
        (f"idle 640x480 ({len(idle_vga)})", idle_vga),
        (f"with code ({len(with_code)})", with_code),
        (f"located, unread ({len(retried)})", retried),
    )
    for label, frames in rows:
        per = interleaved(pair, frames, args.rounds)
        med = {n: statistics.median(v) for n, v in per.items()}
        cells = "".join(
            f"{med[n]:8.2f} [{min(per[n]):5.2f}, {max(per[n]):5.2f}]" for n in ("raw", "chain")
        )
        ratio = med["chain"] / med["raw"]
        load = f"{med['raw'] * 3:.1f}% -> {med['chain'] * 3:.1f}%"
        print(f"{label:22} {cells} {ratio:9.3f} {load:>18}")


if __name__ == "__main__":
    main()
