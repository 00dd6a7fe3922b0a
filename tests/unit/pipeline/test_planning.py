import itertools

import pytest

from shared.duo.paging import RETENTION_MS
from shared.pipeline.planning import (
    DEFAULT_PARALLELISM,
    LIVE_MS,
    first_planned_until,
    is_live,
    past_retention,
    plan_windows,
    quiet_wait_ms,
    retention_gap,
)

NOW = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


def covers_exactly(windows, start, end):
    """Half-open windows, each starting where the previous one ends: no millisecond between
    two windows, none in two."""
    assert windows[0][0] == start and windows[-1][1] == end
    for (_, previous_max), (next_min, _) in itertools.pairwise(windows):
        assert next_min == previous_max
    assert all(mintime < maxtime for mintime, maxtime in windows)


def test_a_first_start_plans_the_lookback_in_parallel_windows():
    planned_until = first_planned_until(NOW, DAY)
    windows = plan_windows(planned_until, NOW, parallelism=4)
    assert len(windows) == 4
    covers_exactly(windows, NOW - DAY, NOW - 120_000)


def test_by_default_a_backlog_is_one_window_read_by_one_reader():
    # 20,000 records in it cost 20 requests, or 21 with an empty last page: four windows
    # would each end with a partial page.
    planned_until = first_planned_until(NOW, 7 * DAY)
    assert plan_windows(planned_until, NOW, DEFAULT_PARALLELISM) == [(NOW - 7 * DAY, NOW - 120_000)]


def test_after_the_backlog_each_run_a_minute_apart_plans_one_live_window_of_that_minute():
    (backlog,) = plan_windows(NOW - 7 * DAY, NOW, DEFAULT_PARALLELISM)
    planned_until, live = backlog[1], []
    for run in range(1, 4):
        (window,) = plan_windows(planned_until, NOW + run * 60_000, DEFAULT_PARALLELISM)
        live.append(window)
        planned_until = window[1]
    assert live == [
        (NOW - 120_000, NOW - 60_000),
        (NOW - 60_000, NOW),
        (NOW, NOW + 60_000),
    ]


@pytest.mark.parametrize("every_ms", [1_000, 5_000, 59_999, 60_000])
def test_a_planner_run_however_often_plans_one_live_window_a_minute(every_ms):
    # Issue 16, item 12: the demo planned every 5 s, each run a live window of 5 s, a request
    # each; a window shorter than a minute buys no freshness. Started at an odd moment.
    start = NOW + 7_321
    (backlog,) = plan_windows(start - 7 * DAY, start, DEFAULT_PARALLELISM)
    planned_until, live = backlog[1], []
    for now in range(start + every_ms, start + 10 * 60_000 + 1, every_ms):
        for window in plan_windows(planned_until, now, DEFAULT_PARALLELISM):
            live.append(window)
            planned_until = window[1]
    assert backlog[1] == NOW - 120_000  # ends on the last whole minute published
    assert len(live) == 10 and all(maxtime - mintime == 60_000 for mintime, maxtime in live)
    covers_exactly(live, backlog[1], NOW + 10 * 60_000 - 120_000)


def test_a_window_starting_within_the_last_quarter_hour_is_live():
    assert is_live(NOW - 15 * 60_000, NOW)
    assert not is_live(NOW - 15 * 60_000 - 1, NOW)
    # The backfill window is planned up to the same end as a live one, from far back.
    assert not is_live(NOW - 7 * DAY, NOW)


def test_steady_state_plans_one_window_up_to_two_minutes_ago():
    windows = plan_windows(NOW - 180_000, NOW, parallelism=4)
    assert windows == [(NOW - 180_000, NOW - 120_000)]


def test_nothing_to_plan_when_caught_up():
    assert plan_windows(NOW - 120_000, NOW, parallelism=4) == []
    assert plan_windows(NOW - 120_500, NOW, parallelism=4) == []


def test_short_backlogs_are_not_split_below_an_hour():
    assert len(plan_windows(NOW - 2 * HOUR, NOW, parallelism=8)) == 1
    assert len(plan_windows(NOW - 3 * HOUR - 200_000, NOW, parallelism=8)) == 3


def test_a_long_sparse_backlog_costs_at_most_parallelism_windows():
    windows = plan_windows(NOW - 170 * DAY, NOW, parallelism=4)
    assert len(windows) == 4
    covers_exactly(windows, NOW - 170 * DAY, NOW - 120_000)


def test_lookback_is_clamped_inside_duo_retention():
    planned_until = first_planned_until(NOW, 400 * DAY)
    assert planned_until > NOW - RETENTION_MS


@pytest.mark.parametrize(("outage_days", "gap"), [(10, False), (200, True)])
def test_outages_longer_than_retention_are_reported_as_a_gap(outage_days, gap):
    found = retention_gap(NOW - outage_days * DAY, NOW)
    assert (found is not None) is gap
    if gap:
        assert found[0] == NOW - outage_days * DAY
        assert found[1] < NOW - RETENTION_MS + 2 * HOUR


def test_a_longer_delay_plans_less_recent_time_and_never_under_two_minutes():
    assert plan_windows(NOW - 900_000, NOW, parallelism=1, delay_ms=600_000) == [
        (NOW - 900_000, NOW - 600_000)
    ]
    assert plan_windows(NOW - 180_000, NOW, parallelism=1, delay_ms=0) == [
        (NOW - 180_000, NOW - 120_000)
    ]


