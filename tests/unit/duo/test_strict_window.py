"""A limit of R a minute means at most R requests in ANY 60-second window of arrivals at Duo,
even when requests arrive a little after their slots (thread wake-up, write latency, a slow
connect) from instances whose clocks differ a little (issue 16, item 11)."""

from __future__ import annotations

import random

import pytest

from shared.duo.rate_limit import (
    MAX_CLOCK_SKEW_SECONDS,
    MAX_LATE_SECONDS,
    LimitState,
    reserve_slots,
    strict_interval,
)
from tests.rate_windows import most_in_a_minute

# Instances' clocks, ahead of the true time by up to the skew allowed for.
OFFSETS = (0.0, MAX_CLOCK_SKEW_SECONDS / 2, MAX_CLOCK_SKEW_SECONDS)


def busy_arrivals(
    interval: float, burst: int, late: float, count: int, seed: int, offsets=OFFSETS
) -> list[float]:
    """True arrival times at Duo of ``count`` requests that always wait (the catch-up), some
    after idle gaps, reserved turn by turn by instances whose clocks are ``offsets`` ahead,
    each arriving up to ``late`` after its slot (the extremes often)."""
    rng = random.Random(seed)
    state, now, arrivals = LimitState(), 1_000.0, []
    for number in range(count):
        if rng.random() < 0.05:
            now += rng.uniform(0, 3 * interval * burst)  # idle: the burst refills
        offset = offsets[number % len(offsets)]
        (slot,), state = reserve_slots(state, now + offset, 1, interval, (burst - 1) * interval)
        now = slot - offset  # the slot, in true time
        arrivals.append(now + rng.choice([0.0, late, rng.uniform(0, late)]))
    return arrivals


@pytest.mark.parametrize("per_minute", [2, 5, 30, 120])
@pytest.mark.parametrize("burst", [1, 2])
@pytest.mark.parametrize("seed", range(5))
def test_no_minute_of_arrivals_holds_more_than_the_limit(
    per_minute: int, burst: int, seed: int
) -> None:
    interval = strict_interval(per_minute / 60, burst)
    arrivals = busy_arrivals(interval, burst, MAX_LATE_SECONDS, per_minute * 6, seed)
    assert most_in_a_minute(arrivals) <= per_minute


def test_spacing_for_a_late_start_alone_lets_skew_put_one_request_too_many_into_a_minute() -> None:
    # What the limiter did before: a margin for its own lateness (half a second at 30 a
    # minute), none for a slower arrival or for the instances' clocks.
    interval = (60 + 0.5 + 0.001) / 30
    arrivals = busy_arrivals(interval, 1, MAX_LATE_SECONDS, 180, seed=1)
    assert most_in_a_minute(arrivals) == 31


def test_plain_spacing_lets_one_request_too_many_into_a_minute() -> None:
    arrivals = busy_arrivals(2.0, 1, 0.5, 180, seed=1, offsets=(0.0,))
    assert most_in_a_minute(arrivals) == 31


def test_the_spacing_costs_little_of_the_budget() -> None:
    for per_minute in (1, 2, 30, 120):
        interval = strict_interval(per_minute / 60, 1)
        assert 60 / interval >= per_minute * 0.975


def test_a_burst_above_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="burst of 3"):
        strict_interval(1 / 60, 3)
