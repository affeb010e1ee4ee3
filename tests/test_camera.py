"""Camera sources from real files: image folders and a real encoded video."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import CameraConfig, SourceSpec
from edge.devices.camera import BLANK_LEVEL, CaptureThread, ImageFolderSource, make_source
from edge.devices.frames import Gray, LatestFrame
from edge.errors import CameraError
from edge.scan.decoder import ZxingDecoder

from .conftest import qr_frame, write_frame


def drain(source: ImageFolderSource, limit: int = 100) -> list[Gray]:
    frames = []
    while (f := source.read()) is not None and len(frames) < limit:
        frames.append(f)
    return frames


def labels(frames: list[Gray]) -> list[str]:
    decoder = ZxingDecoder()
    out = []
    for f in frames:
        codes = decoder.decode(f)
        out.append(codes[0].decode() if codes else ("-" if (f == BLANK_LEVEL).all() else "?"))
    return out


def test_images_in_name_order_held_then_gap(
    frames_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_frame(frames_dir / "b.png", b"B")
    write_frame(frames_dir / "a.png", b"A")
    (frames_dir / "c.png").write_bytes(b"\x89PNG not really")
    (frames_dir / "notes.txt").write_text("not an image")
    source = ImageFolderSource(frames_dir, fps=10, hold_s=0.3, gap_s=0.2)
    source.open()
    assert labels(drain(source)) == ["A"] * 3 + ["-"] * 2 + ["B"] * 3 + ["-"] * 2
    assert "skipping c.png: not a readable image" in caplog.text


def test_images_loop(frames_dir: Path) -> None:
    write_frame(frames_dir / "a.png", b"A")
    source = ImageFolderSource(frames_dir, fps=10, hold_s=0.1, gap_s=0.1, loop=True)
    source.open()
    assert labels(drain(source, limit=6)) == ["A", "-"] * 3


def test_missing_or_wrong_folder_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="image folder not found"):
        ImageFolderSource(tmp_path / "nope", 10, 1, 1).open()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CameraError, match="not a folder"):
        ImageFolderSource(tmp_path / "file", 10, 1, 1).open()


def test_capture_reports_a_missing_folder_and_recovers_when_it_appears(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    faults: list[str] = []
    faulted, recovered = threading.Event(), threading.Event()

    def on_fault(reason: str) -> None:
        faults.append(reason)
        faulted.set()

    slot = LatestFrame()
    source = ImageFolderSource(folder, fps=50, hold_s=0.1, gap_s=0.1)
    thread = CaptureThread(source, slot, on_fault, recovered.set, retry_s=0.05, retry_max_s=0.1)
    thread.start()
    assert faulted.wait(5)
    assert "image folder not found" in faults[0]
    folder.mkdir()
    write_frame(folder / "a.png", b"A")
    assert recovered.wait(5)
    assert thread.finished.wait(5)
    assert len(faults) == 1  # reported once, not at every retry
    assert thread.frames == 10  # 5 frames of the code, 5 of the gap
    assert slot.dropped == 9  # nobody took them: each new frame replaced the last


def test_video_file_source(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    assert writer.isOpened()
    for n in range(6):
        frame = qr_frame(b"VIDEO" if n < 3 else None, (480, 640))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    spec = SourceSpec(kind="video", path=path)
    source = make_source(CameraConfig(source=spec))
    source.open()
    assert source.fps == pytest.approx(15)
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    source.close()
    assert len(frames) == 6
    assert all(f.ndim == 2 and f.dtype == np.uint8 for f in frames)
    decoder = ZxingDecoder()
    assert [bool(decoder.decode(f)) for f in frames] == [True] * 3 + [False] * 3


def test_missing_video_file(tmp_path: Path) -> None:
    source = make_source(CameraConfig(source=SourceSpec(kind="video", path=tmp_path / "x.mp4")))
    with pytest.raises(CameraError, match="video file not found"):
        source.open()


def test_picamera2_without_the_library_is_a_clear_camera_error() -> None:
    source = make_source(CameraConfig(source=SourceSpec(kind="picamera2", index=1)))
    assert source.description == "picamera2:1"
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - on a Raspberry Pi
        pytest.skip("picamera2 is installed here")
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        source.open()
