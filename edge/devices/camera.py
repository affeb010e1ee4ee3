"""Camera sources and the capture thread.

A :class:`FrameSource` opens, hands out grayscale frames, and closes. Hardware
cameras block in ``read`` until the sensor's next frame (``self_paced``);
recorded sources (an image folder, a video file) are paced by the capture
thread at their frame rate. The capture thread puts every frame into a
:class:`~edge.devices.frames.LatestFrame` and never waits for the scanner.

A source that cannot be opened or fails while reading raises
:class:`~edge.errors.CameraError`; the capture thread reports a fault and
reopens it with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.config import CameraConfig, SourceSpec
from edge.devices.frames import Frame, Gray, LatestFrame, as_gray
from edge.devices.images import ImageError, gray_image
from edge.errors import CameraError, InputError
from edge.files import IMAGE, read_limited

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".pnm", ".tif", ".tiff", ".webp"}
)
BLANK_LEVEL = 128  # mid-gray: an empty scene


def _cv2() -> Any:
    """OpenCV, imported only by the sources that use it: video files and USB cameras
    (it adds some 45 MB resident; picamera2 delivers the Y plane itself and still
    images are read with Pillow, devices/images.py)."""
    import cv2  # noqa: PLC0415

    return cv2


class FrameSource(Protocol):
    """What the capture thread needs of a camera."""

    description: str
    fps: float
    self_paced: bool

    def open(self) -> None:
        """Acquire the device or file; raise CameraError with the reason."""
        ...

    def read(self) -> Gray | None:
        """The next grayscale frame; None at the end of a recording."""
        ...

    def close(self) -> None: ...


class ImageFolderSource:
    """``images:DIR``: each image in name order, held ``hold_s``, then ``gap_s`` of empty frames.

    This is a traveller stepping up with a code and away again. Files that are
    not readable images are skipped with a warning naming the file.
    """

    self_paced = False

    def __init__(
        self, directory: Path, fps: float, hold_s: float, gap_s: float, loop: bool = False
    ) -> None:
        self.directory = directory
        self.fps = fps
        self.hold_frames = max(1, round(hold_s * fps))
        self.gap_frames = max(1, round(gap_s * fps))
        self.loop = loop
        self.description = f"images:{directory}"
        self._frames: Iterator[Gray] | None = None

    def _files(self) -> list[Path]:
        try:
            entries = sorted(self.directory.iterdir())
        except FileNotFoundError as exc:
            raise CameraError(f"image folder not found: {self.directory}") from exc
        except NotADirectoryError as exc:
            raise CameraError(f"not a folder: {self.directory}") from exc
        except OSError as exc:
            raise CameraError(f"cannot read image folder {self.directory}: {exc.strerror}") from exc
        return [
            p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ]

    def open(self) -> None:
        files = self._files()
        if not files:
            log.warning(
                "camera: no images (%s) in %s", ", ".join(sorted(IMAGE_SUFFIXES)), self.directory
            )
        self._frames = self._generate(files)

    def _generate(self, files: list[Path]) -> Iterator[Gray]:
        while True:
            shown = 0
            for path in files:
                try:
                    gray = gray_image(read_limited(path, IMAGE, "image"))
                except InputError as exc:
                    log.warning("camera: skipping %s: %s", path.name, exc.reason)
                    continue
                except ImageError as exc:
                    log.warning("camera: skipping %s: not a readable image (%s)", path.name, exc)
                    continue
                shown += 1
                log.info("camera: image %s in view", path.name)
                for _ in range(self.hold_frames):
                    yield gray
                blank = np.full_like(gray, BLANK_LEVEL)
                for _ in range(self.gap_frames):
                    yield blank
            if not self.loop or shown == 0:
                return
            files = self._files()

    def read(self) -> Gray | None:
        if self._frames is None:
            raise CameraError("source not open")
        return next(self._frames, None)

    def close(self) -> None:
        self._frames = None


class OpenCVSource:
    """``video:FILE`` (a recording, paced at its own frame rate) or ``v4l2:N`` (a USB camera)."""

    def __init__(self, spec: SourceSpec, cfg: CameraConfig) -> None:
        self.spec = spec
        self.cfg = cfg
        self.description = spec.describe()
        self.self_paced = spec.kind == "v4l2"
        self.fps = cfg.fps
        self._cap: Any = None  # a cv2.VideoCapture

    def open(self) -> None:
        cv2 = _cv2()
        if self.spec.kind == "video":
            assert self.spec.path is not None
            if not self.spec.path.is_file():
                raise CameraError(f"video file not found: {self.spec.path}")
            cap = cv2.VideoCapture(str(self.spec.path))
        else:
            assert self.spec.index is not None
            cap = cv2.VideoCapture(self.spec.index, cv2.CAP_V4L2)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open {self.description}")
        native_fps = cap.get(cv2.CAP_PROP_FPS)
        if self.spec.kind == "video" and native_fps > 0:
            self.fps = native_fps
        self._cap = cap

    def read(self) -> Gray | None:
        if self._cap is None:
            raise CameraError("source not open")
        cv2 = _cv2()
        ok, image = self._cap.read()
        if not ok and self.spec.kind == "video" and self.cfg.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok:
            if self.spec.kind == "video":
                return None
            raise CameraError(f"{self.description} stopped delivering frames")
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return as_gray(image)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def make_source(cfg: CameraConfig) -> FrameSource:
    """The source the config names. Hardware libraries are imported only here, when chosen."""
    spec = cfg.source
    if spec.kind == "images":
        assert spec.path is not None
        return ImageFolderSource(spec.path, cfg.fps, cfg.hold_s, cfg.gap_s, cfg.loop)
    if spec.kind in ("video", "v4l2"):
        return OpenCVSource(spec, cfg)
    from edge.devices.picamera import Picamera2Source  # noqa: PLC0415 - a Pi's camera

    return Picamera2Source(cfg, spec.index or 0)


class CaptureThread(threading.Thread):
    """Reads a source into a LatestFrame until stopped or the recording ends.

    ``on_fault(reason)`` is called when the source fails and ``on_ok()`` once
    it delivers again; the source is reopened with exponential backoff from
    ``retry_s`` up to ``retry_max_s``. ``finished`` is set when a recording ends.
    """

    def __init__(
        self,
        source: FrameSource,
        slot: LatestFrame,
        on_fault: Callable[[str], None],
        on_ok: Callable[[], None],
        *,
        retry_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        super().__init__(name="camera", daemon=True)
        self.source = source
        self.slot = slot
        self.on_fault = on_fault
        self.on_ok = on_ok
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.frames = 0
        self._faulted = False
        self.last_frame_at: float | None = None  # monotonic time of the last frame (or open)

    def stop(self) -> None:
        self.stop_event.set()

    def stalled(self, stall_s: float, now: float | None = None) -> bool:
        """An open source has delivered no frame for ``stall_s`` seconds (a hung driver).

        A source that failed and is being reopened is not stalled (it is faulted,
        and said so); a recording that ended is not stalled either.
        """
        if self._faulted or self.finished.is_set() or not self.is_alive():
            return False
        last = self.last_frame_at
        return last is not None and (now or time.monotonic()) - last > stall_s

    def run(self) -> None:
        delay = self.retry_s
        while not self.stop_event.is_set():
            ended = False
            try:
                self.source.open()
                self.last_frame_at = time.monotonic()
                log.info("camera: %s open at %.1f fps", self.source.description, self.source.fps)
                ended = self._capture()
                delay = self.retry_s
            except Exception as exc:  # a driver bug is a camera fault too, never a dead thread
                if isinstance(exc, CameraError):
                    reason = str(exc)
                    log.error("camera: %s; retrying in %.0f s", reason, delay)  # noqa: TRY400
                else:
                    reason = f"camera failed: {type(exc).__name__}"
                    log.exception("camera: unexpected error; retrying in %.0f s", delay)
                if not self._faulted:
                    self._faulted = True
                    self.on_fault(reason)
            finally:
                self.source.close()
            if ended:
                log.info("camera: %s finished", self.source.description)
                break
            if self.stop_event.wait(delay):
                break
            delay = min(delay * 2, self.retry_max_s)
        self.finished.set()

    def _capture(self) -> bool:
        """Deliver frames; True when the recording ended, False when stopped."""
        period = 1.0 / self.source.fps
        due = time.monotonic()
        while not self.stop_event.is_set():
            image = self.source.read()
            if image is None:
                return True
            if self._faulted:
                self._faulted = False
                self.on_ok()
            self.frames += 1
            self.last_frame_at = time.monotonic()
            self.slot.put(Frame(image=image, number=self.frames, t=time.monotonic()))
            if not self.source.self_paced:
                due += period
                wait = due - time.monotonic()
                if wait < -period:  # fell behind (slow machine): do not burst to catch up
                    due = time.monotonic()
                elif self.stop_event.wait(max(0.0, wait)):
                    break
        return False
