"""Time as a dependency: everything that reads the clock or waits takes a Clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait; a fake clock just advances."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def now_ms(clock: Clock) -> int:
    return int(clock.now() * 1000)


def utc_from_us(us: int) -> datetime:
    """Microseconds since the epoch (Duo's ``ts`` precision) as a UTC datetime."""
    return EPOCH + timedelta(microseconds=us)
