import pytest

from shared.duo.adaptive_rate import AutoPolicy, AutoRate
from shared.duo.rate_limit import LimitState, paused_state, reserve_slots
from shared.gcp.rate_limiter import auto_fields, auto_rate, batch_size

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.5, 1),
        (1, 1),
        (1.5, 2),
        (1.9, 2),
        (10, 10),
        # 0.1 * 3 * 10 is 3.0000000000000004 in floating point: still three slots.
        (0.1 * 3 * 10, 3),
        (10.000000000000002, 10),
        # The epsilon forgives rounding error only, not a real fraction of a request.
        (10.000001, 11),
        (33.3, 34),
    ],
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


@pytest.mark.parametrize(
    ("interval", "tolerance", "idle", "offsets"),
    [
        # One every 2 s, no burst, long idle: from now, one interval apart.
        (2.0, 0.0, 100, [100, 102, 104, 106, 108, 110]),
        # 4/s with a burst of 3, long idle: three at once, then the rate.
        (0.25, 0.5, 100, [100, 100, 100, 100.25, 100.5, 100.75]),
        # 10/s with a burst of 2, idle half an interval: only the spent token is back.
        (0.1, 0.1, 0.05, [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]),
    ],
)
def test_a_batch_after_one_request_and_idle_time_starts_as_the_budget_allows(
    interval, tolerance, idle, offsets
):
    first, state = reserve_slots(LimitState(), T0, 1, interval, tolerance)
    slots, _ = reserve_slots(state, T0 + idle, 6, interval, tolerance)
    assert first == [T0]
    assert slots == pytest.approx([T0 + offset for offset in offsets], abs=1e-6)


def test_a_pause_holds_everyone_then_resumes_without_a_burst():
    state = paused_state(LimitState(tat=T0 - 10), T0, 30, 2.0)
    assert state == LimitState(tat=T0 + 32, paused_until=T0 + 30)
    slots, _ = reserve_slots(state, T0, 3, 1.0, 2.0)
    assert slots == [T0 + 30, T0 + 31, T0 + 32]


def test_a_shorter_pause_does_not_shorten_a_longer_one():
    state = paused_state(LimitState(tat=T0 + 61, paused_until=T0 + 60), T0, 5, 0.0)
    assert state == LimitState(tat=T0 + 61, paused_until=T0 + 60)


# --- the rate found, as the shared document keeps it -------------------------------------


def test_the_rate_found_is_read_back_as_written():
    found = AutoRate(per_minute=42.5, found=45.0, resume_at=T0 + 3, sent=((1, 2), (10, 1)))
    assert auto_rate(auto_fields(found), AutoPolicy()) == found


def test_the_counts_per_second_are_stored_under_string_keys_and_read_back_in_order():
    # Firestore map keys are strings, and a map comes back in no particular order.
    fields = auto_fields(AutoRate(per_minute=30.0, sent=((9, 1), (10, 4))))
    assert fields["sent"] == {"9": 1, "10": 4}
    shuffled = fields | {"sent": {"10": 4, "9": 1}}
    assert auto_rate(shuffled, AutoPolicy()).sent == ((9, 1), (10, 4))


def test_a_document_without_a_rate_found_starts_at_the_policys_rate():
    policy = AutoPolicy(start=20.0)
    assert auto_rate({"tat": T0, "paused_until": 0.0}, policy) == AutoRate(per_minute=20.0)
