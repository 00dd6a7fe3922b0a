"""Classifying Duo's requests, as the simulated Duo answered them and as the fetcher logged
them: backfill or live by the time read, checks, 429s, and the rate achieved while the
backfill was fetched."""

from __future__ import annotations

import pytest

from harness.duo_requests import (
    BACKFILL,
    BACKFILL_CHECKS,
    LIVE,
    LIVE_CHECKS,
    DuoRequest,
    RepairCost,
    RequestCounts,
    classify,
    in_span,
    repair_cost,
    requests_by_kind,
    window_mintime,
)
from services.fetcher.window_fetch import CHECK_EVENT
from shared.pipeline.ids import window_id

END = 1_764_400_000_000  # ms: the records that existed at the start end here


def window_entry(mintime: int, requests: int) -> dict[str, object]:
    window = window_id(mintime, mintime + 60_000)
    return {"message": f"window {window} fetched", "window_id": window, "requests": requests}


def check_entry(mintime: int, requests: int) -> dict[str, object]:
    return {"message": f"{CHECK_EVENT} matched", "mintime": mintime, "requests": requests}


def request(at: float, mintime: int, status: int = 200, limit: int = 1000) -> DuoRequest:
    query = f"limit={limit}&maxtime={mintime + 60_000}&mintime={mintime}&sort=ts%3Aasc"
    return DuoRequest.parse(at, query, status)


def test_the_query_is_read_back() -> None:
    parsed = DuoRequest.parse(5.0, "mintime=1700000000000&maxtime=1700000060000&limit=1", 200)
    assert parsed == DuoRequest(5.0, 1_700_000_000_000, 1, 200)
    assert DuoRequest.parse(1.0, "maxtime=5", 400) == DuoRequest(1.0, None, None, 400)


def test_a_window_is_backfill_when_it_starts_before_the_backlog_ends() -> None:
    counts = classify(
        [
            request(0.0, END - 86_400_000),
            request(1.0, END - 1),  # straddles the end: holds backlog records
            request(2.0, END),  # the first live window starts exactly at the end
            request(3.0, END + 60_000),
        ],
        END,
    )
    assert (counts.backfill, counts.live) == (2, 2)


def test_429s_are_counted_apart_and_never_as_requests_made() -> None:
    counts = classify([request(0.0, END - 5, status=429), request(1.0, END + 5, 429)], END)
    assert counts == RequestCounts(0, 0, 0, 0, 2, None)


def test_late_record_checks_ask_for_one_record() -> None:
    counts = classify(
        [request(0.0, END - 5, limit=1), request(1.0, END - 5), request(2.0, END + 5, limit=1)],
        END,
    )
    assert (counts.backfill, counts.backfill_checks, counts.live, counts.live_checks) == (
        2,
        1,
        1,
        1,
    )


def test_the_rate_counts_every_answer_between_the_first_and_last_backfill_request() -> None:
    # Backfill at 0 s and 60 s, a live request at 30 s, one after the backfill and a 429 in
    # between: 3 answers in 60 s are 2 intervals, so 2 a minute.
    counts = classify(
        [
            request(100.0, END - 10),
            request(130.0, END + 10),
            request(140.0, END - 10, status=429),
            request(160.0, END - 10),
            request(200.0, END + 10),
        ],
        END,
    )
    assert counts.per_minute == 2.0


def test_the_backfill_s_checks_minutes_later_do_not_stretch_its_span() -> None:
    counts = classify(
        [request(0.0, END - 10), request(30.0, END - 10), request(600.0, END - 10, limit=1)], END
    )
    assert counts.per_minute == 2.0


def test_no_rate_from_fewer_than_two_backfill_requests() -> None:
    assert classify([request(0.0, END - 1), request(9.0, END + 1)], END).per_minute is None


def test_requests_in_a_span_leave_out_429s_and_its_end() -> None:
    made = [request(10.0, END), request(20.0, END, status=429), request(30.0, END)]
    assert in_span(made, 10.0, 30.0) == 1


def test_logged_windows_and_checks_are_split_at_the_end_of_the_backlog() -> None:
    entries = [
        window_entry(END - 7 * 86_400_000, 20),
        window_entry(END - 1, 1),
        window_entry(END, 1),
        window_entry(END + 60_000, 2),
        check_entry(END - 1, 1),
        check_entry(END, 2),
        window_entry(END + 120_000, 0),  # skipped: its window was leased elsewhere
    ]
    assert requests_by_kind(entries, END) == {
        BACKFILL: 21,
        LIVE: 3,
        BACKFILL_CHECKS: 1,
        LIVE_CHECKS: 2,
    }


def test_a_logged_check_is_told_by_the_fetchers_check_event_alone() -> None:
    # The one rule, for the split and the repair's cost alike: a check's line whatever fields
    # it carries, and no other line however much it looks like one.
    entries = [
        {"message": f"{CHECK_EVENT} stale", "mintime": END - 1, "requests": 1},
        window_entry(END - 1, 2) | {"level": 0, "windows": 3, "mintime": END - 1},
    ]
    assert requests_by_kind(entries, END) == {BACKFILL_CHECKS: 1, BACKFILL: 2}
    assert repair_cost(entries) == RepairCost(check_requests=1)


def test_a_window_id_is_read_as_the_pipeline_writes_it() -> None:
    assert window_mintime(window_id(END - 1, END + 59_999)) == END - 1
    for malformed in ("1764399999999", f"{END}-{END + 1}-p00001", "123-456", "later-sooner"):
        with pytest.raises(ValueError, match="is not a window id"):
            window_mintime(malformed)
