"""The fleet benchmark's freshness split: a record counts as an active account's when its
account had a record in the hour before it, else as the first record after a quiet hour; and
the planner calls of a phase are the ones that started in it."""

from __future__ import annotations

from harness.fleet_bench import TimedCalls, freshness_by_activity

HOUR = 3600.0


def test_records_are_told_apart_by_their_accounts_last_hour() -> None:
    history = {
        "busy": [10_000.0, 10_000.0 + HOUR - 60, 10_000.0 + HOUR],  # a record a minute before
        "quiet": [10_000.0, 10_000.0 + 2 * HOUR],  # two hours of silence before the second
        "new": [10_000.0 + HOUR],  # nothing before it at all
    }
    landings = [
        ("busy", 10_000.0 + HOUR, 10_000.0 + HOUR + 150),
        ("quiet", 10_000.0 + 2 * HOUR, 10_000.0 + 2 * HOUR + 400),
        ("new", 10_000.0 + HOUR, 10_000.0 + HOUR + 300),
        ("busy", 10_000.0, 10_050.0),  # before the measured span: not counted
    ]
    ages = freshness_by_activity(landings, history, start=10_001.0, end=10_000.0 + 3 * HOUR)
    assert ages == {"active": [150.0], "after_quiet": [400.0, 300.0]}


def test_a_record_exactly_an_hour_after_the_last_is_still_an_active_accounts() -> None:
    history = {"a": [0.0, HOUR]}
    ages = freshness_by_activity([("a", HOUR, HOUR + 10)], history, start=1.0, end=2 * HOUR)
    assert ages == {"active": [10.0], "after_quiet": []}


def test_a_phase_holds_the_planner_calls_started_in_it() -> None:
    answers = iter([[{"planned": 1}], [{"planned": 2}]])
    timed = TimedCalls(lambda: next(answers))
    assert timed() == [{"planned": 1}]
    assert timed() == [{"planned": 2}]
    [(first, _), (second, _)] = timed.calls
    assert len(timed.between(first, second)) == 1
    assert len(timed.between(first, second + 1)) == 2
