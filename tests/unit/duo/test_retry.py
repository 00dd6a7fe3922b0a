import random

import pytest

from shared.duo.errors import (
    DuoClockSkewError,
    DuoConfigurationError,
    DuoInvalidRequestError,
    DuoRateLimitedError,
    DuoTransientError,
)
from shared.duo.retry import RetryPolicy
from tests.fakes import FakeClock


class Script:
    """Raises the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_with_growing_full_jitter():
    clock = FakeClock()
    script = Script(*[DuoTransientError("x")] * 5)
    policy = RetryPolicy(max_attempts=10, base_delay=1, max_delay=8)
    assert policy.run(script, clock=clock, rng=random.Random(1)) == "ok"
    assert script.calls == 6
    ceilings = [1, 2, 4, 8, 8]
    assert len(clock.sleeps) == 5
    assert all(0 <= delay <= cap for delay, cap in zip(clock.sleeps, ceilings, strict=True))


def test_full_jitter_spans_the_whole_range():
    policy = RetryPolicy(base_delay=1, max_delay=64)
    rng = random.Random(3)
    delays = [policy.delay(4, rng) for _ in range(2000)]
    assert min(delays) < 1.0 and max(delays) > 15.0 and max(delays) <= 16.0


def test_attempts_are_bounded():
    clock = FakeClock()
    script = Script(*[DuoRateLimitedError("429")] * 20)
    with pytest.raises(DuoRateLimitedError):
        RetryPolicy(max_attempts=4).run(script, clock=clock, rng=random.Random(0))
    assert script.calls == 4


def test_total_time_is_bounded():
    clock = FakeClock()
    script = Script(*[DuoTransientError("5xx")] * 100)
    policy = RetryPolicy(max_attempts=100, max_elapsed=120, base_delay=10, max_delay=60)
    with pytest.raises(DuoTransientError):
        policy.run(script, clock=clock, rng=random.Random(0))
    assert sum(clock.sleeps) <= 120
    assert script.calls >= 2


@pytest.mark.parametrize(
    "error", [DuoConfigurationError("401"), DuoInvalidRequestError("400")], ids=["401", "400"]
)
def test_permanent_errors_are_not_retried(error):
    clock = FakeClock()
    script = Script(error)
    with pytest.raises(type(error)):
        RetryPolicy().run(script, clock=clock, rng=random.Random(0))
    assert script.calls == 1 and clock.sleeps == []


def test_clock_skew_is_retried_once_with_a_fresh_attempt():
    script = Script(DuoClockSkewError("40105"))
    assert RetryPolicy().run(script, clock=FakeClock(), rng=random.Random(0)) == "ok"
    again = Script(DuoClockSkewError("40105"), DuoClockSkewError("40105"))
    with pytest.raises(DuoClockSkewError):
        RetryPolicy().run(again, clock=FakeClock(), rng=random.Random(0))
    assert again.calls == 2


def test_the_wait_hook_replaces_sleeping():
    clock = FakeClock()
    waits = []
    script = Script(DuoRateLimitedError("429"))
    RetryPolicy().run(
        script, clock=clock, rng=random.Random(0), wait=lambda e, d: waits.append((type(e), d))
    )
    assert clock.sleeps == [] and waits[0][0] is DuoRateLimitedError
