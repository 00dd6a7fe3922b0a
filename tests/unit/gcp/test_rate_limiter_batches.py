import pytest

from shared.duo.rate_limit import LimitState, TokenBucket, paused_state, reserve_slots
from shared.gcp.rate_limiter import batch_size
from tests.fakes import FakeClock

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0.5, 1), (1, 1), (1.5, 2), (1.9, 2), (10, 10), (1 / 0.1, 10), (33.3, 34)],
)
def test_a_batch_is_at_least_one_second_of_budget_and_one_slot(rate, expected):
    assert batch_size(rate) == expected


def test_from_idle_the_slots_start_now_one_interval_apart():
    slots, state = reserve_slots(LimitState(tat=T0 - 50), T0, 4, 0.25, 0.0)
    assert slots == [T0, T0 + 0.25, T0 + 0.5, T0 + 0.75]
    assert state == LimitState(tat=T0 + 1.0, paused_until=0.0)


def test_a_reservation_continues_where_the_last_one_ended():
    slots, state = reserve_slots(LimitState(tat=T0 + 3), T0, 2, 0.5, 0.0)
    assert slots == [T0 + 3, T0 + 3.5]
    assert state.tat == T0 + 4


def test_the_burst_gives_that_many_slots_at_once_then_the_rate():
    # rate 4/s, burst 3: tolerance 2 intervals.
    slots, state = reserve_slots(LimitState(), T0, 4, 0.25, 0.5)
    assert slots == [T0, T0, T0, T0 + 0.25]
    assert state.tat == T0 + 1.0


def test_no_slot_before_paused_until():
    slots, state = reserve_slots(LimitState(tat=T0, paused_until=T0 + 30), T0, 2, 1.0, 0.0)
    assert slots == [T0 + 30, T0 + 31]
    assert state == LimitState(tat=T0 + 32, paused_until=T0 + 30)


@pytest.mark.parametrize(("rate", "burst", "idle"), [(0.5, 1, 100), (4, 3, 100), (10, 2, 0.05)])
def test_a_batch_is_what_a_token_bucket_gives_requests_arriving_together(rate, burst, idle):
    clock = FakeClock(T0)
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    bucket.acquire()
    clock.advance(idle)
    now = clock.now()
    expected = []
    for _ in range(6):
        bucket.acquire()
        expected.append(clock.now())

    interval = 1 / rate
    first, state = reserve_slots(LimitState(), T0, 1, interval, (burst - 1) * interval)
    slots, _ = reserve_slots(state, now, 6, interval, (burst - 1) * interval)
    assert first == [T0]
    assert slots == pytest.approx(expected, abs=1e-6)


def test_a_pause_holds_everyone_then_resumes_without_a_burst():
    state = paused_state(LimitState(tat=T0 - 10), T0, 30, 2.0)
    assert state == LimitState(tat=T0 + 32, paused_until=T0 + 30)
    slots, _ = reserve_slots(state, T0, 3, 1.0, 2.0)
    assert slots == [T0 + 30, T0 + 31, T0 + 32]


def test_a_shorter_pause_does_not_shorten_a_longer_one():
    state = paused_state(LimitState(tat=T0 + 61, paused_until=T0 + 60), T0, 5, 0.0)
    assert state == LimitState(tat=T0 + 61, paused_until=T0 + 60)
