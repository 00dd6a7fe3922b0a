"""Test doubles shared by the suites (never used by production code)."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock for tests: sleeping advances time instantly and is recorded. Thread-safe, so a
    test's threads (and a simulator's handler threads) can share it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
