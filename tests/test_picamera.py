"""The picamera2 adapter, run for real against a stand-in for the camera.

There is no Raspberry Pi camera here, so ``FakePicamera2`` has exactly the
methods the adapter calls (``create_video_configuration``, ``configure``,
``set_controls``, ``start``, ``capture_array``, ``stop``, ``close`` and
``camera_controls``) and delivers YUV420 frames whose Y plane is a rendered QR
code. Everything else (the adapter, the capture thread, the decoder, the lane)
is the real code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge.config import CameraConfig, Config, SourceSpec
from edge.core.lane import CredentialScanned, FaultCleared, FaultRaised, State
from edge.devices.picamera import AF_MODE_CONTINUOUS, AF_MODE_MANUAL, Picamera2Source
from edge.errors import CameraError
from edge.scan.decoder import ZxingDecoder

from .conftest import make_config, qr_frame
from .test_e2e import PERSON, Kiosk

CM3_CONTROLS = {
    "AfMode": (0, 2, 0),
    "AfRange": (0, 2, 0),
    "LensPosition": (0.0, 15.0, 1.0),
    "ExposureValue": (-8.0, 8.0, 0.0),
    "AeMeteringMode": (0, 3, 0),
}
NO_AF_CONTROLS = {k: v for k, v in CM3_CONTROLS.items() if not k.startswith(("Af", "Lens"))}


def yuv420(gray: np.ndarray, stride: int | None = None) -> np.ndarray:
    """A planar YUV420 frame as picamera2 returns it: Y rows, then U and V rows."""
    h, w = gray.shape
    stride = stride or w
    out = np.random.default_rng(0).integers(0, 255, (h * 3 // 2, stride), dtype=np.uint8)
    out[:h, :w] = gray
    return out


class FakePicamera2:
    """Stands in for picamera2.Picamera2 (hardware absent); records what it was told."""

    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(
        self,
        camera_num: int = 0,
        *,
        frames: list[np.ndarray],
        controls: dict[str, Any],
        fail_after: int | None = None,
        stride: int | None = None,
    ) -> None:
        self.camera_num = camera_num
        self.frames = frames
        self.camera_controls = controls
        self.fail_after = fail_after
        self.stride = stride
        self.config: dict[str, Any] | None = None
        self.set: dict[str, Any] = {}
        self.started = self.closed = False
        self.delivered = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        return dict(kw)

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.set.update(controls)

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "main"
        assert self.started
        if self.fail_after is not None and self.delivered >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        frame = self.frames[self.delivered % len(self.frames)]
        self.delivered += 1
        return yuv420(frame, self.stride)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def factory(**kw: Any) -> Callable[[int], FakePicamera2]:
    def make(camera_num: int) -> FakePicamera2:
        return FakePicamera2(camera_num, **kw)

    return make


def camera_cfg(**kw: Any) -> CameraConfig:
    return CameraConfig(source=SourceSpec(kind="picamera2"), width=640, height=480, **kw)


def test_the_frame_is_the_luminance_plane_without_conversion() -> None:
    gray = qr_frame(b"checkpoint", size=(480, 640), scale=4)
    source = Picamera2Source(camera_cfg(), camera_factory=factory(frames=[gray], controls={}))
    source.open()
    frame = source.read()
    assert frame is not None
    assert frame.shape == (480, 640)
    assert frame.flags["C_CONTIGUOUS"]
    assert np.array_equal(frame, gray)
    cam = FakePicamera2.instances[-1]
    assert cam.config == {
        "main": {"size": (640, 480), "format": "YUV420"},
        "controls": {"FrameRate": 10.0},
        "buffer_count": 4,
    }
    assert ZxingDecoder().decode(frame) == [b"checkpoint"]
    source.close()
    assert cam.closed


def test_padded_rows_are_cropped_to_the_image() -> None:
    gray = qr_frame(b"padded", size=(480, 640), scale=4)
    source = Picamera2Source(
        camera_cfg(), camera_factory=factory(frames=[gray], controls={}, stride=704)
    )
    source.open()
    frame = source.read()
    assert frame is not None
    assert frame.shape == (480, 640)
    assert np.array_equal(frame, gray)


@pytest.mark.parametrize(
    ("focus_cm", "controls", "expected"),
    [
        (
            30.0,
            CM3_CONTROLS,
            {"AfMode": AF_MODE_MANUAL, "LensPosition": pytest.approx(100 / 30)},
        ),
        (0.0, CM3_CONTROLS, {"AfMode": AF_MODE_CONTINUOUS, "AfRange": 1}),
        (30.0, NO_AF_CONTROLS, {}),  # Camera Module 2, HQ: fixed focus, nothing to set
    ],
)
def test_focus_and_exposure_for_a_phone_held_close(
    focus_cm: float, controls: dict[str, Any], expected: dict[str, Any]
) -> None:
    cfg = camera_cfg(focus_cm=focus_cm, exposure_ev=-1.5, metering="spot")
    source = Picamera2Source(
        cfg, camera_factory=factory(frames=[qr_frame(None)], controls=controls)
    )
    source.open()
    cam = FakePicamera2.instances[-1]
    assert cam.set == {"ExposureValue": -1.5, "AeMeteringMode": 1, **expected}


def test_no_camera_is_a_camera_error() -> None:
    def none(_num: int) -> Any:
        raise IndexError("list index out of range")

    with pytest.raises(CameraError, match="no camera 0 found"):
        Picamera2Source(camera_cfg(), camera_factory=none).open()


def test_the_kiosk_reads_codes_through_the_adapter_and_survives_the_camera_vanishing(
    tmp_path: Path,
) -> None:
    """QR in front of the (fake) camera -> scanned; the camera dies -> failsafe and
    camera-down; it comes back on a later attempt -> ready again."""
    gray = qr_frame(PERSON.encode(), size=(720, 1280))
    attempts: list[int] = []

    def flaky(camera_num: int) -> FakePicamera2:
        attempts.append(camera_num)
        if len(attempts) == 2:
            raise RuntimeError("Failed to acquire camera")  # gone for one attempt
        fail = 30 if len(attempts) == 1 else None  # the first one dies after 30 frames
        return FakePicamera2(camera_num, frames=[gray], controls=CM3_CONTROLS, fail_after=fail)

    cfg: Config = make_config(
        tmp_path,
        camera={"source": "picamera2", "fps": 30},
        lane={"mode": "officer", "decision_timeout_s": 60},
        fleet={"clock_check": False},
    )
    source = Picamera2Source(cfg.camera, camera_factory=flaky)
    kiosk = Kiosk(cfg, source=source)
    kiosk.app.capture.retry_s = 0.1  # reopen quickly in this test
    kiosk.start()
    try:
        event, _, _ = kiosk.wait(lambda e, _a, _s: isinstance(e, CredentialScanned))
        assert isinstance(event, CredentialScanned)
        assert event.credential.kind == "unrecognised"
        event, _, state = kiosk.wait(lambda e, _a, _s: isinstance(e, FaultRaised))
        assert isinstance(event, FaultRaised)
        assert event.name == "camera"
        assert "stopped delivering frames" in event.reason
        assert state is State.FAILSAFE
        assert "camera-down" in kiosk.app.alerts.names()
        kiosk.wait(lambda e, _a, _s: isinstance(e, FaultCleared) and e.name == "camera", 20)
        assert "camera-down" not in kiosk.app.alerts.names()
        assert len(attempts) >= 3
    finally:
        kiosk.stop()
