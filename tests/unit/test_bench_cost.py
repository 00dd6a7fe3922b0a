"""bench/cost's arithmetic: what a month uses from the counted operations, and its price."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

COST = Path(__file__).resolve().parents[2] / "bench" / "cost"


def _cost():
    loader = importlib.machinery.SourceFileLoader("bench_cost", str(COST))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


FIGURES = {
    # a steady minute: one planner run, one window task, one batch of 200 bytes
    "steady_per_min.planner.firestore_reads": 9.0,
    "steady_per_min.fetcher.firestore_reads": 3.0,
    "steady_per_min.planner.pubsub_messages": 1.0,
    "steady_per_min.planner.pubsub_bytes": 300.0,
    "steady_per_min.fetcher.pubsub_messages": 1.0,
    "steady_per_min.fetcher.pubsub_bytes": 3000.0,
    "steady_per_min.planner.cloud_run_requests": 1.0,
    "steady_per_min.fetcher.cloud_run_requests": 1.0,
    "steady_per_min.writer.cloud_run_requests": 1.0,
    "steady_per_min.planner.cloud_run_request_ms": 500.0,
    "steady_per_min.fetcher.cloud_run_request_ms": 20.0,
    "steady_per_min.writer.cloud_run_request_ms": 30.0,
    "steady_per_min.writer.storage_writes": 1.0,
}


def test_a_month_s_usage_follows_from_the_minute() -> None:
    used = _cost().usage(FIGURES, "steady_per_min", 10)
    assert used["firestore_read"] == 120.0
    assert used["storage_class_a"] == 10.0
    assert used["run_request"] == 30.0
    # 0.55 s of requests a minute, but each of the 3 is billed at least 100 ms: 0.55 s stays.
    assert used["run_vcpu_second"] == pytest.approx(5.5)
    assert used["run_gib_second"] == pytest.approx(2.75)
    # 2 messages of 1,650 + 36 bytes on average, published and pushed (2 pushes) 10 times
    assert used["pubsub_byte"] == pytest.approx(40 * 1686)


def test_small_messages_and_short_requests_are_billed_their_minimum() -> None:
    figures = {
        "m.planner.pubsub_messages": 2.0,
        "m.planner.pubsub_bytes": 200.0,
        "m.planner.cloud_run_requests": 4.0,
        "m.planner.cloud_run_request_ms": 40.0,
    }
    used = _cost().usage(figures, "m", 1)
    assert used["pubsub_byte"] == 2 * 1000  # two publishes, no push (no fetcher or writer)
    assert used["run_vcpu_second"] == pytest.approx(0.4)  # 4 x 100 ms, not 40 ms


def test_free_tiers_are_taken_off_only_when_asked() -> None:
    cost = _cost().cost
    assert cost("firestore_read", 1_600_000, free=False) == pytest.approx(0.96)
    assert cost("firestore_read", 1_600_000, free=True) == pytest.approx(0.06)
    assert cost("firestore_read", 1_000, free=True) == 0.0
    assert cost("storage_class_a", 2000, free=True) == pytest.approx(0.01)


MODELLED = FIGURES | {
    # the planner's 500 ms and the fetcher's 20 ms overlapped on their instances: 0.6 s billed
    "steady_per_min.planner.cloud_run_billable_ms": 500.0,
    "steady_per_min.fetcher.cloud_run_billable_ms": 100.0,
    "steady_per_min.writer.cloud_run_billable_ms": 0.0,
}


def test_cloud_run_is_priced_by_modelled_instance_time_with_the_old_rule_as_its_bound() -> None:
    cost = _cost()
    assert cost.run_seconds(MODELLED, "steady_per_min", 10) == pytest.approx((6.0, 5.5, True))
    used = cost.usage(MODELLED, "steady_per_min", 10)
    assert used["run_vcpu_second"] == pytest.approx(6.0)
    assert used["run_gib_second"] == pytest.approx(3.0)
    bound = cost.usage(MODELLED, "steady_per_min", 10, bound=True)
    assert bound["run_vcpu_second"] == pytest.approx(5.5)


def test_a_result_without_the_requests_intervals_is_billed_by_the_bound() -> None:
    cost = _cost()
    # an older result: no service's instance time
    assert cost.run_seconds(FIGURES, "steady_per_min", 10) == pytest.approx((5.5, 5.5, False))
    assert cost.usage(FIGURES, "steady_per_min", 10)["run_vcpu_second"] == pytest.approx(5.5)
    # one service with requests but no instance time is enough to fall back
    partial = {
        k: v for k, v in MODELLED.items() if k != "steady_per_min.writer.cloud_run_billable_ms"
    }
    assert cost.run_seconds(partial, "steady_per_min", 1)[2] is False
    # a service without requests needs none
    idle = MODELLED | {"steady_per_min.writer.cloud_run_requests": 0.0}
    del idle["steady_per_min.writer.cloud_run_billable_ms"]
    assert cost.run_seconds(idle, "steady_per_min", 1)[2] is True
