"""Retries for Duo requests: exponential backoff with full jitter, bounded in attempts and time."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.clock import Clock
from shared.duo.errors import DuoClockSkewError, DuoError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_elapsed: float = 300.0  # seconds; fits a Cloud Run request with room to spare
    base_delay: float = 1.0
    max_delay: float = 64.0

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform over [0, min(cap, base * 2**n)], n counting from 0."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry_number))
        return rng.uniform(0.0, ceiling)

    def run(
        self,
        attempt: Callable[[], T],
        *,
        clock: Clock,
        rng: random.Random,
        wait: Callable[[DuoError, float], None] | None = None,
    ) -> T:
        """Runs ``attempt`` until it succeeds, fails for good, or the budget is spent.

        ``wait(error, delay)`` does the waiting (by default the clock sleeps), so a rate-limited
        caller can turn the delay into a pause of its shared limiter instead.
        """
        started = clock.now()
        clock_retried = False
        retry_number = 0
        while True:
            try:
                return attempt()
            except DuoClockSkewError:
                # A fresh Date on the next attempt may land inside Duo's window once.
                if clock_retried:
                    raise
                clock_retried = True
            except DuoError as error:
                if not error.retryable:
                    raise
                if retry_number + 1 >= self.max_attempts:
                    raise
                delay = self.delay(retry_number, rng)
                if clock.now() - started + delay > self.max_elapsed:
                    raise
                retry_number += 1
                (wait or (lambda _e, d: clock.sleep(d)))(error, delay)
