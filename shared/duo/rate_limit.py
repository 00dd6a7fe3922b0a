"""Client-side limits on Duo requests, as a GCRA (the token bucket in its one-timestamp form).

The budget belongs to the Duo account, so every request of every instance must pass one
limiter, and a 429 must pause all of them. The arithmetic is here, once: the in-process
TokenBucket applies it under a lock, and the pipeline's shared limiter applies the same
functions to state kept in Firestore.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from shared.clock import Clock, SystemClock

K = TypeVar("K")


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Blocks until one request may be sent, and counts it."""

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` from now (after a 429)."""


# Duo counts an account's requests per minute: a limit of R means at most R requests in any
# 60-second window.
WINDOW_SECONDS = 60.0
# What the spacing holds for, so that a strict Duo never counts R + 1. A request reaches Duo
# up to MAX_LATE_SECONDS after its slot: the limiter starts it at most LATE_START_SECONDS late
# (thread wake-up, the shared document's write) and leaves the rest to setting up the
# connection. The instances' clocks, which place the slots, differ by up to
# MAX_CLOCK_SKEW_SECONDS (Cloud Run's are NTP-synced, far closer).
MAX_LATE_SECONDS = 1.0
LATE_START_SECONDS = 0.5
MAX_CLOCK_SKEW_SECONDS = 0.5
# Below LATE_START_SECONDS, a slot is used at most this fraction of an interval late, so that a
# late request never goes out together with the next one.
LATE_START_FRACTION = 0.25
# Slots end this much more than the window apart, so clock granularity cannot close the gap.
_WINDOW_MARGIN_SECONDS = 0.001


def start_lateness(rate: float) -> float:
    """How long after its slot a request may still be started, at ``rate`` a second."""
    return min(LATE_START_FRACTION / rate, LATE_START_SECONDS)


def strict_interval(rate: float, burst: int) -> float:
    """The slot spacing that keeps any 60-second window of arrivals at Duo within
    ``rate * 60`` requests, each arriving up to MAX_LATE_SECONDS after its slot, on an
    instance whose clock is off by up to MAX_CLOCK_SKEW_SECONDS.

    A GCRA with spacing T and burst b has at most b + floor(W / T) slots in any span W; 60 s of
    arrivals are at most 60 s + lateness + skew of slots, so b + (60 + lateness + skew) / T
    must stay below R + 1. With b = 1 this is 61.5 / R seconds: 2.5 % of the budget.
    """
    per_window = rate * WINDOW_SECONDS
    spans = per_window + 1 - burst
    if spans <= 0:
        raise ValueError(f"a burst of {burst} exceeds the limit of {per_window:g} a minute")
    margin = MAX_LATE_SECONDS + MAX_CLOCK_SKEW_SECONDS + _WINDOW_MARGIN_SECONDS
    return max(1.0 / rate, (WINDOW_SECONDS + margin) / spans)


@dataclass(frozen=True)
class LimitState:
    """The shared GCRA state of one Duo account (epoch seconds)."""

    tat: float = 0.0
    paused_until: float = 0.0


def reserve_slots(
    state: LimitState, now: float, count: int, interval: float, tolerance: float
) -> tuple[list[float], LimitState]:
    """The next ``count`` GCRA start times from ``now`` on, and the state after them.

    Exactly what ``count`` requests arriving at ``now`` would get from a TokenBucket with the
    same interval and tolerance ((burst - 1) * interval).
    """
    tat = state.tat
    slots = []
    for _ in range(count):
        arrival = max(tat, now)
        start = max(arrival - tolerance, state.paused_until, now)
        slots.append(start)
        tat = max(arrival, start) + interval
    return slots, LimitState(tat=tat, paused_until=state.paused_until)


def usable(slot: float, now: float, paused_until: float, lateness: float) -> bool:
    """Whether a request may start ``now`` at its ``slot``: not inside a pause, and at most
    ``lateness`` after it (a later slot is dropped, never used in a burst)."""
    return slot >= paused_until and now <= slot + lateness


def earlier_waiting(waiting: Mapping[K, float], slot: float) -> K | None:
    """Whose slot an urgent request, its own being ``slot``, takes among ``waiting`` (each
    waiter's slot): the earliest, when it comes before ``slot`` (the two then swap, so the slots
    used stay the same); None when no waiter's slot is earlier."""
    earliest = min(waiting, key=waiting.__getitem__, default=None)
    if earliest is None or waiting[earliest] >= slot:
        return None
    return earliest


def paused_state(state: LimitState, now: float, seconds: float, tolerance: float) -> LimitState:
    """The state after a pause of ``seconds`` from ``now``: nobody starts before
    ``paused_until``, and after it the sustained rate resumes without a burst (the account
    was just throttled)."""
    paused_until = max(state.paused_until, now + seconds)
    return LimitState(tat=max(state.tat, paused_until + tolerance), paused_until=paused_until)


class TokenBucket:
    """The GCRA under a lock: exact under concurrency within one process."""

    def __init__(self, rate: float = 0.5, burst: int = 1, clock: Clock | None = None) -> None:
        if rate <= 0:
            raise ValueError("the rate limit must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("the burst must be at least 1 request")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._state = LimitState()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock.now()
            (start,), self._state = reserve_slots(
                self._state, now, 1, self._interval, self._tolerance
            )
        self._clock.sleep(start - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._state = paused_state(self._state, self._clock.now(), seconds, self._tolerance)
