"""Imported by every Python process of the moved-clock test run (tools/test), and
only there: ``PYTHONPATH`` points here while the suite runs under Debian's
``faketime`` with ``FAKETIME_DONT_FAKE_MONOTONIC=1``.

libfaketime 0.9.10 (Debian 12) breaks ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)`` when the monotonic clock is left alone: it hands the kernel a
negative time and ``time.sleep`` fails with EINVAL (libfaketime issue #426,
fixed upstream after 0.9.10). Faking the monotonic clock instead makes every
timed lock wait (``sem_clockwait``, not intercepted) last for years. So the
monotonic clock stays real, and ``time.sleep`` waits in ``select`` instead,
which libfaketime leaves alone. Nothing else is changed.
"""

import os
import select
import time

if os.environ.get("FAKETIME"):
    _monotonic = time.monotonic

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = _monotonic() + seconds
        while (left := deadline - _monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
