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
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from gpiozero import LED, Button, Buzzer, DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig
from edge.core.events import Pattern
from edge.errors import HardwareError

log = logging.getLogger(__name__)

# pattern -> (green, red, buzzer) settings; see Panel.signal
DENIED_SHOW_S = 3.0
CHORD_S = 0.25  # a press waits this long for the other button: both = a chord, not a decision


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
    """Buttons in, barrier relay, LEDs and buzzer out. The barrier starts closed.

    Officer buttons: a press counts once it is clear it is not half of a chord
    (:data:`CHORD_S`); both held for ``surge_hold_s`` is the surge toggle, and
    then neither counts as approve or deny. An opening lasts at most
    ``barrier_max_open_s`` (a guard timer that any later command cancels, so no
    stale timer can act on a later opening); surge holds it open on purpose.
    Optional inputs: a vehicle loop (``on_vehicle_passed`` once a vehicle has
    left it while the barrier is open) and a position switch
    (``on_position(ok, detail)`` when the barrier has or has not followed).
    """

    def __init__(
        self,
        cfg: GpioConfig,
        pin_factory: Any,
        on_approve: Callable[[], None],
        on_deny: Callable[[], None],
        *,
        on_both_held: Callable[[], None] = lambda: None,
        on_vehicle_passed: Callable[[], None] = lambda: None,
        on_position: Callable[[bool, str], None] = lambda ok, detail: None,
    ) -> None:
        self.cfg = cfg
        self.pin_factory = pin_factory
        self._devices: list[Any] = []
        self._handlers = {"approve": on_approve, "deny": on_deny}
        self._on_both_held = on_both_held
        self._on_vehicle_passed = on_vehicle_passed
        self._on_position = on_position
        self._lock = threading.Lock()
        self._chord = False  # both buttons went down together: no approve, no deny
        self._chord_done = False
        self._pending: dict[str, threading.Timer] = {}
        self._position_timer: threading.Timer | None = None
        self._guard: threading.Timer | None = None  # closes a pulse after barrier_max_open_s
        self._commanded = False
        try:
            self.barrier = self._add(
                DigitalOutputDevice(
                    cfg.barrier_pin,
                    active_high=cfg.barrier_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            )
            self.green = self._add(LED(cfg.green_led_pin, pin_factory=pin_factory))
            self.red = self._add(LED(cfg.red_led_pin, pin_factory=pin_factory))
            self.buzzer = self._add(Buzzer(cfg.buzzer_pin, pin_factory=pin_factory))
            self.approve = self._add(self._button(cfg.approve_pin))
            self.deny = self._add(self._button(cfg.deny_pin))
            self.loop = self._contact(cfg.loop_pin)
            self.position = self._contact(cfg.position_pin)
        except Exception as exc:
            self.close()
            raise HardwareError(f"cannot set up GPIO pins: {exc}") from exc
        self.approve.when_pressed = lambda: self._pressed("approve")
        self.deny.when_pressed = lambda: self._pressed("deny")
        for button in (self.approve, self.deny):
            button.when_held = self._held
            button.when_released = self._released
        if self.loop is not None:
            self.loop.when_deactivated = self._vehicle_left
        if self.position is not None:
            self.position.when_activated = self._position_changed
            self.position.when_deactivated = self._position_changed

    def _button(self, pin: int) -> Any:
        return Button(
            pin,
            bounce_time=self.cfg.bounce_s,
            hold_time=self.cfg.surge_hold_s,
            pin_factory=self.pin_factory,
        )

    def _contact(self, pin: int) -> Any:
        """An optional input, a contact to ground (internal pull-up); None when not fitted."""
        if pin < 0:
            return None
        return self._add(
            DigitalInputDevice(
                pin, pull_up=True, bounce_time=self.cfg.bounce_s, pin_factory=self.pin_factory
            )
        )

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    # -- officer buttons (gpiozero's threads) ---------------------------------

    def _pressed(self, which: str) -> None:
        other = self.deny if which == "approve" else self.approve
        with self._lock:
            if other.is_pressed:  # the second half of a chord: neither counts
                self._chord = True
                for timer in self._pending.values():
                    timer.cancel()
                self._pending.clear()
                return
            timer = threading.Timer(CHORD_S, self._fire, (which,))
            timer.daemon = True
            self._pending[which] = timer
        timer.start()

    def _fire(self, which: str) -> None:
        with self._lock:
            if self._pending.pop(which, None) is None or self._chord:
                return
        self._handlers[which]()

    def _held(self) -> None:
        with self._lock:
            both = self.approve.is_pressed and self.deny.is_pressed
            if not (self._chord and both) or self._chord_done:
                return
            self._chord_done = True
        log.info("panel: both buttons held %.1f s: surge toggle", self.cfg.surge_hold_s)
        self._on_both_held()

    def _released(self) -> None:
        with self._lock:
            if not self.approve.is_pressed and not self.deny.is_pressed:
                self._chord = self._chord_done = False

    # -- optional inputs --------------------------------------------------------

    def _vehicle_left(self) -> None:
        if self.barrier_open:
            log.info("panel: the vehicle has left the loop")
            self._on_vehicle_passed()

    def _position_changed(self) -> None:
        if self.position is None:
            return
        if bool(self.position.is_active) == self._commanded:
            self._on_position(True, "")
        else:  # it moved away from where it was sent (lifted by hand?): checked after the timeout
            self._expect_position(self._commanded)

    def _expect_position(self, up: bool) -> None:
        if self.position is None:
            return
        with self._lock:
            self._commanded = up
            if self._position_timer is not None:
                self._position_timer.cancel()
            timer = threading.Timer(self.cfg.position_timeout_s, self._check_position, (up,))
            timer.daemon = True
            self._position_timer = timer
        timer.start()

    def _check_position(self, up: bool) -> None:
        if self.position is None or self._commanded != up:
            return  # a newer command is being followed
        if bool(self.position.is_active) == up:
            self._on_position(True, "")
        else:
            where = "up" if up else "down"
            self._on_position(
                False, f"commanded {where} {self.cfg.position_timeout_s:g} s ago; it is not"
            )

    # -- outputs ----------------------------------------------------------------

    @property
    def barrier_open(self) -> bool:
        return bool(self.barrier.value)

    def open_barrier(self, hold: bool = False) -> None:
        """Energise the relay: for at most ``barrier_max_open_s``, or held (surge).

        Driven here, on the caller's thread, so that a relay failure raises to the
        lane (a barrier fault); only the guard's late close runs on a timer.
        """
        self._cancel_guard()
        self.barrier.on()
        if not hold:
            guard = threading.Timer(self.cfg.barrier_max_open_s, self._guard_close)
            guard.daemon = True
            with self._lock:
                self._guard = guard
            guard.start()
        self._expect_position(True)

    def close_barrier(self) -> None:
        self._cancel_guard()
        self.barrier.off()
        self._expect_position(False)

    def _cancel_guard(self) -> None:
        with self._lock:
            guard, self._guard = self._guard, None
        if guard is not None:
            guard.cancel()

    def _guard_close(self) -> None:
        with self._lock:
            if self._guard is None or self._guard is not threading.current_thread():
                return  # cancelled: a newer command owns the barrier
            self._guard = None
        log.warning(
            "barrier: open for %g s: closed by the panel's guard", self.cfg.barrier_max_open_s
        )
        try:
            self.barrier.off()
        except Exception:
            log.exception("barrier: the guard could not close it")

    def signal(self, pattern: Pattern) -> None:
        """Show a lane state on the LEDs and buzzer."""
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
        for timer in [*self._pending.values(), self._position_timer, self._guard]:
            if timer is not None:
                timer.cancel()
        barrier: Any = getattr(self, "barrier", None)
        if barrier is not None and barrier in self._devices:
            barrier.off()
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()
