import json

from harness.request_split import BACKFILL, BACKFILL_CHECKS, LIVE, LIVE_CHECKS, requests_by_kind

BACKLOG_END = 1_800_000_000_000


def window_line(mintime: int, requests: int) -> str:
    window = f"{mintime}-{mintime + 60_000}"
    return json.dumps({"message": "window fetched", "window_id": window, "requests": requests})


def check_line(mintime: int, requests: int) -> str:
    check = {"message": "span check matched", "level": 0, "windows": 3, "mintime": mintime}
    return json.dumps(check | {"requests": requests})


def test_windows_and_checks_are_split_at_the_end_of_the_backlog():
    lines = [
        "--- gunicorn ...",
        window_line(BACKLOG_END - 7 * 86_400_000, 20),
        window_line(BACKLOG_END - 1, 1),
        window_line(BACKLOG_END, 1),
        window_line(BACKLOG_END + 60_000, 2),
        check_line(BACKLOG_END - 1, 1),
        check_line(BACKLOG_END, 2),
        window_line(BACKLOG_END + 120_000, 0),  # skipped: its window was leased elsewhere
    ]
    assert requests_by_kind(lines, BACKLOG_END) == {
        BACKFILL: 21,
        LIVE: 3,
        BACKFILL_CHECKS: 1,
        LIVE_CHECKS: 2,
    }
