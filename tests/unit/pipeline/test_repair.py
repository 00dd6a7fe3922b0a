"""Late-record repair rules: when finished windows are counted again, in which spans, and what
a check's outcome does to them."""

from __future__ import annotations

from shared.pipeline.repair import (
    CHECK_LEVELS,
    CHECK_RESEND_MS,
    BisectStep,
    Checks,
    Span,
    bisect_step,
    check_run,
    checked,
    checked_spans,
    held,
    levels_of,
    spans_due,
    start_levels,
)
from shared.pipeline.windows import reopened

MIN = 60_000
CHECKS = (15 * MIN, 24 * 60 * MIN)
DUE = Checks(CHECKS)


def cursor(watermark_min: int, *until_min: int, again_min: int | None = None) -> dict:
    levels = [{"until_ms": until * MIN} for until in until_min]
    if again_min is not None:
        levels[0]["again_at_ms"] = again_min * MIN
    return {"watermark_ms": watermark_min * MIN, CHECK_LEVELS: levels}


def window(start_min: int, end_min: int, state: str = "done") -> tuple[str, dict]:
    doc = {"state": state, "mintime": start_min * MIN, "maxtime": end_min * MIN, "pages": 2}
    return f"w{start_min}", doc


# --- when a span is sent: spans_due, from the cursor alone -----------------------------------


def test_a_new_source_checks_nothing_before_where_its_planning_starts():
    assert start_levels(100 * MIN, CHECKS) == [{"until_ms": 100 * MIN}] * 2
    assert spans_due(cursor(200, 100, 100), 120 * MIN, DUE) == ([], {})


def test_a_span_goes_once_its_first_window_has_waited_half_an_hour_past_its_check():
    # Level 0 checked up to minute 0; windows are due 15 minutes after their end.
    assert spans_due(cursor(60, 0, 0), 44 * MIN, DUE) == ([], {})
    spans, update = spans_due(cursor(60, 0, 0), 45 * MIN, DUE)
    assert spans == [Span(0, 0, 30 * MIN)]  # what is due behind the watermark: 30 minutes
    assert update[CHECK_LEVELS][0] == {"until_ms": 0, "again_at_ms": 45 * MIN + CHECK_RESEND_MS}
    assert update[CHECK_LEVELS][1] == {"until_ms": 0}  # a day old not yet


def test_a_span_never_goes_past_the_watermark():
    # The watermark lags (a catch-up): only the windows behind it are finished.
    (span,) = spans_due(cursor(10, 0, 0), 60 * MIN, DUE)[0]
    assert (span.mintime, span.maxtime) == (0, 10 * MIN)
    assert spans_due(cursor(0, 0, 0), 600 * MIN, DUE) == ([], {})


def test_a_span_in_flight_is_not_sent_again_until_its_resend():
    sent = cursor(60, 0, 0, again_min=50)
    assert spans_due(sent, 49 * MIN, DUE) == ([], {})
    assert spans_due(sent, 50 * MIN, DUE)[0] == [Span(0, 0, 35 * MIN)]


def test_a_shared_child_sends_at_most_its_turns_spans():
    both = cursor(3000, 0, 0)
    assert [s.level for s in spans_due(both, 3000 * MIN, DUE)[0]] == [0, 1]
    spans, update = spans_due(both, 3000 * MIN, Checks(CHECKS, limit=1))
    assert [s.level for s in spans] == [0]
    assert "again_at_ms" not in update[CHECK_LEVELS][1]  # not sent: due at its next turn


def test_a_cursor_from_before_the_levels_starts_each_a_batch_and_a_resend_before_its_age():
    # The windows before had their checks sent from their own documents, every few minutes.
    levels = levels_of({"watermark_ms": 1000 * MIN}, CHECKS)
    assert [level["until_ms"] for level in levels] == [
        (1000 - 15 - 30 - 10) * MIN,
        (1000 - 24 * 60 - 30 - 10) * MIN,
    ]
    spans, update = spans_due({"watermark_ms": 1000 * MIN}, 1000 * MIN, DUE)
    assert spans == [Span(0, 945 * MIN, 985 * MIN), Span(1, -480 * MIN, -440 * MIN)]
    assert len(update[CHECK_LEVELS]) == 2  # sent at once, then kept on the cursor


# --- what a check covers, and where it leaves its level: check_run, checked ------------------


def test_a_check_covers_the_contiguous_done_windows_that_end_in_its_span():
    found = [window(0, 5), window(5, 10), window(10, 15), window(15, 40)]
    run = check_run(found, Span(0, 0, 30 * MIN), max_windows=500)
    assert [w for w, _ in run.windows] == ["w0", "w5", "w10"]
    assert run.until == 15 * MIN  # the window across the span's end is the next span's


def test_a_check_stops_at_a_gap_or_a_window_being_read_and_at_its_size():
    span = Span(0, 0, 60 * MIN)
    gap = check_run([window(0, 5), window(6, 10)], span, 500)
    assert (len(gap.windows), gap.until) == (1, 5 * MIN)
    busy = check_run([window(0, 5), window(5, 10, "fetching")], span, 500)
    assert (len(busy.windows), busy.until) == (1, 5 * MIN)
    sized = check_run([window(0, 5), window(5, 10)], span, 1)
    assert (len(sized.windows), sized.until) == (1, 5 * MIN)


