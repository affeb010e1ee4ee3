"""The panel on gpiozero's own MockFactory."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import replace

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig
from edge.devices.gpio import Panel, make_pin_factory
from edge.errors import HardwareError

from .conftest import watched_factory

CFG = GpioConfig(pin_factory="mock")


class Calls:
    """What the panel reported, in order, awaitable."""

    def __init__(self) -> None:
        self.queue: queue.Queue[str] = queue.Queue()

    def __call__(self, what: str) -> Callable[..., None]:
        return lambda *args: self.queue.put(what + "".join(f" {a}" for a in args if a != ""))

    def next(self, timeout: float = 3.0) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the panel reported nothing within {timeout} s")


def panel(cfg: GpioConfig = CFG) -> tuple[Panel, MockFactory, Calls]:
    factory = watched_factory()
    calls = Calls()
    p = Panel(
        cfg,
        factory,
        calls("approve"),
        calls("deny"),
        on_both_held=calls("surge"),
        on_vehicle_passed=calls("passed"),
        on_position=calls("position"),
    )
    return p, factory, calls


def test_barrier_starts_closed_and_follows_commands() -> None:
    p, factory, _ = panel()
    relay = factory.pin(CFG.barrier_pin)
    assert relay.state is False
    p.open_barrier()
    assert relay.state is True
    assert p.barrier_open
    p.close_barrier()
    assert relay.state is False
    relay.assert_states([False, True, False])
    p.close()


def test_active_low_relay_starts_closed_too() -> None:
    cfg = GpioConfig(pin_factory="mock", barrier_active_high=False)
    p, factory, _ = panel(cfg)
    relay = factory.pin(cfg.barrier_pin)
    assert relay.state is True  # de-energised
    assert not p.barrier_open
    p.open_barrier()
    assert relay.state is False
    p.close()


def test_buttons_call_their_handlers_once_they_are_not_a_chord() -> None:
    p, factory, calls = panel()
    factory.pin(CFG.approve_pin).drive_low()
    factory.pin(CFG.approve_pin).drive_high()
    assert calls.next() == "approve"
    factory.pin(CFG.deny_pin).drive_low()
    assert calls.next() == "deny"
    factory.pin(CFG.deny_pin).drive_high()
    p.close()


def test_both_buttons_held_toggle_surge_and_decide_nothing() -> None:
    cfg = replace(CFG, surge_hold_s=0.3)
    p, factory, calls = panel(cfg)
    approve, deny = factory.pin(cfg.approve_pin), factory.pin(cfg.deny_pin)
    approve.drive_low()
    deny.drive_low()
    assert calls.next() == "surge"  # after surge_hold_s, once
    approve.drive_high()
    deny.drive_high()
    # a chord let go before the hold time: nothing either
    approve.drive_low()
    deny.drive_low()
    approve.drive_high()
    deny.drive_high()
    # the next single press is the next thing the panel reports: nothing came between
    approve.drive_low()
    approve.drive_high()
    assert calls.next() == "approve"
    assert calls.queue.empty()
    p.close()


def test_the_relay_is_a_pulse_no_longer_than_the_maximum() -> None:
    cfg = replace(CFG, barrier_max_open_s=0.3)
    p, factory, _ = panel(cfg)
    relay = factory.pin(cfg.barrier_pin)
    relay.clear_states()
    p.open_barrier()  # the lane "forgets" to close it
    assert relay.wait_for(False, 3)
    relay.assert_states_and_times([(0.0, False), (0.0, True), (0.3, False)])
    p.close()


def test_a_new_command_cancels_the_pending_close() -> None:
    cfg = replace(CFG, barrier_max_open_s=0.4)
    p, factory, _ = panel(cfg)
    relay = factory.pin(cfg.barrier_pin)
    p.open_barrier()
    p.close_barrier()  # closed early: the pulse's own close must not come later...
    p.open_barrier(hold=True)  # ...and must not close a later, held opening
    assert not relay.wait_for(False, 0.8), "a stale timer closed the held barrier"
    p.close_barrier()
    assert relay.state is False
    p.close()


def test_the_vehicle_loop_reports_a_vehicle_that_passed_an_open_barrier() -> None:
    cfg = replace(CFG, loop_pin=24)
    p, factory, calls = panel(cfg)
    loop = factory.pin(24)
    loop.drive_low()  # a vehicle over the loop while the barrier is closed: nothing
    loop.drive_high()
    p.open_barrier()
    loop.drive_low()
    loop.drive_high()
    assert calls.next() == "passed"
    assert calls.queue.empty()
    p.close()


def test_the_position_switch_raises_and_clears() -> None:
    cfg = replace(CFG, position_pin=25, position_timeout_s=0.2)
    p, factory, calls = panel(cfg)
    switch = factory.pin(25)
    p.open_barrier()  # the barrier does not go up
    report = calls.next()
    assert report.startswith("position False commanded up 0.2 s ago")
    switch.drive_low()  # it gets there
    assert calls.next() == "position True"
    p.close()


def test_signals_drive_the_leds() -> None:
    p, factory, _ = panel()
    green, red = factory.pin(CFG.green_led_pin), factory.pin(CFG.red_led_pin)
    p.signal("approved")
    assert (green.state, red.state) == (True, False)
    p.signal("ready")
    assert (green.state, red.state) == (False, False)
    p.signal("denied")
    assert red.wait_for(True)  # on for a while, in gpiozero's blink thread
    assert green.state is False
    p.signal("ready")
    p.close()


def test_close_leaves_the_barrier_closed() -> None:
    p, factory, _ = panel()
    p.open_barrier()
    p.close()
    assert factory.pin(CFG.barrier_pin).state is False


def test_unknown_pin_factory_names_the_key() -> None:
    with pytest.raises(HardwareError, match=r"gpio.pin_factory: unknown pin factory 'gpio9'"):
        make_pin_factory("gpio9")


def test_real_pin_factory_without_gpio_fails_loudly() -> None:
    with pytest.raises(HardwareError, match="cannot start on this machine"):
        make_pin_factory("lgpio")


def test_pin_in_use_is_a_hardware_error() -> None:
    factory = MockFactory()
    first = Panel(CFG, factory, lambda: None, lambda: None)
    with pytest.raises(HardwareError, match="cannot set up GPIO pins"):
        Panel(CFG, factory, lambda: None, lambda: None)
    first.close()


def test_denied_and_fault_patterns_have_their_timing() -> None:
    p, factory, _ = panel()
    buzzer, red = factory.pin(CFG.buzzer_pin), factory.pin(CFG.red_led_pin)
    buzzer.clear_states()
    p.signal("denied")  # three short beeps
    assert buzzer.wait_for(True)
    for _ in range(3):
        assert buzzer.wait_for(False)
        if len(buzzer.states) >= 7:
            break
        assert buzzer.wait_for(True)
    buzzer.assert_states_and_times(
        [
            (0.0, False),
            (0.0, True),
            (0.1, False),
            (0.1, True),
            (0.1, False),
            (0.1, True),
            (0.1, False),
        ]
    )
    p.signal("ready")
    assert red.wait_for(False)
    red.clear_states()
    p.signal("fault")  # red blinks slowly (0.5 s on, 0.5 s off) until the fault clears
    for state in (True, False, True, False):
        assert red.wait_for(state, 3)
    red.assert_states_and_times(
        [(0.0, False), (0.0, True), (0.5, False), (0.5, True), (0.5, False)]
    )
    p.signal("ready")
    assert red.wait_for(False)
    p.close()


def test_a_barrier_moved_away_from_its_position_is_reported() -> None:
    cfg = replace(CFG, position_pin=25, position_timeout_s=0.2)
    p, factory, calls = panel(cfg)
    switch = factory.pin(25)
    p.close_barrier()
    assert calls.next() == "position True"  # down, as commanded
    switch.drive_low()  # lifted by hand while it should be down
    assert calls.next().startswith("position False commanded down")
    switch.drive_high()
    assert calls.next() == "position True"
    p.close()
