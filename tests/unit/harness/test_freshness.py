"""Freshness summaries: nearest-rank percentiles, and live records split at the catch-up."""

from __future__ import annotations

import pytest

from harness.freshness import Freshness, percentile, split_by_phase, summarize


def test_nearest_rank_percentiles_are_values_measured() -> None:
    values = [float(v) for v in range(1, 21)]  # 1 .. 20, given out of order below
    shuffled = values[10:] + values[:10]
    assert percentile(shuffled, 0.5) == 10.0  # ceil(0.5 * 20) = the 10th
    assert percentile(shuffled, 0.95) == 19.0  # ceil(0.95 * 20) = the 19th
    assert percentile(shuffled, 1.0) == 20.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], share)


def test_no_values_no_summary() -> None:
    assert summarize([]) is None
    assert summarize([4.0, 2.0]) == Freshness(2, 2.0, 4.0, 4.0)


def test_live_records_are_split_at_the_catch_up_and_the_rest_left_out() -> None:
    landings = [
        (99.0, 500.0),  # before the run: a backlog record, not live
        (100.0, 160.0),  # live, during the backfill: 60 s
        (150.0, 300.0),  # 150 s
        (200.0, 290.0),  # the moment of the catch-up belongs to the steady state: 90 s
        (250.0, 350.0),  # 100 s
        (400.0, 420.0),  # after the measured span: left out
    ]
    during, after = split_by_phase(landings, live_from=100.0, caught_up=200.0, until=400.0)
    assert during == Freshness(2, 60.0, 150.0, 150.0)
    assert after == Freshness(2, 90.0, 100.0, 100.0)
