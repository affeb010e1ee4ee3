"""QR decoders behind one interface: zxing-cpp and pyzbar, QR codes only.

Both return the raw bytes of each code exactly as encoded, so a credential's
hash is the same whichever decoder read it. (zbar by default re-encodes binary
data as UTF-8 text; :class:`PyzbarDecoder` turns that off.)

``auto`` picks zxing-cpp when it imports (it measured about 15x faster on
1280x720 frames here; see ``bench/``), else pyzbar.

:class:`ZxingDecoder` reads a frame once, asking zxing-cpp to report codes it
located but could not decode as well. Only when it did (a finder pattern was
seen but the code did not read) does it try again: the located code cropped,
upscaled 3x and sharpened, then the whole frame at half size. A frame without
a code costs one pass, as before; ``bench/photo_bench.py`` measures what the
extra passes read on degraded photos.
"""

from __future__ import annotations

import logging
from ctypes import c_char_p, c_void_p, cast
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.devices.frames import Gray
from edge.errors import DecoderUnavailable

log = logging.getLogger(__name__)

# zbar.h: ZBAR_CFG_BINARY, "don't convert binary data to text" (zbar >= 0.23.1).
_ZBAR_CFG_BINARY = 4


class Decoder(Protocol):
    name: str

    def decode(self, image: Gray) -> list[bytes]:
        """The payloads of every QR code found in a grayscale image."""
        ...


# The retry on a located but unread code: its bounding box grown by this
# fraction of its size (plus a few pixels) on each side, unsharp-masked (sigma
# in upscaled pixels), then upscaled by at most _CROP_SCALE (and to at most
# _CROP_MAX_SIDE pixels).
_CROP_MARGIN = 0.25
_CROP_SCALE = 3.0
_CROP_MAX_SIDE = 1200
_SHARPEN_SIGMA = 2.0
_SHARPEN_AMOUNT = 0.8


class ZxingDecoder:
    """zxing-cpp; with ``retry`` (the default) a second look at codes located but not read."""

    name = "zxing"

    def __init__(self, retry: bool = True) -> None:
        try:
            import zxingcpp  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise DecoderUnavailable(f"zxing-cpp is not installed: {exc}") from exc
        self._zx: Any = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode
        self.retry = retry

    def _read(self, image: Gray, return_errors: bool = False) -> Any:
        return self._zx.read_barcodes(image, formats=self._formats, return_errors=return_errors)

    def decode(self, image: Gray) -> list[bytes]:
        if not self.retry:
            return [bytes(r.bytes) for r in self._read(image) if r.valid]
        results = self._read(image, return_errors=True)
        found = [bytes(r.bytes) for r in results if r.valid]
        missed = [r for r in results if not r.valid]
        if missed:
            read = [_box(image.shape, r.position) for r in results if r.valid]
            more = self._retry(image, missed, [b for b in read if b is not None])
            found += [b for b in dict.fromkeys(more) if b not in found]
        return found

    def _retry(
        self, image: Gray, missed: list[Any], read: list[tuple[int, int, int, int]]
    ) -> list[bytes]:
        """Codes located but not read: each crop closer, then the frame at half size.

        ``read`` holds the boxes of codes already read; a missed one centred in
        one of them is skipped.
        """
        found: list[bytes] = []
        unread = 0
        for r in missed:
            box = _box(image.shape, r.position)
            # zxing may report one code several times (from different finder
            # candidates); once a crop read, the others inside it are that code.
            if box is None or any(_inside(_centre(box), b) for b in read):
                continue
            x0, y0, x1, y1 = box
            got = self._valid(_closer(image[y0:y1, x0:x1]))
            found += got
            if got:
                read.append(box)
            else:
                unread += 1
        if unread:
            found += self._valid(_half(image))
        return found

    def _valid(self, image: Gray) -> list[bytes]:
        return [bytes(r.bytes) for r in self._read(image) if r.valid]


# numpy only: OpenCV is ~16 MB a Pi camera otherwise does without (devices/camera.py).


