import itertools
import threading

import pytest

from shared.duo.rate_limit import TokenBucket
from tests.fakes import FakeClock


def test_default_is_one_request_every_two_seconds():
    clock = FakeClock(1000)
    bucket = TokenBucket(clock=clock)
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == [0, 2, 2, 2, 2]


def test_burst_allows_that_many_at_once_then_the_rate():
    clock = FakeClock(1000)
    bucket = TokenBucket(rate=1, burst=3, clock=clock)
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == [0, 0, 0, 1, 1]


def test_idle_time_refills_only_up_to_the_burst():
    clock = FakeClock(1000)
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    bucket.acquire()
    clock.advance(100)
    for _ in range(4):
        bucket.acquire()
    assert clock.sleeps == [0, 0, 0, 1, 1]


def test_pause_holds_everyone():
    clock = FakeClock(1000)
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    bucket.acquire()
    bucket.pause(30)
    bucket.acquire()
    assert clock.sleeps[-1] == pytest.approx(30)


def test_after_a_pause_the_rate_resumes_without_a_burst():
    # The account was just throttled: a full burst the moment the pause ends would meet
    # another 429, so callers resume one interval apart.
    clock = FakeClock(1000)
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    bucket.pause(30)
    for _ in range(3):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([30, 0.1, 0.1])


def test_concurrent_callers_never_exceed_the_rate():
    class LockedClock(FakeClock):
        """Threads only reserve slots; record the start times they were given."""

        def __init__(self):
            super().__init__(1000)
            self.starts = []
            self.lock = threading.Lock()

        def sleep(self, seconds):
            with self.lock:
                self.starts.append(self.now() + seconds)

    clock = LockedClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts = sorted(clock.starts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 40 and min(gaps) == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