def test_a_span_of_exactly_min_window_ms_is_planned_and_one_ms_less_is_not():
    # Up to now - 2 min: 1000 ms of span ends at NOW - 120_000 and starts 1000 ms before it.
    assert plan_windows(NOW - 121_000, NOW, parallelism=4) == [(NOW - 121_000, NOW - 120_000)]
    assert plan_windows(NOW - 120_999, NOW, parallelism=4) == []


# Duo keeps 180 days; planning stays an hour inside: the oldest time still planned is
# NOW - 180 * 86_400_000 + 3_600_000.
OLDEST = 1_784_451_600_000


def test_retention_gap_is_what_lies_before_the_oldest_time_still_planned():
    assert retention_gap(OLDEST, NOW) is None
    assert retention_gap(OLDEST - 1, NOW) == (OLDEST - 1, OLDEST - 1)
    assert retention_gap(OLDEST - 1000, NOW) == (OLDEST - 1000, OLDEST - 1)


def test_a_new_source_with_the_longest_lookback_has_no_gap():
    planned_until = first_planned_until(NOW, 400 * DAY)
    assert planned_until == OLDEST
    assert retention_gap(planned_until, NOW) is None


def test_consecutive_plans_share_their_boundary_millisecond():
    # Issue 8, case 10: the next plan starts where the last window ended, not 1 ms later.
    (first,) = plan_windows(NOW - 180_000, NOW, parallelism=1)
    (second,) = plan_windows(first[1], NOW + 60_000, parallelism=1)
    assert second[0] == first[1]


def test_a_gap_lost_to_retention_is_reported_and_planning_and_the_watermark_go_on_after_it():
    cursor = {"planned_until_ms": OLDEST - 1000, "watermark_ms": OLDEST - 5000}
    update = past_retention(cursor, (OLDEST - 1000, OLDEST - 1), NOW)
    assert update["gap_ms"] == [OLDEST - 1000, OLDEST - 1]
    assert (update["planned_until_ms"], update["watermark_ms"]) == (OLDEST, OLDEST)
    assert update["last_error_at_ms"] == NOW
    assert update["last_error"] == (
        f"logs between {OLDEST - 1000} and {OLDEST - 1} ms were older than Duo's 180-day "
        "retention when planned and cannot be collected"
    )


def test_a_watermark_at_the_gaps_last_millisecond_moves_past_it_one_already_past_stays():
    gap = (OLDEST - 1000, OLDEST - 1)
    at_its_end = {"planned_until_ms": OLDEST - 1000, "watermark_ms": OLDEST - 1}
    assert past_retention(at_its_end, gap, NOW)["watermark_ms"] == OLDEST
    past_it = {"planned_until_ms": OLDEST - 1000, "watermark_ms": OLDEST}
    update = past_retention(past_it, gap, NOW)
    assert "watermark_ms" not in update and update["planned_until_ms"] == OLDEST


def test_without_a_gap_the_cursor_is_left_alone():
    assert past_retention({"planned_until_ms": OLDEST, "watermark_ms": OLDEST}, None, NOW) == {}


# --- issue 17: a quiet source is read every QUIET_READ_EVERY ---------------------------------

FIVE_MIN = 300_000


def test_only_a_source_without_a_record_in_the_last_hour_waits_for_a_longer_span():
    assert quiet_wait_ms(NOW - HOUR, NOW - 180_000, NOW, FIVE_MIN) == 0
    assert quiet_wait_ms(NOW - HOUR - 1, NOW - 180_000, NOW, FIVE_MIN) == FIVE_MIN


def test_a_source_still_reading_its_backlog_is_not_quiet():
    # A new account's first backfill: no record passed yet, its watermark hours behind. Its
    # live windows stay a minute long, to go before the backlog's requests.
    assert quiet_wait_ms(NOW - DAY, NOW - 3 * HOUR, NOW, FIVE_MIN) == 0
    # Caught up, or as far behind as a quiet read and the live span leave it: quiet.
    behind = NOW - FIVE_MIN - LIVE_MS
    assert quiet_wait_ms(NOW - DAY, behind, NOW, FIVE_MIN) == FIVE_MIN
    assert quiet_wait_ms(NOW - DAY, behind - 1, NOW, FIVE_MIN) == 0


def test_quiet_read_every_minute_keeps_todays_cadence():
    planned_until = NOW - 180_000
    wait = quiet_wait_ms(NOW - DAY, planned_until, NOW, 60_000)
    assert plan_windows(planned_until, NOW, 1, wait_ms=wait) == [(NOW - 180_000, NOW - 120_000)]


def test_a_quiet_source_gets_one_five_minute_window_every_five_minutes():
    planned_until, live = NOW - 120_000, []
    for run in range(1, 11):
        for window in plan_windows(planned_until, NOW + run * 60_000, 1, wait_ms=FIVE_MIN):
            live.append(window)
            planned_until = window[1]
    assert live == [(NOW - 120_000, NOW + 180_000), (NOW + 180_000, NOW + 480_000)]


def test_the_first_record_after_a_quiet_hour_is_planned_within_eight_minutes():
    # The worst case: a record at a quiet window's start waits for the window's five minutes
    # and Duo's two; the planner's next run (a minute apart) plans it, to fetch and write.
    record = NOW
    planned_until, now = record, record
    while not plan_windows(planned_until, now, 1, wait_ms=FIVE_MIN):
        now += 60_000
    assert now - record == 7 * 60_000
