"""Live first: an urgent request takes the slot a backfill thread of the same instance is
waiting for, against the Firestore emulator with the real clock."""

import threading
import time

import pytest

from shared.clock import SystemClock
from shared.gcp.rate_limiter import FirestoreRateLimiter

pytestmark = pytest.mark.integration

SOURCE = "DI0123456789ABCDEF"
RATE = 0.5  # a slot about every 2 s: wide enough to tell which slot each request got
STEP = (60 + 0.5 + 0.001) / 30  # the limiter's spacing at this rate, from its rule
SLACK = 0.5


class SignallingClock(SystemClock):
    """The real clock, telling the test when a thread has started waiting for its slot."""

    def __init__(self) -> None:
        self.sleeping = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        super().sleep(seconds)


def test_an_urgent_request_takes_the_slot_a_backfill_thread_waits_for(firestore_db):
    clock = SignallingClock()
    limiter = FirestoreRateLimiter(firestore_db, SOURCE, rate=RATE, burst=1, clock=clock)
    limiter.acquire()  # the backfill's page now; its next slot is one step on
    began = time.time()
    done: dict[str, float] = {}

    def backfill() -> None:
        limiter.acquire()
        done["backfill"] = time.time() - began

    def live() -> None:
        limiter.acquire(urgent=True)
        done["live"] = time.time() - began

    waiting = threading.Thread(target=backfill)
    waiting.start()
    assert clock.sleeping.wait(10), "the backfill thread never waited for its slot"
    urgent = threading.Thread(target=live)
    urgent.start()
    for thread in (waiting, urgent):
        thread.join(timeout=30)
    # The live request went at the backfill's slot; the backfill at the next one.
    assert done["live"] == pytest.approx(STEP, abs=SLACK)
    assert done["backfill"] == pytest.approx(2 * STEP, abs=SLACK)
