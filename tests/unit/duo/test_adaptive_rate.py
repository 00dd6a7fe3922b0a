"""DUO_RATE_LIMIT_PER_MINUTE=auto: the rules one by one (figures worked out by hand), then the
whole search against a Duo that counts requests in any 60 seconds, on simulated time."""

from __future__ import annotations

import random

import pytest

from shared.duo.adaptive_rate import (
    AutoPolicy,
    AutoRate,
    after_429,
    after_slots,
    pause_found,
    reserve_found,
    sent_within_minute,
    uncounted,
)
from shared.duo.rate_limit import MAX_CLOCK_SKEW_SECONDS, MAX_LATE_SECONDS, LimitState
from simulator.rate_budget import MinuteBudget
from tests.rate_windows import most_in_a_minute

T0 = 1_800_000_000  # a whole second
POLICY = AutoPolicy()


# --- a 429 --------------------------------------------------------------------------------


def test_a_429_cuts_to_93_percent_of_what_duo_accepted_not_of_the_rate():
    # 20 + 10 accepted in the minute, and the refused request (second T0) is not counted.
    auto = AutoRate(per_minute=240, sent=((T0 - 30, 20), (T0 - 10, 10), (T0, 1)))
    cut = after_429(auto, POLICY, now=T0 + 0.5, slot=T0 + 0.2)
    assert cut.per_minute == pytest.approx(27.9)
    assert cut.found == 30
    assert cut.sent == ((T0 - 30, 20), (T0 - 10, 10))
    # Fewer than 27.9 remain once the 20 of second T0 - 30 have left the minute: at T0 + 31.
    assert cut.resume_at == T0 + 31


def test_a_429_never_raises_the_rate():
    auto = AutoRate(per_minute=10, sent=((T0 - 20, 30), (T0, 1)))
    assert after_429(auto, POLICY, now=T0 + 0.5, slot=T0).per_minute == 10


def test_a_429_after_the_resumption_halves_the_rate_the_count_was_wrong():
    # The limit dropped: 30 were accepted, the cut to 27 resumed at T0, and Duo still refuses.
    auto = AutoRate(per_minute=27, found=30, resume_at=T0, sent=((T0 - 20, 30), (T0 + 1, 1)))
    cut = after_429(auto, POLICY, now=T0 + 1.5, slot=T0 + 1.2)
    assert cut.per_minute == pytest.approx(13.5)  # half of 27, below 0.93 x 30
    assert cut.resume_at == T0 - 20 + 61


def test_a_429_for_a_request_sent_before_the_resumption_is_the_same_one_again():
    # Another instance used a slot it held before it heard of the cut: no second cut, and the
    # resumption stays where it was (else the request sent at it would pass for a straggler).
    auto = AutoRate(per_minute=27, found=30, resume_at=T0 + 5, sent=((T0 - 50, 30), (T0, 1)))
    cut = after_429(auto, POLICY, now=T0 + 0.5, slot=T0 + 0.2)
    assert (cut.per_minute, cut.resume_at) == (27, T0 + 5)


def test_refused_with_nothing_of_ours_in_the_minute_the_rate_is_the_floor_at_once():
    # Someone else spends the account's budget: what is left for us is unknown, so the least.
    auto = AutoRate(per_minute=5, sent=((T0, 1),))
    cut = after_429(auto, POLICY, now=T0 + 0.5, slot=T0)
    assert (cut.per_minute, cut.found) == (POLICY.floor, POLICY.floor)
    assert cut.resume_at == T0 + 0.5


# --- growth -------------------------------------------------------------------------------


def slots(count: int) -> list[float]:
    return [T0 + n * 0.25 for n in range(count)]


def test_the_rate_grows_only_while_requests_wait_for_their_slots():
    auto = AutoRate(per_minute=60)
    assert after_slots(auto, POLICY, T0, slots(60), waited=False).per_minute == 60


def test_the_rate_does_not_grow_before_sending_resumes_after_a_cut():
    auto = AutoRate(per_minute=60, found=70, resume_at=T0 + 10)
    assert after_slots(auto, POLICY, T0, slots(60), waited=True).per_minute == 60


def test_before_any_429_the_rate_doubles_per_minute_of_use():
    # 30 slots at 60 a minute are half a minute: times the square root of two.
    auto = AutoRate(per_minute=60)
    grown = after_slots(auto, POLICY, T0, slots(30), waited=True)
    assert grown.per_minute == pytest.approx(84.8528137)


def test_just_under_the_limit_found_the_rate_creeps():
    auto = AutoRate(per_minute=95, found=100)
    grown = after_slots(auto, POLICY, T0, slots(95), waited=True)
    assert grown.per_minute == pytest.approx(95.3325)


def test_from_far_below_the_rate_probes_fast_but_only_up_to_93_percent_of_the_limit_found():
    auto = AutoRate(per_minute=50, found=100)
    assert after_slots(auto, POLICY, T0, slots(100), waited=True).per_minute == 93


def test_above_the_limit_found_without_a_429_the_limit_has_risen_the_probe_is_fast():
    auto = AutoRate(per_minute=101, found=100)
    grown = after_slots(auto, POLICY, T0, slots(101), waited=True)
    assert grown.per_minute == pytest.approx(202)


