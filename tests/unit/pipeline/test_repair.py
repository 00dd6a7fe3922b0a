"""Late-record repair rules: when finished windows are counted again, in which spans, and what
a check's outcome does to them."""

from __future__ import annotations

from shared.pipeline.repair import after_check, first_check, spans_due
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
    assert first_check(100 * MIN, CHECKS) == {"check_level": 0, "next_check_at_ms": 115 * MIN}
    assert first_check(100 * MIN, ()) == {}


def test_a_matching_count_moves_the_window_to_its_next_check_then_to_none():
    first = checked(window(0, 1), 0, CHECKS, matched=True, now=2 * MIN)
    assert first == {
        "check_level": 1,
        "checks": 1,
        "next_check_at_ms": 1 * MIN + 24 * 60 * MIN,
        "expire_at": None,
    }
    last = after_check(window(0, 1, level=1) | first, 1, CHECKS)
    assert (last["check_level"], last["next_check_at_ms"], last["checks"]) == (2, None, 2)
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
