"""``picamera2``: a Raspberry Pi camera (Camera Module 3, or any libcamera sensor).

The stream is YUV420 at ``[camera] width x height`` and ``fps``; the frame the
decoder gets is its luminance (Y) plane, a view of the first ``height`` rows:
no colour conversion per frame. On a camera with autofocus (Camera Module 3)
the lens is fixed at ``focus_cm`` (a code held 20-40 cm away; ``0`` =
continuous autofocus in the macro range), and exposure is metered on the centre
with ``exposure_ev`` of compensation, so that a bright phone screen does not
wash out. Controls a sensor does not have are skipped, never an error.

``picamera2`` is imported only when this source is opened (it exists only on
Raspberry Pi OS, as the Debian package ``python3-picamera2``); ``camera_factory``
lets tests hand in an object with the same methods the adapter calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.config import CameraConfig
from edge.devices.frames import Gray
from edge.errors import CameraError

log = logging.getLogger(__name__)

# libcamera's enum values (libcamera.controls.AfModeEnum etc.), as plain numbers so
# that this module imports where libcamera does not exist
AF_MODE_MANUAL = 0
AF_MODE_CONTINUOUS = 2
AF_RANGE_MACRO = 1
METERING = {"centre": 0, "spot": 1, "matrix": 2}
BUFFERS = 4  # enough for the capture thread and libcamera to never wait on each other


def _import_picamera2() -> Callable[..., Any]:
    try:
        from picamera2 import Picamera2  # noqa: PLC0415 - only on a Pi, only when chosen
    except ImportError as exc:
        raise CameraError(
            "picamera2 is not installed: on Raspberry Pi OS, apt install python3-picamera2 "
            "(the virtual environment must be made with --system-site-packages; "
            f"deploy/install.sh does both): {exc}"
        ) from exc
    return Picamera2  # type: ignore[no-any-return]


class Picamera2Source:
    """A libcamera camera through picamera2, delivering the Y plane of YUV420 frames."""

    self_paced = True  # capture_array waits for the sensor's next frame

    def __init__(
        self,
        cfg: CameraConfig,
        index: int = 0,
        camera_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.fps = cfg.fps
        self.description = f"picamera2:{index}"
        self._factory = camera_factory
        self._camera: Any = None
        self.controls: dict[str, Any] = {}  # what was set, for the log and tests

    def open(self) -> None:
        factory = self._factory or _import_picamera2()
        try:
            camera = factory(self.index)
        except (IndexError, RuntimeError, OSError) as exc:
            raise CameraError(f"no camera {self.index} found by libcamera: {exc}") from exc
        try:
            size = (self.cfg.width, self.cfg.height)
            config = camera.create_video_configuration(
                main={"size": size, "format": "YUV420"},
                controls={"FrameRate": self.cfg.fps},
                buffer_count=BUFFERS,
            )
            camera.configure(config)
            self.controls = self._controls(camera)
            if self.controls:
                camera.set_controls(self.controls)
            camera.start()
        except Exception as exc:  # any libcamera failure: a camera fault, reopened later
            _close(camera)
            raise CameraError(f"{self.description} cannot start: {exc}") from exc
        self._camera = camera
        log.info("camera: %s %dx%d YUV420, controls %s", self.description, *size, self.controls)

    def _controls(self, camera: Any) -> dict[str, Any]:
        available = getattr(camera, "camera_controls", {}) or {}
        wanted: dict[str, Any] = {
            "AeMeteringMode": METERING[self.cfg.metering],
            "ExposureValue": self.cfg.exposure_ev,
        }
        if self.cfg.focus_cm > 0:
            # LensPosition is in dioptres: 1 / distance in metres
            wanted |= {"AfMode": AF_MODE_MANUAL, "LensPosition": 100.0 / self.cfg.focus_cm}
        else:
            wanted |= {"AfMode": AF_MODE_CONTINUOUS, "AfRange": AF_RANGE_MACRO}
        skipped = sorted(set(wanted) - set(available))
        if skipped:
            log.info("camera: %s has no %s (skipped)", self.description, ", ".join(skipped))
        return {k: v for k, v in wanted.items() if k in available}

    def read(self) -> Gray | None:
        if self._camera is None:
            raise CameraError("source not open")
        try:
            frame = self._camera.capture_array("main")
        except Exception as exc:  # the camera went away mid-stream
            raise CameraError(f"{self.description} stopped delivering frames: {exc}") from exc
        height, width = self.cfg.height, self.cfg.width
        if frame.ndim != 2 or frame.shape[0] < height or frame.shape[1] < width:
            raise CameraError(
                f"{self.description} delivered a {frame.shape} array, not YUV420 "
                f"of {width}x{height}"
            )
        # the Y plane (the rows below it hold U and V); a copy only when rows are padded
        return np.ascontiguousarray(frame[:height, :width], dtype=np.uint8)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            _close(camera)


def _close(camera: Any) -> None:
    for step in ("stop", "close"):
        try:
            getattr(camera, step)()
        except Exception:  # closing a failed camera must not raise
            log.debug("camera: %s failed while closing", step, exc_info=True)
