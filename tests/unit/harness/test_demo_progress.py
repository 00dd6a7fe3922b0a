"""The demo's progress line: the backfill's bar against Duo's count while it is read, the
watermark's progress otherwise."""

from __future__ import annotations

from harness.catchup import catch_up_line
from shared.pipeline.progress import Progress

STATUS = {
    "records": 12_000,
    "windows": {"planned": 0, "fetching": 1, "fetched": 0, "done": 3, "failed": 0},
    "last_error": None,
}


def test_while_the_backfill_is_read_the_line_shows_its_bar_and_the_time_left():
    reading = Progress(records=12_000, total=20_000, exact=True, per_minute=1000.0)
    assert catch_up_line(12.04, STATUS, reading, 0.0) == (
        "[  12.0s] backfill [######....] 12,000 / 20,000 records (60 %), 1,000/min, "
        "~8 min left; 12,000 records fetched, windows done 3, open 1"
    )


def test_with_nothing_being_read_the_line_shows_the_watermark():
    status = STATUS | {"last_error": "window w: Duo answered HTTP 500"}
    assert catch_up_line(75.0, status, None, 0.5) == (
        "[  75.0s] watermark  50.0%; 12,000 records fetched, windows done 3, open 1; "
        "last error: window w: Duo answered HTTP 500"
    )
