"""The panel on gpiozero's own MockFactory."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig
from edge.devices.gpio import Panel, make_pin_factory
from edge.errors import HardwareError

from .conftest import watched_factory

CFG = GpioConfig(pin_factory="mock")


def panel(cfg: GpioConfig = CFG) -> tuple[Panel, MockFactory, list[str]]:
    factory = watched_factory()
    presses: list[str] = []
    p = Panel(cfg, factory, lambda: presses.append("approve"), lambda: presses.append("deny"))
    return p, factory, presses


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


def test_buttons_call_their_handlers() -> None:
    p, factory, presses = panel()
    factory.pin(CFG.approve_pin).drive_low()
    factory.pin(CFG.approve_pin).drive_high()
    factory.pin(CFG.deny_pin).drive_low()
    assert presses == ["approve", "deny"]
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
