"""How long a window document lives, how the watermark passes windows, and a window that
waits for a bucket it cannot search: pure rules both stores apply."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.pipeline.windows import (
    LANDING_TIMEOUT_MS,
    bucket_wait,
    claim,
    new_window,
    passed,
    release,
    reopened,
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


def test_a_done_window_the_watermark_passes_expires_thirty_days_after_its_last_check():
    # The checks are kept on the cursor by span: the window only has to outlive the last.
    update = passed(_window(0, 5), NOW, CHECKS)
    assert update == {"passed_at_ms": NOW, "expire_at": datetime(2027, 2, 15, 8, 0, tzinfo=UTC)}
    # With late-record checks off, thirty days on.
    assert passed(_window(0, 5), NOW, ())["expire_at"] == THIRTY_DAYS_ON


def test_a_check_later_than_thirty_days_is_made_before_the_window_expires():
    # REPAIR_CHECKS=15m,60d: the window is kept past its last check.
    update = passed(_window(0, 5), NOW, (15 * MIN, 60 * DAY))
    assert update["expire_at"] == datetime(2027, 4, 15, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "passed_as",
    [
        lambda doc, now: passed(doc, now, ()),
        # Given its expiry when passed, before passed_at_ms was kept.
        lambda doc, now: {"expire_at": THIRTY_DAYS_ON},
    ],
    ids=["passed", "passed by the previous version"],
)
def test_a_window_reopened_behind_the_watermark_never_expires_until_done_again(passed_as):
    # The watermark passed it, to expire; then a check finds a late record, and it is read
    # again.
    doc = _window(0, 5, pages=2)
    doc |= passed_as(doc, NOW)
    doc |= reopened(doc, 1, NOW)
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
