"""When a quiet source's next planner run is due: never a run that could plan, and never later
than QUIET_READ_EVERY."""

from __future__ import annotations

import pytest

from shared.pipeline.planning import (
    DEFAULT_PARALLELISM,
    QUIET_AFTER_MS,
    first_plan_at,
    plan_windows,
    quiet_wait_ms,
)
from shared.pipeline.rate_share import shared_read
from shared.pipeline.wake import (
    SETTLED_RUN_EVERY_MAX_MS,
    WAKE_AT,
    due,
    idle,
    sleeps_once_planned,
    wake_at,
    wakes_on_records,
)

MINUTE = 60_000
# A whole minute, as Cloud Scheduler calls.
NOW = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE


def plans(planned_until: int, now: int, delay_ms: int, wait_ms: int) -> bool:
    return bool(
        plan_windows(planned_until, now, DEFAULT_PARALLELISM, delay_ms=delay_ms, wait_ms=wait_ms)
    )


@pytest.mark.parametrize("offset_ms", [0, 1, 59_999, 61_234, 299_999])
@pytest.mark.parametrize("delay_ms", [0, 120_000, 150_000, 600_000])
@pytest.mark.parametrize("wait_ms", [0, 300_000, 3_600_000])
def test_a_run_before_the_first_plan_time_plans_nothing_and_one_at_it_plans(
    offset_ms: int, delay_ms: int, wait_ms: int
) -> None:
    planned_until = NOW - 10 * MINUTE + offset_ms
    at = first_plan_at(planned_until, delay_ms, wait_ms)
    assert plans(planned_until, at, delay_ms, wait_ms)
    assert not plans(planned_until, at - 1, delay_ms, wait_ms)


def test_a_quiet_source_just_read_wakes_when_its_next_quiet_window_can_be_planned() -> None:
    # Its 5-minute window up to 2 minutes ago read and passed; no record for hours.
    planned_until = NOW - 2 * MINUTE
    woken = wake_at(planned_until, planned_until, NOW - 3 * QUIET_AFTER_MS, NOW, 0, 5 * MINUTE)
    assert woken == NOW + 5 * MINUTE
    wait = quiet_wait_ms(NOW - 3 * QUIET_AFTER_MS, planned_until, NOW, 5 * MINUTE)
    assert not plans(planned_until, woken - 1, 0, wait)
    assert plans(planned_until, woken, 0, wait)


def test_a_child_sharing_its_parents_budget_sleeps_until_the_run_of_its_next_read() -> None:
    # A busy child of 20 sharing 6 a minute, just read: no run before its next read's plans,
    # and that one does (every run would plan it, were it not sharing).
    every, period = 4 * MINUTE, 235_000
    reads = [shared_read(every, period, 7, 20, NOW + m * MINUTE + 1_500) for m in range(8)]
    read_minute = next(m for m, read in enumerate(reads) if read.start_at_ms is not None)
    planned_until = NOW + read_minute * MINUTE - 2 * MINUTE  # planned by its read's run
    after = NOW + (read_minute + 1) * MINUTE + 1_500
    shared = reads[read_minute + 1]
    woken = wake_at(planned_until, planned_until, after - MINUTE, after, 0, 5 * MINUTE, shared)
    next_read = next(m for m in range(read_minute + 1, 8) if reads[m].start_at_ms is not None)
    assert woken == NOW + next_read * MINUTE
    assert next_read - read_minute in (3, 4)
    for minute in range(read_minute + 1, 8):
        wait = reads[minute].wait_ms
        assert plans(planned_until, NOW + minute * MINUTE + 1_500, 0, wait) == (minute >= next_read)


def test_an_active_source_is_due_at_the_next_run() -> None:
    # A record 10 minutes ago: every run plans the minute just published.
    planned_until = NOW - 2 * MINUTE
    woken = wake_at(planned_until, planned_until, NOW - 10 * MINUTE, NOW + 1_500, 0, 5 * MINUTE)
    assert woken == NOW + MINUTE


