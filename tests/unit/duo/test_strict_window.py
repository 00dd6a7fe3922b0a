"""A limit of R a minute means at most R requests in ANY 60-second window, even when requests
start a little after their slots (thread wake-up, write latency)."""

from __future__ import annotations

import random

import pytest

from shared.duo.rate_limit import LimitState, reserve_slots, strict_interval
from tests.rate_windows import most_in_a_minute


def busy_starts(interval: float, burst: int, lateness: float, count: int, seed: int) -> list[float]:
    """Start times of ``count`` requests that always wait (the catch-up), some after idle
    gaps, each started up to ``lateness`` after its slot."""
    rng = random.Random(seed)
    state, now, starts = LimitState(), 1_000.0, []
    for _ in range(count):
        if rng.random() < 0.05:
            now += rng.uniform(0, 3 * interval * burst)  # idle: the burst refills
        (slot,), state = reserve_slots(state, now, 1, interval, (burst - 1) * interval)
        starts.append(slot + rng.uniform(0, lateness))
        now = slot
    return starts


@pytest.mark.parametrize("per_minute", [2, 5, 30, 120])
@pytest.mark.parametrize("burst", [1, 2])
@pytest.mark.parametrize("seed", range(5))
def test_no_minute_holds_more_than_the_limit(per_minute: int, burst: int, seed: int) -> None:
    rate = per_minute / 60
    lateness = min(0.25 / rate, 1.0)
    interval = strict_interval(rate, burst, lateness)
    starts = busy_starts(interval, burst, lateness, per_minute * 6, seed)
    assert most_in_a_minute(starts) <= per_minute


def test_plain_spacing_lets_one_request_too_many_into_a_minute() -> None:
    # What the limiter did before: slots 60/R apart, used up to a quarter interval late.
    rate = 30 / 60
    starts = busy_starts(1 / rate, 1, 0.25 / rate, 180, seed=1)
    assert most_in_a_minute(starts) == 31


def test_the_spacing_costs_little_of_the_budget() -> None:
    for per_minute in (2, 30, 120):
        rate = per_minute / 60
        interval = strict_interval(rate, 1, min(0.25 / rate, 1.0))
        assert 60 / interval >= per_minute * 0.98


def test_a_burst_above_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="burst of 3"):
        strict_interval(1 / 60, 3, 0.0)
