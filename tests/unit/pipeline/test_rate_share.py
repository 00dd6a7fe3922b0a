"""An MSP parent's children reading from their own budgets or from one they share."""

from __future__ import annotations

import pytest

from shared.pipeline.rate_share import budget_key, budget_rate, read_every_ms, shared_wait_ms
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


def test_each_child_waits_for_none_in_its_own_minute_of_the_period_and_all_of_it_otherwise():
    every = 4 * MIN_MS
    at = [shared_wait_ms(every, position=5, now_ms=minute * MIN_MS + 30_000) for minute in range(8)]
    assert at == [every, 0, every, every, every, 0, every, every]  # its minute: 5 mod 4 = 1
    planned_each_minute = [
        sum(shared_wait_ms(every, position, minute * MIN_MS) == 0 for position in range(20))
        for minute in range(8)
    ]
    assert planned_each_minute == [5] * 8  # 20 children spread evenly over 4 minutes


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
