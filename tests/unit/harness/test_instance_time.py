"""Cloud Run's billable instance time, modelled from requests' start and end: an instance is
billed while at least one request is active on it, in 100 ms steps, and holds at most the
service's concurrency."""

from __future__ import annotations

import pytest

from harness.instance_time import (
    InstanceTime,
    busy_spans,
    deployed_concurrency,
    instance_time,
    on_instances,
    peak_concurrency,
)

# Two requests overlapping by half a second, then a short one alone.
OVERLAPPING = [(0.5, 1.5), (0.0, 1.0), (3.0, 3.04)]


def test_requests_served_at_once_on_one_instance_are_billed_once() -> None:
    assert instance_time(OVERLAPPING, concurrency=4) == InstanceTime(
        requests=3,
        request_seconds=pytest.approx(2.04),
        peak_concurrency=2,
        concurrency=4,
        instances=1,
        # (0, 1.5) and (3.0, 3.04), the second billed its 100 ms: not 2.04 s, nor 2.1 s
        billable_seconds=pytest.approx(1.6),
    )


def test_past_the_concurrency_a_request_goes_to_another_instance() -> None:
    assert on_instances(OVERLAPPING, concurrency=1) == [[(0.0, 1.0), (3.0, 3.04)], [(0.5, 1.5)]]
    modelled = instance_time(OVERLAPPING, concurrency=1)
    assert (modelled.instances, modelled.peak_concurrency) == (2, 2)
    # the first instance's (0, 1) and (3.0, 3.04), the second's (0.5, 1.5)
    assert modelled.billable_seconds == pytest.approx(1.0 + 0.1 + 1.0)


def test_an_instance_takes_a_request_again_once_one_of_its_own_has_ended() -> None:
    requests = [(0.0, 1.0), (0.2, 2.0), (1.0, 1.5), (1.2, 1.3)]
    # at 1.0 the first has ended: the third fits beside the second; at 1.2 there is no room
    assert on_instances(requests, concurrency=2) == [
        [(0.0, 1.0), (0.2, 2.0), (1.0, 1.5)],
        [(1.2, 1.3)],
    ]


def test_back_to_back_requests_are_one_busy_span() -> None:
    assert busy_spans([(1.0, 2.0), (0.0, 1.0), (5.0, 6.0)]) == [(0.0, 2.0), (5.0, 6.0)]
    assert peak_concurrency([(1.0, 2.0), (0.0, 1.0)]) == 1


@pytest.mark.parametrize(
    ("seconds", "billed"), [(0.0, 0.1), (0.04, 0.1), (0.25, 0.3), (0.3, 0.3), (1.01, 1.1)]
)
def test_a_busy_span_is_billed_in_100_ms_steps(seconds: float, billed: float) -> None:
    assert instance_time([(10.0, 10.0 + seconds)], 8).billable_seconds == pytest.approx(billed)


def test_no_request_costs_nothing() -> None:
    assert instance_time([], 4) == InstanceTime(0, 0, 0, 4, 0, 0)


def test_an_instance_holds_at_least_one_request() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, not 0"):
        on_instances(OVERLAPPING, 0)


def test_the_concurrency_is_the_deployed_one() -> None:
    assert (deployed_concurrency("planner"), deployed_concurrency("fetcher")) == (4, 8)
