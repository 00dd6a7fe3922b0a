"""A backfill's progress against Duo's count: the figures the fetcher keeps on the window, and
the fraction, rate and time left that status, the planner's log and the demo show."""

from __future__ import annotations

from typing import Any

import pytest

from shared.duo.paging import DuoTotal, duo_total, exact_total
from shared.pipeline.progress import Progress, after_page, describe, measure
from shared.pipeline.windows import Gap, claim, new_window, renew, reread

SECOND = 1000
MINUTE = 60 * SECOND


def _read(doc: dict[str, Any], read: int, total: DuoTotal | None, now: int) -> None:
    """One page checkpointed, as the store applies it: progress from the document before the
    page, then the page count and the time of the write."""
    doc.update(after_page(doc, read, total, now))
    doc |= {"pages": doc["pages"] + 1, "updated_at_ms": now}


def _reading(claimed_at: int = -MINUTE, **fields: Any) -> dict[str, Any]:
    """A window claimed at ``claimed_at``, before its first page."""
    return new_window(0, 60_000, 0) | {"state": "fetching", "updated_at_ms": claimed_at} | fields


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"total_objects": 20_000}, DuoTotal(20_000)),
        ({"total_objects": {"relation": "eq", "value": 12}}, DuoTotal(12)),
        ({"total_objects": {"relation": "gte", "value": 10_000}}, DuoTotal(10_000, exact=False)),
        ({}, None),
        ({"total_objects": None}, None),
        ({"total_objects": "3"}, None),
        ({"total_objects": True}, None),
        ({"total_objects": {"relation": "eq"}}, None),
    ],
)
def test_duos_total_is_read_as_an_integer_or_a_relation_and_may_be_absent(metadata, expected):
    assert duo_total(metadata) == expected
    # A count only trusts an exact total.
    exact = expected.value if expected and expected.exact else None
    assert exact_total({"metadata": metadata}) == exact


def test_the_rate_is_measured_from_the_claim_though_the_lease_was_renewed_before_the_first_page():
    # At a low rate limit the first page waits for its slot while the lease is renewed.
    _, claimed = claim(new_window(0, 60_000, 0), "s", "w", "me", 0, MINUTE)
    doc = new_window(0, 60_000, 0) | claimed
    doc |= renew(40 * SECOND, MINUTE)
    _read(doc, 1000, DuoTotal(20_000), now=50 * SECOND)

    # 1,000 records in the minute since the claim, not in the 20 s since the renewal.
    assert measure([doc], now=1 * MINUTE).per_minute == 1000.0


def test_records_read_against_duos_count_with_the_rate_and_the_time_left():
    doc = _reading()
    _read(doc, 1000, DuoTotal(20_000), now=0)
    _read(doc, 1000, DuoTotal(20_000), now=30 * SECOND)

    progress = measure([doc], now=1 * MINUTE)

    # 2,000 records read in the two minutes since the claim: 1,000 a minute, 18,000 to go.
    assert progress == Progress(records=2000, total=20_000, exact=True, per_minute=1000.0)
    assert progress.minutes_left == 18.0
    assert describe(progress) == (
        "backfill [#.........] 2,000 / 20,000 records (10 %), 1,000/min, ~18 min left"
    )


def test_the_rate_follows_the_recent_pace_not_the_whole_reads_average():
    doc = _reading()
    _read(doc, 1000, DuoTotal(100_000), now=0)
    # Ten minutes of a page a minute, then a page every 30 seconds.
    for minute in range(1, 11):
        _read(doc, 1000, DuoTotal(100_000), now=minute * MINUTE)
    for half in range(1, 11):
        _read(doc, 1000, DuoTotal(100_000), now=10 * MINUTE + half * 30 * SECOND)

    progress = measure([doc], now=15 * MINUTE)

    # Measured from the page read at 12.5 min (once five minutes old, the mark moves to the
    # page before the newest), not from the claim: 5 pages in the last 2.5 minutes.
    assert progress.records == 21_000
    assert progress.per_minute == 2000.0
    assert progress.minutes_left == 39.5


