"""The Firestore-shared limiter keeps a strict Duo happy: never R + 1 requests in a 60-second
window, though threads wake up late and instances share the slots through the emulator.

Time is a clock that oversleeps by up to the lateness the limiter accepts, at random: what a
busy instance does. Nothing sleeps for real.
"""

from __future__ import annotations

import random
import threading

import pytest
from google.cloud import firestore

from shared.gcp.rate_limiter import (
    LATE_FRACTION,
    MAX_LATE_SECONDS,
    FirestoreRateLimiter,
    batch_size,
)
from tests.fakes import FakeClock
from tests.rate_windows import most_in_a_minute

pytestmark = pytest.mark.integration


class OversleepingClock(FakeClock):
    """Each sleep ends up to ``late`` seconds after it should (one seeded draw per sleep)."""

    def __init__(self, late: float, seed: int) -> None:
        super().__init__()
        self._late = late
        self._rng = random.Random(seed)
        self._draw = threading.Lock()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._draw:
                over = self._rng.uniform(0, self._late)
            super().sleep(seconds + over)


@pytest.mark.parametrize("per_minute", [5, 30, 120])
def test_two_instances_never_put_r_plus_one_requests_in_a_minute(
    firestore_db: firestore.Client, per_minute: int
) -> None:
    rate = per_minute / 60
    # Oversleeping by up to the accepted lateness: a later start is dropped, not used.
    clock = OversleepingClock(min(LATE_FRACTION / rate, MAX_LATE_SECONDS) * 0.99, seed=per_minute)
    instances = [
        FirestoreRateLimiter(firestore_db, f"strict-{per_minute}", rate=rate, clock=clock)
        for _ in range(2)
    ]
    starts = []
    for number in range(per_minute * 4):
        # Turn by turn, each using up the slots it reserved (one time stands for both).
        instances[number // batch_size(rate) % 2].acquire()
        starts.append(clock.now())
    assert most_in_a_minute(starts) <= per_minute
    # ...and the budget is still used: the last start is close to 4 minutes in.
    assert starts[-1] - starts[0] < 4 * 60 * 1.03