def test_the_rate_never_exceeds_the_ceiling():
    auto = AutoRate(per_minute=590)
    assert after_slots(auto, POLICY, T0, slots(590), waited=True).per_minute == POLICY.ceiling


def test_the_minute_counts_slots_per_second_and_forgets_the_seconds_that_left_it():
    auto = AutoRate(per_minute=60, sent=((T0 - 62, 5), (T0 - 61, 4), (T0 - 60, 3)))
    after = after_slots(auto, POLICY, T0 + 0.5, [T0 + 0.5, T0 + 0.9, T0 + 1.2], waited=False)
    assert after.sent == ((T0 - 60, 3), (T0, 2), (T0 + 1, 1))
    # Second T0 - 60 reaches into the minute up to T0 + 0.5; slots not yet started do not count.
    assert sent_within_minute(after.sent, T0 + 0.5) == 5


@pytest.mark.parametrize(
    "changes",
    [
        {"floor": 0},
        {"start": 700},
        {"back_off": 1},
        {"probe": 1},
        {"creep": 0.99},
    ],
)
def test_a_policy_that_cannot_work_is_refused(changes):
    with pytest.raises(ValueError, match="auto rate"):
        AutoPolicy(**changes)


# --- the slots: what the limiter's document gets -------------------------------------------


def test_the_rate_found_is_kept_in_any_minute_of_late_arrivals_from_skewed_clocks():
    slots_, _, _ = reserve_found(LimitState(), AutoRate(30.0, found=30.0), POLICY, T0, 90)
    # Every other request arrives as late, from a clock as far behind, as the spacing allows.
    late = MAX_LATE_SECONDS + MAX_CLOCK_SKEW_SECONDS
    assert most_in_a_minute([slot + late * (n % 2) for n, slot in enumerate(slots_)]) == 30


def test_a_429_holds_everyone_until_the_minute_has_room_for_the_rate_cut_to():
    state, auto = LimitState(tat=T0 + 2), AutoRate(60.0, sent=((T0 - 30, 30), (T0, 30)))
    paused, after = pause_found(state, auto, POLICY, T0 + 1, 0.5, T0)
    assert after.per_minute == POLICY.back_off * 59
    # 59 accepted in the minute: room for 54.87 once the 30 of T0 - 30 leave it.
    assert paused == LimitState(tat=T0 + 31, paused_until=T0 + 31)
    (slot,), _, _ = reserve_found(paused, after, POLICY, T0 + 1, 1)
    assert slot == T0 + 31


# --- the whole search against the simulator's Duo, which counts any 60 seconds -------------


def saturated(duo: MinuteBudget, minutes: float) -> list[tuple[float, bool]]:
    """A catch-up that always has a next request: each waits for its slot, is answered 0.2 s
    later, and a 429 pauses everyone by the retry's jittered delay or until there is room
    again. (start, accepted) for each request."""
    rng = random.Random(9)
    state, auto = LimitState(), AutoRate.starting(POLICY)
    now, answers = float(T0), []
    while now < T0 + minutes * 60:
        (slot,), state, auto = reserve_found(state, auto, POLICY, now, 1)
        ok = duo.take(slot)
        answers.append((slot, ok))
        now = slot + 0.2
        if not ok:
            state, auto = pause_found(state, auto, POLICY, now, rng.uniform(0, 1), slot)
    return answers


def between(answers: list[tuple[float, bool]], first: float, last: float, ok: bool) -> int:
    """Requests started from minute ``first`` to minute ``last`` that were (not) accepted."""
    return sum(1 for at, accepted in answers if first <= (at - T0) / 60 < last and accepted == ok)


@pytest.mark.parametrize("limit", [5, 30, 120])
def test_a_steady_limit_is_found_and_used_to_nine_tenths_at_a_few_429s_an_hour(limit):
    answers = saturated(MinuteBudget(limit, started=T0), minutes=120)
    for hour in (0, 1):
        assert between(answers, hour * 60, hour * 60 + 60, ok=True) >= 0.9 * limit * 60
        assert between(answers, hour * 60, hour * 60 + 60, ok=False) <= 4


def test_a_dropped_limit_costs_a_few_429s_and_is_used_to_nine_tenths_again():
    answers = saturated(MinuteBudget(30, ((1800, 10),), T0), minutes=120)
    assert between(answers, 30, 40, ok=False) <= 5
    assert between(answers, 40, 120, ok=True) >= 0.9 * 10 * 80
    assert between(answers, 40, 120, ok=False) <= 6


def test_a_raised_limit_is_found_within_a_quarter_of_an_hour():
    answers = saturated(MinuteBudget(10, ((1800, 60),), T0), minutes=120)
    assert between(answers, 45, 120, ok=True) >= 0.9 * 60 * 75
    assert between(answers, 30, 120, ok=False) <= 6


def test_requests_refused_or_never_sent_are_no_longer_counted():
    auto = AutoRate(per_minute=60, found=50, resume_at=90, sent=((100, 2), (101, 1), (130, 1)))
    # One of second 100's, second 101's; one before the minute and one never counted: ignored.
    after = uncounted(auto, 131.0, [100.4, 101.9, 50.0, 120.0])
    assert after == AutoRate(per_minute=60, found=50, resume_at=90, sent=((100, 1), (130, 1)))
    assert sent_within_minute(after.sent, 131.0) == 2
