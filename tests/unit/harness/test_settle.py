"""A timed demo ends only once every window is fetched and checked, and says what the late-record
repair cost."""

from __future__ import annotations

from harness.catchup import unsettled
from harness.duo_requests import RepairCost, repair_cost
from services.fetcher.window_fetch import CHECK_EVENT

END = 1_800_000_000_000


def window(mintime: int, state: str = "done") -> dict:
    return {"mintime": mintime, "maxtime": mintime + 60_000, "state": state}


def test_windows_before_the_end_must_be_done_and_checked_once():
    windows = {
        "checked": window(END - 120_000),
        "not-checked-yet": window(END - 60_000),
        "being-read-again": window(END - 180_000, state="planned"),
        "never-finished": window(END - 240_000, state="fetching"),
        "after-the-records": window(END),
    }
    # The first check level has got to the end of "checked".
    assert sorted(unsettled(windows, END, END - 60_000)) == [
        "being-read-again",
        "never-finished",
        "not-checked-yet",
    ]


def test_repair_cost_counts_checks_and_rereads_apart_from_ordinary_reads():
    entries = [
        {"message": "window w1 fetched", "requests": 20, "records": 19_500},
        {"message": f"{CHECK_EVENT} matched", "requests": 2, "bisected": 0},
        {"message": f"{CHECK_EVENT} repairing", "requests": 7, "bisected": 5, "rereads": 2},
        {
            "message": "window w2 fetched",
            "window_id": "w2",
            "requests": 3,
            "records": 7,
            "reread": True,
        },
        {"message": "window w3 fetched", "requests": 1, "records": 0, "reread": False},
        # w4 is read again in two deliveries and lands nothing: a window read for nothing.
        {"message": "window w4 handed_on", "window_id": "w4", "requests": 1, "reread": True},
        {"message": "window w4 fetched", "window_id": "w4", "requests": 1, "reread": True},
    ]
    cost = repair_cost(entries)
    assert cost == RepairCost(
        check_requests=4,
        bisection_requests=5,
        reread_requests=5,
        records_repaired=7,
        windows_reread=2,
        windows_reread_for_nothing=1,
    )
    assert cost.requests_per_record == 14 / 7


def test_a_repair_that_landed_nothing_has_no_requests_per_record():
    assert RepairCost(check_requests=2).requests_per_record is None