def _box(shape: tuple[int, ...], position: Any) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around a code's corners, with a margin; None if (nearly) empty."""
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    xs = [p.x for p in corners]
    ys = [p.y for p in corners]
    height, width = shape
    mx = (max(xs) - min(xs)) * _CROP_MARGIN + 8
    my = (max(ys) - min(ys)) * _CROP_MARGIN + 8
    x0, x1 = max(0, int(min(xs) - mx)), min(width, int(max(xs) + mx))
    y0, y1 = max(0, int(min(ys) - my)), min(height, int(max(ys) + my))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return x0, y0, x1, y1


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], box: tuple[int, int, int, int]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def _closer(crop: Gray) -> Gray:
    """``crop`` unsharp-masked, then upscaled (bicubic)."""
    scale = min(_CROP_SCALE, _CROP_MAX_SIDE / max(crop.shape))
    f = crop.astype(np.float32)
    # Sharpening before upscaling reads the same as after (bench/photo_bench.py) at 1/9 the cost.
    blurred = _gauss(f, _SHARPEN_SIGMA / max(scale, 1.0))
    f = f * (1 + _SHARPEN_AMOUNT) - blurred * _SHARPEN_AMOUNT
    if scale > 1:
        f = _cubic(_cubic(f, scale, 0), scale, 1)
    return np.ascontiguousarray(f.clip(0, 255).astype(np.uint8))


def _cubic(a: npt.NDArray[np.float32], scale: float, axis: int) -> npt.NDArray[np.float32]:
    """``a`` resized by ``scale`` along ``axis``: bicubic, a = -0.75 (as OpenCV's INTER_CUBIC)."""
    n = a.shape[axis]
    src = (np.arange(round(n * scale)) + 0.5) / scale - 0.5
    base = np.floor(src).astype(np.intp)
    frac = (src - base).astype(np.float32)
    out = np.zeros_like(np.take(a, base.clip(0, n - 1), axis=axis))
    for k in (-1, 0, 1, 2):
        t = np.abs(frac - k)
        w = np.where(
            t <= 1,
            ((_A + 2) * t - (_A + 3)) * t * t + 1,
            np.where(t < 2, ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A, 0),
        ).astype(np.float32)
        out += np.take(a, (base + k).clip(0, n - 1), axis=axis) * (w[:, None] if axis == 0 else w)
    return out


_A = -0.75


def _gauss(a: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """A separable Gaussian blur, edges replicated."""
    r = int(3 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-x * x / (2 * sigma * sigma))
    k /= k.sum()
    h, w = a.shape
    p = np.pad(a, ((r, r), (0, 0)), mode="edge")
    a = sum((k[i] * p[i : i + h] for i in range(2 * r + 1)), np.zeros_like(a))
    p = np.pad(a, ((0, 0), (r, r)), mode="edge")
    return sum((k[i] * p[:, i : i + w] for i in range(2 * r + 1)), np.zeros_like(a))


def _half(image: Gray) -> Gray:
    """``image`` at half size, each pixel the mean of a 2x2 block."""
    h, w = image.shape
    a = image[: h // 2 * 2, : w // 2 * 2].astype(np.uint16)
    s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2
    return np.ascontiguousarray((s // 4).astype(np.uint8))


class PyzbarDecoder:
    name = "pyzbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar, wrapper  # noqa: PLC0415 - needs libzbar0
        except (ImportError, OSError) as exc:
            raise DecoderUnavailable(
                f"pyzbar cannot load libzbar (apt-get install libzbar0): {exc}"
            ) from exc
        self._pz: Any = pyzbar
        self._w: Any = wrapper

    def decode(self, image: Gray) -> list[bytes]:
        # pyzbar.decode() offers no way to set ZBAR_CFG_BINARY, so this is its
        # body with that one setting added.
        pz, w = self._pz, self._w
        height, width = image.shape
        pixels = image.tobytes()
        with pz._image_scanner() as scanner:
            w.zbar_image_scanner_set_config(scanner, w.ZBarSymbol.NONE, w.ZBarConfig.CFG_ENABLE, 0)
            w.zbar_image_scanner_set_config(
                scanner, w.ZBarSymbol.QRCODE, w.ZBarConfig.CFG_ENABLE, 1
            )
            w.zbar_image_scanner_set_config(scanner, w.ZBarSymbol.QRCODE, _ZBAR_CFG_BINARY, 1)
            with pz._image() as img:
                w.zbar_image_set_format(img, pz._FOURCC["L800"])
                w.zbar_image_set_size(img, width, height)
                w.zbar_image_set_data(img, cast(c_char_p(pixels), c_void_p), len(pixels), None)
                if w.zbar_scan_image(scanner, img) < 0:
                    raise ValueError("zbar rejected the image format")
                return [bytes(sym.data) for sym in pz._decode_symbols(pz._symbols_for_image(img))]


def make_decoder(name: str) -> Decoder:
    """The decoder the config names (``auto``, ``zxing`` or ``pyzbar``)."""
    if name == "zxing":
        return ZxingDecoder()
    if name == "pyzbar":
        return PyzbarDecoder()
    if name != "auto":
        raise ValueError(f"unknown decoder {name!r}")
    try:
        return ZxingDecoder()
    except DecoderUnavailable as exc:
        log.info("scan: %s; using pyzbar", exc)
        return PyzbarDecoder()
