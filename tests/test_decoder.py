"""Both decoders on real rendered codes and real photographs; identical bytes out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import DecoderUnavailable
from edge.scan import decoder as decoder_mod
from edge.scan.decoder import Decoder, PyzbarDecoder, ZxingDecoder, make_decoder

from .conftest import qr_frame

DECODERS = [ZxingDecoder, PyzbarDecoder]

PAYLOADS = [
    pytest.param(b"HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N", id="base45"),
    pytest.param(
        (
            "012345678901|123456789|Nguyễn Thị Minh Khai|01011990|Nữ|Số 1, Phường Bến Nghé|01012021"
        ).encode(),
        id="utf8-vietnamese",
    ),
    pytest.param(bytes(range(256)), id="binary"),
]


@pytest.fixture(params=DECODERS, ids=lambda c: c.name)
def decoder(request: pytest.FixtureRequest) -> Decoder:
    return request.param()  # type: ignore[no-any-return]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_decodes_exact_bytes(decoder: Decoder, payload: bytes) -> None:
    assert decoder.decode(qr_frame(payload)) == [payload]


def test_empty_frame_has_no_codes(decoder: Decoder) -> None:
    assert decoder.decode(qr_frame(None)) == []


def test_two_codes_in_one_frame(decoder: Decoder) -> None:
    frame = np.hstack([qr_frame(b"left", (480, 640)), qr_frame(b"right", (480, 640))])
    assert sorted(decoder.decode(np.ascontiguousarray(frame))) == [b"left", b"right"]


def test_only_qr_codes_are_read(decoder: Decoder) -> None:
    # An EAN-13 barcode drawn from its module pattern: a decoder reading all
    # symbologies would report it.
    bits = (
        "101" + "0001101"
        "0011001"
        "0010011"
        "0111101"
        "0100011"
        "0110001"
        "01010" + "1110010"
        "1100110"
        "1101100"
        "1000010"
        "1011100"
        "1001110" + "101"
    )
    row = np.array([0 if b == "1" else 255 for b in bits], np.uint8)
    strip = np.repeat(np.repeat(row[None, :], 120, axis=0), 4, axis=1)
    frame = np.full((300, 600), 255, np.uint8)
    frame[90:210, 100 : 100 + strip.shape[1]] = strip
    assert decoder.decode(frame) == []


def test_auto_prefers_zxing() -> None:
    assert make_decoder("auto").name == "zxing"


def test_auto_falls_back_to_pyzbar(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise DecoderUnavailable("zxing-cpp is not installed")

    monkeypatch.setattr(decoder_mod.ZxingDecoder, "__init__", lambda self: unavailable())
    assert make_decoder("auto").name == "pyzbar"
    with pytest.raises(DecoderUnavailable):
        make_decoder("zxing")


def photo_cases(root: Path) -> list[tuple[Path, bytes]]:
    cases = []
    for folder in ("qrcode-1", "qrcode-3"):
        for image in sorted((root / "qr-photos" / folder).iterdir()):
            if image.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
                cases.append((image, image.with_suffix(".txt").read_bytes()))
    return cases


def test_labelled_photographs_in_every_orientation(decoder: Decoder, shared_testdata: Path) -> None:
    """zxing's hand-held and tilted photos (640x480), each at 0, 90, 180, 270 degrees."""
    cases = photo_cases(shared_testdata)
    assert cases
    misses = []
    for path, expected in cases:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        for turn in (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE):
            turned = image if turn is None else cv2.rotate(image, turn)
            if expected not in decoder.decode(np.ascontiguousarray(turned)):
                misses.append(f"{path.parent.name}/{path.name}@{turn}")
    # Both decoders read every one of these photos here; hold them to it.
    assert misses == []
