import threading
from typing import Any

import pytest

from shared.duo import rate_limit
from shared.duo.rate_limit import LimitState, TokenBucket, reserve_slots
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


# Over a hundred times the longest a second caller took to arrive (2 ms with both cores busy);
# the correct, locked bucket pays it once.
HOLD_S = 0.25


class HeldReservation:
    """Wraps ``reserve_slots`` so that its first call stops between the read of the bucket's
    state (the argument) and the write of the new state (the return), until a second caller
    is inside as well or HOLD_S passes. Without the bucket's lock a second caller is certain
    to read the same state in that time; with it, none can."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.calls = 0
        self.inside = 0
        self.most_inside = 0

    def __call__(self, *args: Any) -> tuple[list[float], LimitState]:
        result = reserve_slots(*args)
        with self._changed:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self._changed.notify_all()
            if self.calls == 1:
                self._changed.wait_for(lambda: self.calls > 1, timeout=HOLD_S)
            self.inside -= 1
        return result


def test_concurrent_callers_never_exceed_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    class LockedClock(FakeClock):
        """Threads only reserve slots; record the start times they were given."""

        def __init__(self) -> None:
            super().__init__(1000)
            self.starts: list[float] = []
            self.starts_lock = threading.Lock()

        def sleep(self, seconds: float) -> None:
            with self.starts_lock:
                self.starts.append(self.now() + seconds)

    held = HeldReservation()
    monkeypatch.setattr(rate_limit, "reserve_slots", held)
    clock = LockedClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    callers = 40
    ready = threading.Barrier(callers)

    def caller() -> None:
        ready.wait(timeout=10)
        bucket.acquire()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    assert held.calls == callers
    assert held.most_inside == 1, "two callers read the bucket's state before either wrote it"
    starts = sorted(clock.starts)
    assert starts == [1000 + 0.5 * i for i in range(callers)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
