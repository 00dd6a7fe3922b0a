"""How long a window document lives, how the watermark passes windows, which windows can be
checked for late records, and a window that waits for a bucket it cannot search: pure rules
both stores apply."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.pipeline.windows import (
    LANDING_TIMEOUT_MS,
    bucket_wait,
    checkable,
    checked,
    claim,
    new_window,
    passed,
    release,
    sweep_step,
    watermark_run,
)

MIN = 60_000
DAY = 1440 * MIN
CHECKS = (15 * MIN, DAY)
# 2027-01-15T08:00:00Z, and thirty days on.
NOW = 1_800_000_000_000
THIRTY_DAYS_ON = datetime(2027, 2, 14, 8, 0, tzinfo=UTC)


def _window(start_min: int, end_min: int, state: str = "done", **fields: object) -> dict:
    return new_window(start_min * MIN, end_min * MIN, 0) | {"state": state} | fields


# --- the watermark: over contiguous done windows, half-open ------------------------------


def test_the_watermark_moves_over_contiguous_done_windows_each_starting_where_the_last_ends():
    docs = [_window(0, 5), _window(5, 6), _window(6, 9)]
    assert watermark_run(0, docs) == (9 * MIN, 3)


def test_the_watermark_stops_at_a_window_that_is_not_done_and_at_a_hole():
    assert watermark_run(0, [_window(0, 5), _window(5, 6, "quarantined"), _window(6, 9)]) == (
        5 * MIN,
        1,
    )
    assert watermark_run(0, [_window(0, 5), _window(5, 6, "failed")]) == (5 * MIN, 1)
    assert watermark_run(0, [_window(0, 5), _window(6, 9)]) == (5 * MIN, 1)  # 5-6 missing
    assert watermark_run(0, [_window(1, 5)]) == (0, 0)


# --- expiry: only a window done for good -------------------------------------------------


def test_a_done_window_the_watermark_passes_with_no_check_to_come_expires_thirty_days_on():
    update = passed(_window(0, 5, check_level=2, next_check_at_ms=None), NOW)
    assert update == {"passed_at_ms": NOW, "expire_at": THIRTY_DAYS_ON}
    # With late-record checks off, a window never has a check to come.
    assert passed(_window(0, 5), NOW)["expire_at"] == THIRTY_DAYS_ON


def test_a_window_with_a_check_to_come_expires_only_after_its_last_check():
    doc = _window(0, 5, check_level=0, next_check_at_ms=20 * MIN)
    doc |= passed(doc, NOW)
    assert doc["expire_at"] is None  # the watermark passed it, a check is still to come
    doc |= checked(doc, 0, CHECKS, True, NOW)
    assert doc["expire_at"] is None  # the day-after check is still to come
    later = NOW + DAY
    doc |= checked(doc, 1, CHECKS, True, later)
    assert doc["expire_at"] == datetime(2027, 2, 15, 8, 0, tzinfo=UTC)


def test_a_check_later_than_thirty_days_is_made_before_the_window_expires():
    # REPAIR_CHECKS=15m,60d: the watermark passes the window long before its last check.
    checks = (15 * MIN, 60 * DAY)
    doc = _window(0, 5, check_level=1, next_check_at_ms=5 * MIN + 60 * DAY)
    doc |= passed(doc, 20 * MIN)
    assert doc["expire_at"] is None
    doc |= checked(doc, 1, checks, True, NOW)
    assert doc["expire_at"] == THIRTY_DAYS_ON


def test_a_window_the_previous_version_passed_expires_after_its_last_check():
    # Given its expiry when passed, before passed_at_ms was kept.
    doc = _window(0, 5, check_level=1, next_check_at_ms=DAY + 5 * MIN, expire_at=THIRTY_DAYS_ON)
    assert checked(doc, 1, CHECKS, True, NOW + DAY)["expire_at"] == datetime(
        2027, 2, 15, 8, 0, tzinfo=UTC
    )


def test_a_window_ahead_of_the_watermark_does_not_expire_after_its_last_check():
    doc = _window(0, 5, check_level=1, next_check_at_ms=DAY + 5 * MIN)
    assert checked(doc, 1, CHECKS, True, NOW)["expire_at"] is None


@pytest.mark.parametrize(
    "passed_as",
    [
        passed,
        # Given its expiry when passed, before passed_at_ms was kept.
        lambda doc, now: {"expire_at": THIRTY_DAYS_ON},
    ],
    ids=["passed", "passed by the previous version"],
)
def test_a_window_reopened_behind_the_watermark_never_expires_until_done_again(passed_as):
    # The watermark passed it, it expired after its last check; then (a late record) it is
    # read again.
    doc = _window(0, 5, check_level=1, next_check_at_ms=DAY + 5 * MIN, pages=2)
    doc |= passed_as(doc, NOW)
    doc |= checked(doc, 1, CHECKS, False, NOW)
    assert (doc["state"], doc["expire_at"]) == ("planned", None)
    # Read again: fetched, and done once its batch lands; it expires again.
    doc |= {"state": "fetched", "pages": 3, "fetched_at_ms": NOW}
    step = sweep_step(doc, NOW + MIN, lambda start: 1, lambda start: {2: (None, None)})
    assert step.completed
    assert step.update["expire_at"] == datetime(2027, 2, 14, 8, 1, tzinfo=UTC)


def test_a_window_stopped_behind_the_watermark_never_expires():
    old = {"passed_at_ms": 0, "expire_at": THIRTY_DAYS_ON}  # as the code before gave it
    # Its batches do not land, read after read: quarantined.
    fetched = _window(0, 5, "fetched", pages=1, fetched_at_ms=0, landing_rereads=3) | old
    step = sweep_step(fetched, LANDING_TIMEOUT_MS + 1, lambda start: 0, lambda start: {})
    assert (step.update["state"], step.update["expire_at"]) == ("quarantined", None)
    # Read again for a gap.
    fetched = _window(0, 5, "fetched", pages=1, fetched_at_ms=0) | old
    step = sweep_step(fetched, LANDING_TIMEOUT_MS + 1, lambda start: 0, lambda start: {})
    assert step.reread and step.update["expire_at"] is None
    # Its fetch fails.
    held, _ = claim(_window(0, 5, "planned") | old, "s", "w", "me", NOW, 60_000)
    assert held is not None
    assert release(held, NOW, "DuoError: 500")["expire_at"] is None
    assert release(replace(held, failures=7), NOW, "broken")["expire_at"] is None


def test_a_window_finishing_ahead_of_the_watermark_does_not_expire():
    doc = _window(0, 5, "fetched", pages=1, fetched_at_ms=NOW)
    step = sweep_step(doc, NOW + MIN, lambda start: 1, lambda start: {0: (None, None)}, CHECKS)
    assert step.completed and step.update["expire_at"] is None


# --- which windows can be checked for late records ---------------------------------------


def test_only_a_done_window_whose_check_is_due_can_be_checked():
    assert checkable(_window(0, 5, next_check_at_ms=NOW), NOW)
    assert not checkable(_window(0, 5, next_check_at_ms=NOW + 1), NOW)
    assert not checkable(_window(0, 5, next_check_at_ms=None), NOW)
    assert not checkable(_window(0, 5), NOW)
    for state in ("planned", "fetching", "fetched", "failed", "quarantined"):
        assert not checkable(_window(0, 5, state, next_check_at_ms=NOW - DAY), NOW)


# --- a bucket that cannot be searched ----------------------------------------------------


def test_a_window_that_waits_for_the_bucket_is_counted_until_it_moves_on():
    doc = _window(0, 5, "fetched", pages=2, fetched_at_ms=0)
    doc |= bucket_wait(doc, "Forbidden: 403", NOW)
    doc |= bucket_wait(doc, "Forbidden: 403", NOW + MIN)
    assert (doc["bucket_waits"], doc["error"], doc["state"]) == (2, "Forbidden: 403", "fetched")
    step = sweep_step(doc, NOW + 2 * MIN, lambda start: 2, lambda start: {})
    assert step.completed and step.update["bucket_waits"] == 0
    reread = sweep_step(
        doc, LANDING_TIMEOUT_MS + 1, lambda start: 1, lambda start: {0: (None, "1,a")}
    )
    assert reread.reread and reread.update["bucket_waits"] == 0
