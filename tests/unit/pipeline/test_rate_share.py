"""An MSP parent's children reading from their own budgets or from one they share."""

from __future__ import annotations

import itertools

import pytest

from shared.pipeline.rate_share import (
    CHECK_REQUESTS,
    READ_LEAD_MS,
    budget_key,
    budget_rate,
    checks_every,
    read_every_ms,
    read_period_ms,
    shared_read,
)
from shared.pipeline.sources import parse_parent
from tests.source_examples import parent_setting

MIN_MS = 60_000


@pytest.mark.parametrize(
    ("children", "per_minute", "minutes"),
    [
        (200, 60, 4),  # the goal: 200 children, 60 a minute: each every 4 minutes
        (20, 6, 4),
        (12, 6, 2),  # an exact quotient is not rounded up
        (120, 60, 2),
        (1, 60, 1),  # a budget to spare: a live window a minute, as for any account
        (7, 0.5, 14),
    ],
)
def test_each_sharing_child_is_read_every_ceil_n_over_r_minutes(children, per_minute, minutes):
    assert read_every_ms(children, per_minute) == minutes * MIN_MS


@pytest.mark.parametrize(("children", "per_minute"), [(200, 60), (20, 6), (13, 6), (7, 0.5)])
def test_the_children_live_windows_ask_for_at_most_the_shared_budget(children, per_minute):
    # One request per child per wait: what live windows ask of the budget each minute.
    assert children / (read_every_ms(children, per_minute) / MIN_MS) <= per_minute


@pytest.mark.parametrize(
    ("children", "per_minute", "period_ms"),
    [
        (200, 60, 235_000),  # 51 live reads a minute: a tenth of the budget left
        (20, 6, 235_000),
        (216, 60, 240_000),  # reads 5 s sooner would ask for more than 90 % of R
        (12, 6, 120_000),
        (1, 60, 60_000),  # a read a minute: one run plans one read
    ],
)
def test_reads_come_a_margin_sooner_than_promised_when_the_budget_allows(
    children, per_minute, period_ms
):
    assert read_period_ms(children, per_minute) == period_ms


def test_each_childs_reads_start_a_period_apart_planned_by_the_run_of_the_minute_before():
    every, period, children = 4 * MIN_MS, 235_000, 20
    start = 1_800_000_000_000 - 1_800_000_000_000 % MIN_MS
    runs = [start + minute * MIN_MS + 1_500 for minute in range(60)]  # Cloud Scheduler's
    starts: dict[int, list[int]] = {}
    for now in runs:
        planned = 0
        for position in range(children):
            read = shared_read(every, period, position, children, now)
            if read.start_at_ms is None:
                assert read.wait_ms == every  # a run missed: planned after every_ms at most
                assert read.next_run_ms > now
                continue
            planned += 1
            assert read.wait_ms == 0
            minute = now - now % MIN_MS
            assert minute + READ_LEAD_MS <= read.start_at_ms < minute + MIN_MS + READ_LEAD_MS
            assert read.next_run_ms - minute in (3 * MIN_MS, 4 * MIN_MS)
            starts.setdefault(position, []).append(read.start_at_ms)
        assert planned in (5, 6)  # 20 children over 3 min 55 s: their share of each minute
    for position, times in starts.items():
        assert {b - a for a, b in itertools.pairwise(times)} == {period}, position
    # The children's reads spread evenly over the period: 11.75 s apart.
    ordered = sorted(t for times in starts.values() for t in times)
    assert {b - a for a, b in itertools.pairwise(ordered)} <= {11_750, 11_751}


@pytest.mark.parametrize(
    ("children", "per_minute", "turns"),
    [
        (200, 60, 23),  # the goal: a check with one read in 23, about every 90 min
        (20, 6, 23),
        (120, 60, 40),  # the reads take all of R: the checks have half its tenth (80 min)
        (20, 600, 1),  # a budget to spare: every read may send one
        (7, 0.5, 40),  # the same: 9 h 20 min
    ],
)
def test_late_record_checks_ask_for_half_of_what_the_reads_leave_each_child_in_its_turn(
    children, per_minute, turns
):
    every, period = read_every_ms(children, per_minute), read_period_ms(children, per_minute)
    assert checks_every(children, per_minute, period) == turns
    start = 1_800_000_000_000 - 1_800_000_000_000 % MIN_MS
    minutes = 3 * turns * period // MIN_MS
    reads, checks = 0, {position: 0 for position in range(children)}
    for minute in range(minutes):
        for position in range(children):
            read = shared_read(every, period, position, children, start + minute * MIN_MS, turns)
            reads += read.start_at_ms is not None
            assert read.checks <= (read.start_at_ms is not None)  # only with a read
            checks[position] += read.checks
    # Each child sends a check in its turn: none waits longer than ``turns`` of its reads.
    assert min(checks.values()) >= 2, checks
    spare = max(per_minute * minutes - reads, 0.1 * per_minute * minutes)
    # Counted in the budget: the reads and the checks' requests together within R when the
    # reads leave room (the half of it the checks may have, give or take a turn each).
    asked = CHECK_REQUESTS * sum(checks.values())
    assert asked <= spare / 2 + CHECK_REQUESTS * children
    if per_minute * minutes > reads:
        assert reads + asked <= per_minute * minutes


def test_children_of_a_shared_parent_draw_from_one_budget_others_from_their_own():
    assert budget_key("da1", "msp", "parent") == budget_key("da2", "msp", "auto") == "msp:children"
    assert budget_key("da1", "msp", "account") == "da1"
    assert budget_key("own", None, None) == "own"  # a configured source: its own
    assert budget_rate("parent", 60.0) == 60.0
    assert budget_rate("parent", None) is None  # DUO_RATE_LIMIT_PER_MINUTE=auto
    assert budget_rate("auto", 60.0) is None  # a shared budget found from Duo's 429s


def test_the_parents_children_share_its_budget_by_default_and_carry_its_setting():
    assert parse_parent(parent_setting()).rate_limit == "parent"
    spec = parse_parent(parent_setting(rate_limit="account"))
    assert spec.child("DA1", "one", "api-1.duosecurity.com").rate_limit == "account"
