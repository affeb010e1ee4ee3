"""The lane's panel on GPIO: officer buttons, barrier relay, LEDs, buzzer.

Built with gpiozero on the pin factory the config names; ``mock`` is
gpiozero's own :class:`~gpiozero.pins.mock.MockFactory`, used by simulation and
tests. Any other name must load on this machine, or start-up fails with a
clear :class:`~edge.errors.HardwareError` (never a silent fallback to mock).

Button callbacks run on gpiozero's threads and only call the given handlers,
which post events to the lane.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from gpiozero import LED, Button, Buzzer, OutputDevice
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig
from edge.errors import HardwareError

log = logging.getLogger(__name__)

# pattern -> (green, red, buzzer) settings; see Panel.signal
DENIED_SHOW_S = 3.0


def make_pin_factory(name: str) -> Any:
    """gpiozero's pin factory called ``name`` (``mock`` for simulation)."""
    if name == "mock":
        return MockFactory()
    found = {ep.name: ep for ep in entry_points(group="gpiozero_pin_factories")}
    if name not in found:
        known = ", ".join(sorted([*found, "mock"]))
        raise HardwareError(f"gpio.pin_factory: unknown pin factory {name!r} (known: {known})")
    try:
        return found[name].load()()
    except Exception as exc:  # any failure here means no GPIO on this machine
        raise HardwareError(
            f"gpio.pin_factory {name!r} cannot start on this machine: {exc} "
            '(on a laptop use pin_factory = "mock")'
        ) from exc


class Panel:
    """Buttons in, barrier relay, LEDs and buzzer out. The barrier starts closed."""

    def __init__(
        self,
        cfg: GpioConfig,
        pin_factory: Any,
        on_approve: Callable[[], None],
        on_deny: Callable[[], None],
    ) -> None:
        self.pin_factory = pin_factory
        self._devices: list[Any] = []
        try:
            self.barrier = self._add(
                OutputDevice(
                    cfg.barrier_pin,
                    active_high=cfg.barrier_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            )
            self.green = self._add(LED(cfg.green_led_pin, pin_factory=pin_factory))
            self.red = self._add(LED(cfg.red_led_pin, pin_factory=pin_factory))
            self.buzzer = self._add(Buzzer(cfg.buzzer_pin, pin_factory=pin_factory))
            self.approve = self._add(
                Button(cfg.approve_pin, bounce_time=cfg.bounce_s, pin_factory=pin_factory)
            )
            self.deny = self._add(
                Button(cfg.deny_pin, bounce_time=cfg.bounce_s, pin_factory=pin_factory)
            )
        except Exception as exc:
            self.close()
            raise HardwareError(f"cannot set up GPIO pins: {exc}") from exc
        self.approve.when_pressed = on_approve
        self.deny.when_pressed = on_deny

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    @property
    def barrier_open(self) -> bool:
        return bool(self.barrier.value)

    def open_barrier(self) -> None:
        self.barrier.on()

    def close_barrier(self) -> None:
        self.barrier.off()

    def signal(self, pattern: str) -> None:
        """Show a lane state on the LEDs and buzzer: ready, reading, approved, denied,
        surge, closed, fault."""
        if pattern == "ready":
            self.green.off()
            self.red.off()
        elif pattern == "reading":
            self.red.off()
            self.green.blink(on_time=0.15, off_time=0.15)
            self.buzzer.beep(on_time=0.05, off_time=0.05, n=1)
        elif pattern == "approved":
            self.red.off()
            self.green.on()
            self.buzzer.beep(on_time=0.15, off_time=0.1, n=1)
        elif pattern == "denied":
            self.green.off()
            self.red.blink(on_time=DENIED_SHOW_S, off_time=0.01, n=1)
            self.buzzer.beep(on_time=0.1, off_time=0.1, n=3)
        elif pattern == "surge":  # barrier held open: green steady
            self.red.off()
            self.green.on()
        elif pattern == "closed":  # checkpoint closed: red steady
            self.green.off()
            self.red.on()
        elif pattern == "fault":
            self.green.off()
            self.red.blink(on_time=0.5, off_time=0.5)
            self.buzzer.beep(on_time=0.5, off_time=0.5, n=2)
        else:
            log.warning("panel: unknown signal %r", pattern)

    def close(self) -> None:
        """Close the barrier and release every pin."""
        barrier: Any = getattr(self, "barrier", None)
        if barrier is not None and barrier in self._devices:
            barrier.off()
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()
