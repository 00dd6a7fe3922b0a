"""Late-record repair rules: when finished windows are counted again, in which spans, and what
a check's outcome does to them."""

from __future__ import annotations

import random

from shared.pipeline.repair import (
    CHECK_FROM,
    BisectStep,
    after_check,
    bisect_step,
    first_check,
    sendable_from,
    spans_due,
)
from shared.pipeline.windows import checked

MIN = 60_000
CHECKS = (15 * MIN, 24 * 60 * MIN)


def window(start_min: int, end_min: int, level: int = 0, due_min: int | None = None) -> dict:
    return {
        "state": "done",
        "mintime": start_min * MIN,
        "maxtime": end_min * MIN,
        "pages": 2,
        "check_level": level,
        "next_check_at_ms": (due_min if due_min is not None else end_min + 15) * MIN,
    }


def test_a_finished_window_is_first_checked_fifteen_minutes_after_its_end():
    assert first_check(99 * MIN, 100 * MIN, CHECKS) == {
        "check_level": 0,
        "next_check_at_ms": 115 * MIN,
        CHECK_FROM: 114 * MIN,  # a minute long: no span of it goes before 114 + the batch
    }
    assert first_check(99 * MIN, 100 * MIN, ()) == {}


def test_a_matching_count_moves_the_window_to_its_next_check_then_to_none():
    first = checked(window(0, 1), 0, CHECKS, matched=True, now=2 * MIN)
    assert first == {
        "check_level": 1,
        "checks": 1,
        "next_check_at_ms": 1 * MIN + 24 * 60 * MIN,
        CHECK_FROM: 24 * 60 * MIN,
        "expire_at": None,
    }
    last = after_check(window(0, 1, level=1) | first, 1, CHECKS)
    assert (last["check_level"], last["next_check_at_ms"], last["checks"]) == (2, None, 2)
    assert last[CHECK_FROM] is None
    assert "state" not in last


def test_a_count_that_differs_reads_the_window_again_numbering_on():
    update = checked(window(0, 1), 0, CHECKS, matched=False, now=2 * MIN)
    assert update["state"] == "planned"
    assert (update["reread_from"], update["next_offset"], update["repairs"]) == (2, None, 1)
    assert update["check_level"] == 1  # checked again a day later, after the repair
    assert update["updated_at_ms"] == 0  # sent by the next sweep


def test_contiguous_due_windows_wait_until_their_span_covers_half_an_hour():
    due = [(f"w{n}", window(n, n + 1)) for n in range(20)]  # 20 one-minute windows
    assert spans_due(due, now=35 * MIN, max_windows=500) == []
    due += [(f"w{n}", window(n, n + 1)) for n in range(20, 30)]
    (span,) = spans_due(due, now=45 * MIN, max_windows=500)
    assert (span.level, span.mintime, span.maxtime) == (0, 0, 30 * MIN)
    assert span.window_ids == tuple(f"w{n}" for n in range(30))


def test_a_span_that_has_waited_half_an_hour_is_checked_however_short():
    due = [("w0", window(0, 1))]  # due at minute 16
    assert spans_due(due, now=45 * MIN, max_windows=500) == []
    (span,) = spans_due(due, now=46 * MIN, max_windows=500)
    assert span.window_ids == ("w0",)


def test_spans_split_at_gaps_levels_and_size():
    due = [
        ("a", window(0, 40)),
        ("b", window(40, 80)),
        ("c", window(90, 130)),  # a gap before it
        ("d", window(130, 170, level=1)),  # another check level
    ]
    spans = spans_due(due, now=400 * MIN, max_windows=500)
    assert [span.window_ids for span in spans] == [("a", "b"), ("c",), ("d",)]
    assert [span.window_ids for span in spans_due(due[:2], now=400 * MIN, max_windows=1)] == [
        ("a",),
        ("b",),
    ]


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


def test_no_span_is_sent_before_a_due_window_is_sendable_by_its_check_from():
    # The planner reads due windows only once one's CHECK_FROM is at most sendable_from: every
    # span spans_due sends must start there (fixed vectors: seeded fleets of windows).
    rng = random.Random(7)
    for _ in range(200):
        edge, docs = 0, []
        for n in range(rng.randint(1, 40)):
            length = rng.choice([1, 1, 1, 5, 60, 240]) * MIN
            doc = {"state": "done", "mintime": edge, "maxtime": edge + length, "pages": 1}
            docs.append((f"w{n}", doc | first_check(edge, edge + length, CHECKS)))
            edge += length + rng.choice([0, 0, 0, MIN])
        batch = rng.choice([1, 30, 360]) * MIN
        for now in range(0, edge + 2 * batch + CHECKS[0], 7 * MIN):
            due = [(w, d) for w, d in docs if d["next_check_at_ms"] <= now]
            if spans_due(due, now, batch_ms=batch, max_windows=500):
                assert any(d[CHECK_FROM] <= sendable_from(now, batch) for _, d in due)
