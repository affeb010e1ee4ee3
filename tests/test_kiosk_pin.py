"""The officer PIN: its rules in the config, and the lockout of wrong guesses, per
client and escalating, with the alarm they raise (the clock injected: no waiting)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import from_mapping
from edge.errors import ConfigError
from edge.kiosk import auth
from edge.kiosk.auth import LoginRefused, Officers, PinInvalid, check_pin

PIN = "471105"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def alarms() -> list[str]:
    return []


@pytest.fixture
def officers(clock: Clock, alarms: list[str]) -> Officers:
    return Officers(PIN, 3600, clock=clock, on_alarm=alarms.append)


def refused(officers: Officers, pin: str, client: str) -> LoginRefused:
    with pytest.raises(LoginRefused) as caught:
        officers.login(pin, client)
    return caught.value


def guess_wrong(officers: Officers, client: str, times: int) -> None:
    for _ in range(times):
        assert refused(officers, "000001", client).code == "wrong_pin"


def test_a_guesser_locks_out_itself_not_the_officer(officers: Officers, clock: Clock) -> None:
    guess_wrong(officers, "10.0.0.9", auth.MAX_FAILURES)
    locked = refused(officers, PIN, "10.0.0.9")  # even the right PIN, from there
    assert (locked.status, locked.code, locked.retry_s) == (429, "locked", auth.LOCKOUT_S)
    assert officers.login(PIN, "127.0.0.1")  # the officer at the kiosk: in
    clock.now += auth.LOCKOUT_S
    assert officers.login(PIN, "10.0.0.9")  # the lockout is over


def test_the_lockout_doubles_with_every_further_wrong_pin_up_to_a_limit(
    officers: Officers, clock: Clock
) -> None:
    guess_wrong(officers, "10.0.0.9", auth.MAX_FAILURES - 1)
    waits = []
    for _ in range(8):
        guess_wrong(officers, "10.0.0.9", 1)
        wait = refused(officers, PIN, "10.0.0.9").retry_s
        waits.append(wait)
        clock.now += wait
    assert waits == [30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0, 900.0]
    assert auth.MAX_LOCKOUT_S == 900.0


def test_a_right_pin_clears_the_clients_count(officers: Officers) -> None:
    guess_wrong(officers, "127.0.0.1", auth.MAX_FAILURES - 1)
    assert officers.login(PIN, "127.0.0.1")
    guess_wrong(officers, "127.0.0.1", auth.MAX_FAILURES - 1)
    assert officers.login(PIN, "127.0.0.1")  # never five in a row: never locked


def test_a_count_is_forgotten_after_a_quiet_hour(officers: Officers, clock: Clock) -> None:
    guess_wrong(officers, "127.0.0.1", auth.MAX_FAILURES - 1)
    clock.now += auth.FORGET_S
    guess_wrong(officers, "127.0.0.1", auth.MAX_FAILURES - 1)
    assert officers.login(PIN, "127.0.0.1")


def test_repeated_wrong_pins_raise_the_alarm_until_a_quiet_hour(
    officers: Officers, clock: Clock, alarms: list[str]
) -> None:
    guess_wrong(officers, "10.0.0.8", 2)
    guess_wrong(officers, "10.0.0.9", auth.MAX_FAILURES - 3)
    assert alarms == []  # four, from two clients: not yet
    guess_wrong(officers, "10.0.0.9", 1)
    assert alarms == [
        "5 wrong officer PINs on the screen within 60 min from 2 client(s) "
        "(10.0.0.8, 10.0.0.9); 0 locked out now"
    ]
    assert officers.alarm == alarms[-1]
    guess_wrong(officers, "10.0.0.8", 3)  # the fifth of 10.0.0.8: locked out
    assert alarms[-1].startswith("8 wrong officer PINs")
    assert alarms[-1].endswith("; 1 locked out now")
    assert officers.login(PIN, "127.0.0.1")  # the officer logs in: the alarm stays
    assert officers.alarm
    clock.now += auth.ALARM_WINDOW_S
    officers.tick()
    assert alarms[-1] == ""
    assert officers.alarm == ""


def test_a_refused_login_while_locked_out_is_no_guess(officers: Officers, clock: Clock) -> None:
    guess_wrong(officers, "10.0.0.9", auth.MAX_FAILURES)
    for _ in range(20):
        assert refused(officers, "000001", "10.0.0.9").code == "locked"
    clock.now += auth.LOCKOUT_S
    guess_wrong(officers, "10.0.0.9", 1)
    assert refused(officers, PIN, "10.0.0.9").retry_s == 2 * auth.LOCKOUT_S  # not more


def test_failure_records_are_bounded(officers: Officers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_CLIENTS", 3)
    for n in range(10):
        guess_wrong(officers, f"10.0.0.{n}", 1)
    assert len(officers._clients) == 3


@pytest.mark.parametrize(
    ("pin", "why"),
    [
        ("1", "6 to 16 digits (it has 1)"),
        ("4711", "6 to 16 digits (it has 4)"),
        ("12345678901234567", "6 to 16 digits (it has 17)"),
        ("12 34 56", "digits only"),
        ("abcdef", "digits only"),
        ("", "digits only"),
        ("000000", "one digit repeated or a run"),
        ("123456", "one digit repeated or a run"),
        ("987654", "one digit repeated or a run"),
    ],
)
def test_pins_that_are_refused(pin: str, why: str) -> None:
    with pytest.raises(PinInvalid, match=re.escape(why)):
        check_pin(pin)


def test_pins_that_are_accepted() -> None:
    assert check_pin(" 246813\n") == "246813"
    assert check_pin("1234567890123456") == "1234567890123456"
    assert check_pin("112233") == "112233"


def test_the_config_refuses_a_short_pin_naming_the_key(tmp_path: Path) -> None:
    pin = tmp_path / "officer-pin"
    pin.write_text("4711\n")
    data = {"device": {"id": "lane-1"}, "kiosk": {"pin_file": str(pin)}}
    with pytest.raises(ConfigError) as caught:
        from_mapping(data, base_dir=tmp_path)
    assert caught.value.problems == ["kiosk.pin_file: the PIN must be 6 to 16 digits (it has 4)"]
    pin.write_text("471105\n")
    assert from_mapping(data, base_dir=tmp_path).kiosk.pin_file == pin


def test_check_config_refuses_a_one_digit_pin_and_never_shows_it(tmp_path: Path) -> None:
    pin = tmp_path / "officer-pin"
    pin.write_text("7\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[device]\nid = "lane-1"\n[kiosk]\npin_file = "{pin}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "edge", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "kiosk.pin_file: the PIN must be 6 to 16 digits (it has 1)" in run.stderr
    assert "7" not in run.stderr.replace(str(tmp_path), "")
