import threading
from typing import Any

import pytest

from shared.duo import rate_limit
from shared.duo.rate_limit import (
    LimitState,
    TokenBucket,
    earlier_waiting,
    reserve_slots,
    usable,
)
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


class HeldReservation:
    """Stands in for ``reserve_slots`` and for the bucket's lock. The first reservation stops
    between its read of the bucket's state (the argument) and its write (the return) until a
    second caller is inside as well (the lock is missing, or does not cover the reservation)
    or waits for the lock the first one holds (it does). One of the two comes for certain,
    whatever the scheduler does: nothing here waits for time to pass."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: threading.Thread | None = None
        self._changed = threading.Condition()
        self.calls = 0
        self.inside = 0
        self.most_inside = 0
        self.waiting = 0  # callers waiting for the lock
        self.raced = False  # a caller waited for the lock while the first reservation held it

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            with self._changed:
                self.waiting += 1
                self._changed.notify_all()
            self._lock.acquire()
            with self._changed:
                self.waiting -= 1
        with self._changed:
            self._holder = threading.current_thread()

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._holder = None
        self._lock.release()

    def __call__(self, *args: Any) -> tuple[list[float], LimitState]:
        result = reserve_slots(*args)
        me = threading.current_thread()
        with self._changed:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self._changed.notify_all()
            if self.calls == 1:
                # The bound only ends a broken test instead of hanging it.
                self._changed.wait_for(
                    lambda: self.most_inside > 1 or (self._holder is me and self.waiting > 0),
                    timeout=10,
                )
                self.raced = self._holder is me and self.waiting > 0
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
    monkeypatch.setattr(bucket, "_lock", held)
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
    assert held.raced, "no caller came while the first reservation was held"
    starts = sorted(clock.starts)
    assert starts == [1000 + 0.5 * i for i in range(callers)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


# --- the shared limiter's slots: which one a request may start at, which one an urgent takes


def test_a_slot_is_usable_up_to_its_lateness_after_it_and_not_inside_a_pause():
    assert usable(10.0, now=10.0, paused_until=0.0, lateness=0.25)
    assert usable(10.0, now=10.25, paused_until=0.0, lateness=0.25)
    assert not usable(10.0, now=10.26, paused_until=0.0, lateness=0.25)  # dropped: no burst
    assert usable(10.0, now=9.0, paused_until=10.0, lateness=0.25)  # the pause ends at it
    assert not usable(10.0, now=9.0, paused_until=10.5, lateness=0.25)


def test_an_urgent_request_takes_the_earliest_slot_waited_for_when_it_comes_before_its_own():
    waiting = {"backfill-1": 12.0, "backfill-2": 11.0, "backfill-3": 13.0}
    assert earlier_waiting(waiting, 14.0) == "backfill-2"
    assert earlier_waiting(waiting, 11.5) == "backfill-2"


def test_an_urgent_request_keeps_its_own_slot_when_none_waited_for_is_earlier():
    assert earlier_waiting({"backfill": 12.0}, 12.0) is None
    assert earlier_waiting({"backfill": 12.0}, 11.0) is None
    assert earlier_waiting({}, 11.0) is None
