"""Client-side limits on Duo requests.

The budget belongs to the Duo account, so every request of every instance must pass one
limiter, and a 429 must pause all of them. The limiter here is the in-process one; the
pipeline's shared limiter implements the same interface.
"""

from __future__ import annotations

import threading
from typing import Protocol

from shared.clock import Clock, SystemClock


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Blocks until one request may be sent, and counts it."""

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` from now (after a 429)."""


class TokenBucket:
    """A token bucket in its GCRA form: one timestamp of state, exact under concurrency."""

    def __init__(self, rate: float = 0.5, burst: int = 1, clock: Clock | None = None) -> None:
        if rate <= 0:
            raise ValueError("the rate limit must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("the burst must be at least 1 request")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._theoretical_arrival = 0.0
        self._paused_until = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock.now()
            arrival = max(self._theoretical_arrival, now)
            start = max(arrival - self._tolerance, self._paused_until, now)
            self._theoretical_arrival = max(arrival, start) + self._interval
        self._clock.sleep(start - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock.now() + seconds)