def test_a_span_shorter_than_its_first_window_waits_for_that_windows_own_check():
    # A catch-up's window, two hours long, behind a span of 40 minutes: nothing to count yet.
    run = check_run([window(0, 120), window(120, 121)], Span(0, 0, 40 * MIN), 500)
    assert (run.windows, run.until, run.longer_until) == ([], None, 120 * MIN)
    sent = cursor(200, 0, 0, again_min=50)
    update = held(sent, Span(0, 0, 40 * MIN), 135 * MIN)
    assert update[CHECK_LEVELS][0] == {"until_ms": 0, "again_at_ms": 135 * MIN}
    assert held(sent, Span(0, 5 * MIN, 40 * MIN), 135 * MIN) is None  # moved on meanwhile
    assert spans_due(sent | update, 134 * MIN, DUE) == ([], {})
    assert spans_due(sent | update, 135 * MIN, DUE)[0] == [Span(0, 0, 120 * MIN)]


def test_a_check_whose_first_window_is_being_read_again_waits_for_it():
    run = check_run([window(0, 5, "planned"), window(5, 10)], Span(0, 0, 60 * MIN), 500)
    assert run.windows == [] and run.until is None


def test_a_quarantined_window_does_not_hold_up_the_checks_after_it():
    # An operator's retry reads it whole; the windows after it are checked meanwhile.
    found = [window(0, 5, "quarantined"), window(5, 10)]
    run = check_run(found, Span(0, 0, 60 * MIN), 500)
    assert [w for w, _ in run.windows] == ["w5"] and run.until == 10 * MIN


def test_a_span_no_window_starts_in_is_passed_at_once():
    # Its time left Duo's retention before it was read (the cursor's gap).
    run = check_run([], Span(0, 0, 60 * MIN), 500)
    assert run.windows == [] and run.until == 60 * MIN


def test_a_check_done_moves_its_level_on_once_and_clears_its_resend():
    sent = cursor(60, 0, 0, again_min=50)
    update = checked(sent, Span(0, 0, 30 * MIN), 20 * MIN)
    assert update[CHECK_LEVELS][0] == {"until_ms": 20 * MIN, "spans": 1}
    assert checked_spans(sent | update) == 1
    # Another delivery of the same check finds its level moved on.
    assert checked(sent | update, Span(0, 0, 30 * MIN), 30 * MIN) is None


def test_a_count_that_differs_reads_the_window_again_numbering_on():
    _, doc = window(0, 1)
    update = reopened(doc | {"next_offset": "x"}, 0, now=2 * MIN)
    assert update["state"] == "planned"
    assert (update["reread_from"], update["next_offset"], update["repairs"]) == (2, None, 1)
    assert update["updated_at_ms"] == 0  # sent by the next sweep


# --- where a span's difference lies: bisect_step --------------------------------------------
# Four windows with 10 records landed each; ``counts[j]`` is Duo's count from window j's start
# (edge 4: the span's end) to past the span's end, where 3 records of the next window lie.

LANDED = [10, 10, 10, 10]


def test_a_check_asks_for_the_spans_end_first_then_its_start():
    # The end first: a record Duo publishes between the two counts can only raise the
    # difference, never hide a missing one.
    assert bisect_step(LANDED, {}) == BisectStep(ask=4, reread=(0, 1, 2, 3))
    assert bisect_step(LANDED, {4: 3}) == BisectStep(ask=0, reread=(0, 1, 2, 3))


def test_a_span_duo_counts_as_landed_reads_nothing_again():
    assert bisect_step(LANDED, {4: 3, 0: 43}) == BisectStep(ask=None, reread=())


def test_one_missing_record_is_found_by_halving_the_span_and_only_its_window_is_read_again():
    # 44 - 3 = 41 records in the span, 40 landed: one is missing, in window 2.
    assert bisect_step(LANDED, {4: 3, 0: 44}) == BisectStep(ask=2, reread=(0, 1, 2, 3))
    # From window 2's start 24 - 3 = 21 records, 20 landed: the right half; then window 2.
    assert bisect_step(LANDED, {4: 3, 0: 44, 2: 24}) == BisectStep(ask=3, reread=(2, 3))
    assert bisect_step(LANDED, {4: 3, 0: 44, 2: 24, 3: 13}) == BisectStep(ask=None, reread=(2,))


def test_as_many_missing_records_as_windows_read_the_part_again_without_more_counts():
    # Two missing in the right half of two windows: counting it again could clear neither.
    assert bisect_step(LANDED, {4: 3, 0: 45, 2: 25}) == BisectStep(ask=None, reread=(2, 3))


def test_a_window_too_long_for_one_request_is_isolated_even_when_every_window_may_differ():
    # 2 missing among 2 windows, one of which takes 3 requests to read again: a count is cheaper.
    assert bisect_step([2500, 10], {2: 0, 0: 2512}) == BisectStep(ask=1, reread=(0, 1))
    assert bisect_step([2500, 10], {2: 0, 0: 2512, 1: 12}) == BisectStep(ask=None, reread=(1,))


def test_more_landed_than_duo_counts_is_a_difference_too():
    # A batch landed twice (+2) beside a missing record (-1): Duo counts one fewer than landed.
    assert bisect_step([12], {1: 0, 0: 11}) == BisectStep(ask=None, reread=(0,))


def test_a_count_duo_does_not_give_exactly_reads_its_part_again():
    assert bisect_step(LANDED, {4: None, 0: 43}) == BisectStep(ask=None, reread=(0, 1, 2, 3))
    assert bisect_step(LANDED, {4: 3, 0: 44, 2: None}) == BisectStep(ask=None, reread=(0, 1, 2, 3))


def test_a_part_already_known_to_be_read_again_asks_for_no_more_counts():
    assert bisect_step(LANDED, {4: None}) == BisectStep(ask=None, reread=(0, 1, 2, 3))