def test_a_stalled_read_slows_its_rate_and_says_so_when_nothing_moves():
    doc = _reading()  # claimed a minute before its first page
    _read(doc, 1000, DuoTotal(4000), now=0)
    assert measure([doc], now=1 * MINUTE).per_minute == 500.0  # 1,000 in 2 minutes
    stalled = measure([doc], now=9 * MINUTE)  # no page since
    assert (stalled.per_minute, stalled.minutes_left) == (100.0, 30.0)
    one_page = _reading(claimed_at=0)  # the first page in the claim's millisecond
    _read(one_page, 1000, DuoTotal(4000), now=0)
    assert describe(measure([one_page], now=0)).endswith(
        "1,000 / 4,000 records (25 %), rate not measured yet"
    )
    idle = Progress(records=1000, total=4000, exact=True, per_minute=0.0)
    assert describe(idle).endswith("(25 %), 0/min: stalled")


def test_a_lower_bound_from_duo_is_shown_as_one_and_an_absent_total_hides_the_window():
    bounded = _reading(claimed_at=0)
    _read(bounded, 1000, DuoTotal(10_000, exact=False), now=0)
    _read(bounded, 1000, DuoTotal(10_000, exact=False), now=MINUTE)
    unknown = _reading()
    _read(unknown, 1000, None, now=0)

    progress = measure([bounded, unknown], now=2 * MINUTE)

    assert progress == Progress(records=2000, total=10_000, exact=False, per_minute=1000.0)
    assert describe(progress) == (
        "backfill [##........] 2,000 / >= 10,000 records (20 %), 1,000/min, ~8 min left"
    )


def test_only_windows_being_read_count_and_several_add_up():
    # Claimed with their first page; the second was handed on between two pages.
    first, second = _reading(claimed_at=0), _reading(claimed_at=0, state="planned")
    for doc in (first, second):
        _read(doc, 1000, DuoTotal(5000), now=0)
        _read(doc, 500, DuoTotal(5000), now=MINUTE)
    fetched = _reading(state="fetched")
    _read(fetched, 800, DuoTotal(800), now=0)
    never_read = _reading(state="planned")

    progress = measure([first, second, fetched, never_read], now=MINUTE)

    assert progress == Progress(records=3000, total=10_000, exact=True, per_minute=3000.0)
    assert measure([fetched, never_read], now=MINUTE) is None


def test_a_re_read_counts_from_its_own_first_page():
    doc = _reading()
    for at in range(3):
        _read(doc, 1000, DuoTotal(3000), now=at * MINUTE)
    doc |= {"state": "planned", "reread_from": doc["pages"]}  # read again (late records)
    assert measure([doc], now=3 * MINUTE) is None  # not begun: the old read's figures are not shown

    doc |= {"state": "fetching", "updated_at_ms": 9 * MINUTE}  # claimed
    _read(doc, 1000, DuoTotal(3100), now=10 * MINUTE)

    progress = measure([doc], now=11 * MINUTE)
    assert (progress.records, progress.total, progress.per_minute) == (1000, 3100, 500.0)


def test_a_gaps_re_read_is_not_shown_against_the_whole_windows_count():
    doc = _reading()
    for at in range(30):
        _read(doc, 1000, DuoTotal(30_000), now=at * MINUTE)
    # Batches 10 and 11 never landed: only their part of the window is read again.
    doc |= reread(doc, "batches 10-11 missing", Gap(10, 11, "10,a", "12,b"))
    doc |= {"state": "fetching", "updated_at_ms": 40 * MINUTE}  # claimed
    _read(doc, 1000, DuoTotal(30_000), now=41 * MINUTE)

    # Not 1,000 of 30,000 with half an hour left: Duo counts the window, the read is 2 pages.
    assert measure([doc], now=42 * MINUTE) is None


def test_the_time_left_reads_in_hours_and_days_when_long_and_plainly_when_short():
    hours = Progress(records=0, total=200_000, exact=True, per_minute=1000.0)
    days = Progress(records=0, total=5_000_000, exact=True, per_minute=1000.0)
    soon = Progress(records=19_900, total=20_000, exact=True, per_minute=1000.0)
    assert describe(hours).endswith("~3 h 20 min left")
    assert describe(days).endswith("~3 d 11 h left")
    assert describe(soon).endswith("1,000/min, under a minute left")


def test_the_figures_as_log_fields():
    progress = Progress(records=12_000, total=20_000, exact=True, per_minute=1000.0)
    assert progress.fields() == {
        "progress_records": 12_000,
        "progress_total": 20_000,
        "progress_total_exact": True,
        "progress_percent": 60.0,
        "progress_per_minute": 1000,
        "progress_minutes_left": 8.0,
    }
    assert describe(progress) == (
        "backfill [######....] 12,000 / 20,000 records (60 %), 1,000/min, ~8 min left"
    )
