"""The Firestore-shared limiter keeps a strict Duo happy: never R + 1 requests in a 60-second
window of arrivals, though threads wake up late, connections are slow to set up, instances'
clocks differ and the instances share the slots through the emulator (issue 16, item 11).

Time is a true clock that oversleeps by up to the lateness the limiter accepts, at random: what
a busy instance does; each instance reads it through its own offset. Nothing sleeps for real.
"""

from __future__ import annotations

import random
import threading

import pytest
from google.cloud import firestore

from shared.duo.rate_limit import MAX_CLOCK_SKEW_SECONDS, MAX_LATE_SECONDS, start_lateness
from shared.gcp.rate_limiter import FirestoreRateLimiter, batch_size
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


class SkewedClock:
    """One instance's clock: ``offset`` seconds ahead of the true one, sleeping on it."""

    def __init__(self, true: FakeClock, offset: float) -> None:
        self._true = true
        self._offset = offset

    def now(self) -> float:
        return self._true.now() + self._offset

    def sleep(self, seconds: float) -> None:
        self._true.sleep(seconds)


@pytest.mark.parametrize("per_minute", [5, 30, 120])
def test_instances_with_skewed_clocks_never_put_r_plus_one_arrivals_in_a_minute(
    firestore_db: firestore.Client, per_minute: int
) -> None:
    rate = per_minute / 60
    # Oversleeping by up to the lateness the limiter starts a request with (a later start is
    # dropped, not used), and the connection taking the rest of MAX_LATE_SECONDS.
    started_late = start_lateness(rate) * 0.99
    connect = MAX_LATE_SECONDS - started_late
    true = OversleepingClock(started_late, seed=per_minute)
    rng = random.Random(per_minute)
    offsets = (0.0, MAX_CLOCK_SKEW_SECONDS / 2, MAX_CLOCK_SKEW_SECONDS)
    instances = [
        FirestoreRateLimiter(
            firestore_db, f"skewed-{per_minute}", rate=rate, clock=SkewedClock(true, offset)
        )
        for offset in offsets
    ]
    arrivals = []
    for number in range(per_minute * 4):
        # Turn by turn, each using up the slots it reserved (one true time stands for all).
        instances[number // batch_size(rate) % len(instances)].acquire()
        arrivals.append(true.now() + rng.choice([0.0, connect, rng.uniform(0, connect)]))
    assert most_in_a_minute(arrivals) <= per_minute
    # ...and the budget is still used: the last arrival is close to 4 minutes in.
    assert arrivals[-1] - arrivals[0] < 4 * 60 * 1.05
