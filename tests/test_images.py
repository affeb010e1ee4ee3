"""Still images through Pillow (devices/images.py): formats, orientation, hostile files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edge.devices.camera import ImageFolderSource
from edge.devices.images import MAX_PIXELS, ImageError, gray_image
from edge.scan.decoder import ZxingDecoder

from .conftest import qr_frame


def _encoded(frame: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, frame)
    assert ok
    return bytes(data)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".pgm", ".tiff", ".webp"])
def test_every_folder_format_reads_as_the_same_code(ext: str) -> None:
    gray = gray_image(_encoded(qr_frame(b"CODE-1"), ext))
    assert gray.shape == (720, 1280)
    assert gray.dtype == np.uint8
    assert gray.flags.c_contiguous
    assert ZxingDecoder().decode(gray) == [b"CODE-1"]


def test_colour_is_converted_with_the_luminance_weights_opencv_uses() -> None:
    rng = np.random.default_rng(7)
    bgr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ours = gray_image(_encoded(bgr, ".png")).astype(int)
    theirs = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation() -> None:
    upright = qr_frame(b"UPRIGHT", size=(480, 640))
    # as a phone held sideways stores it: the pixels rotated, EXIF saying so
    stored = Image.fromarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    out = io.BytesIO()
    stored.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    gray = gray_image(out.getvalue())
    assert gray.shape == (480, 640)
    assert ZxingDecoder().decode(gray) == [b"UPRIGHT"]


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not an image format"),
        (b"\x89PNG not really", "not an image format"),
        (_encoded(qr_frame(b"X"), ".png")[:3000], "damaged image"),
        (_png_header_only(8_000, 7_000), f"more than {MAX_PIXELS:,}"),
        (_png_header_only(60_000, 60_000), "pixels"),  # Pillow's own bomb limit
    ],
    ids=["empty", "garbage", "truncated", "over-our-limit", "bomb"],
)
def test_hostile_or_damaged_bytes_are_a_clear_image_error(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        gray_image(data)


def test_the_folder_skips_a_bomb_and_a_damaged_file_and_shows_the_rest(
    frames_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (frames_dir / "a.png").write_bytes(_png_header_only(8_000, 7_000))
    (frames_dir / "b.jpg").write_bytes(_encoded(qr_frame(b"B"), ".jpg")[:2000])
    (frames_dir / "c.png").write_bytes(_encoded(qr_frame(b"C"), ".png"))
    source = ImageFolderSource(frames_dir, fps=10, hold_s=0.1, gap_s=0.1)
    source.open()
    first = source.read()
    assert first is not None
    assert ZxingDecoder().decode(first) == [b"C"]
    assert "skipping a.png: not a readable image (8000x7000 pixels" in caplog.text
    assert "skipping b.jpg: not a readable image (damaged image" in caplog.text


def test_edge_run_caps_malloc_arenas_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge import cli

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cli._fewer_malloc_arenas() is False  # the operator's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert cli._fewer_malloc_arenas() is True  # glibc (Debian, Raspberry Pi OS)