@pytest.mark.parametrize("now", [NOW, NOW + 1, NOW + 59_999])
def test_a_source_whose_next_window_is_far_is_due_again_within_quiet_read_every(now: int) -> None:
    # Duo's logs seen to arrive two hours late: the next window is an hour away, but a
    # late-record check falling due meanwhile waits at most QUIET_READ_EVERY.
    woken = wake_at(NOW - 62 * MINUTE, NOW - 62 * MINUTE, 0, now, 7_200_000, 5 * MINUTE)
    assert woken == NOW + 5 * MINUTE  # a whole minute: the scheduler's call then is not missed
    assert now < woken <= now + 5 * MINUTE


def test_a_long_quiet_read_every_still_runs_the_source_within_the_alerts_windows() -> None:
    woken = wake_at(NOW - 2 * MINUTE, NOW - 2 * MINUTE, 0, NOW, 0, 60 * MINUTE)
    assert woken == NOW + SETTLED_RUN_EVERY_MAX_MS


def test_quiet_read_every_of_a_minute_skips_no_run() -> None:
    woken = wake_at(NOW - 2 * MINUTE, NOW - 2 * MINUTE, 0, NOW + 1_500, 0, MINUTE)
    assert woken == NOW + MINUTE


def test_a_watermark_behind_what_is_planned_keeps_the_source_due_every_run() -> None:
    # A finished window not passed yet, or a quarantined one holding the watermark back.
    assert wake_at(NOW - 7 * MINUTE, NOW - 2 * MINUTE, 0, NOW, 0, 5 * MINUTE) is None


@pytest.mark.parametrize(
    ("planned", "open_windows", "expected"),
    [(0, 0, True), (1, 0, False), (0, 1, False)],
)
def test_a_run_is_idle_only_with_nothing_planned_or_open(
    planned: int, open_windows: int, expected: bool
) -> None:
    assert idle(planned, open_windows) is expected


QUIET_WINDOW = (NOW - 7 * MINUTE, NOW - 2 * MINUTE)


@pytest.mark.parametrize(
    ("windows", "watermark", "open_windows", "quiet", "expected"),
    [
        ([QUIET_WINDOW], NOW - 7 * MINUTE, 0, True, True),
        ([], NOW - 2 * MINUTE, 0, True, False),  # nothing planned: ``idle``'s
        ([QUIET_WINDOW], NOW - 7 * MINUTE, 0, False, False),  # a busy source's
        ([QUIET_WINDOW], NOW - 12 * MINUTE, 0, True, False),  # one behind, not passed
        ([QUIET_WINDOW], NOW - 7 * MINUTE, 1, True, False),  # another one open
        ([(NOW - 3 * MINUTE, NOW - 2 * MINUTE)], NOW - 3 * MINUTE, 0, True, False),
    ],
)
def test_a_run_leaves_its_source_asleep_with_the_window_it_planned_only_when_quiet_and_alone(
    windows: list[tuple[int, int]],
    watermark: int,
    open_windows: int,
    quiet: bool,
    expected: bool,
) -> None:
    assert sleeps_once_planned(windows, watermark, open_windows, quiet) is expected


def test_records_wake_the_source_of_a_window_longer_than_a_live_minute() -> None:
    assert wakes_on_records(*QUIET_WINDOW)
    assert wakes_on_records(NOW - 61 * MINUTE, NOW - MINUTE)  # a backfill's: a write in vain
    assert not wakes_on_records(NOW - 3 * MINUTE, NOW - 2 * MINUTE)  # a busy source's


def test_an_entry_is_due_without_a_wake_and_from_its_wake_on() -> None:
    assert due({"state": "active"}, NOW)
    assert due({WAKE_AT: None}, NOW)
    assert not due({WAKE_AT: NOW + 1}, NOW)
    assert due({WAKE_AT: NOW}, NOW)
