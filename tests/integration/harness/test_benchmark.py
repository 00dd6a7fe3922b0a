"""A tiny benchmark run through the whole local pipeline: the operations the services counted
add up to what the run must have done, and the Duo requests are classified."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.benchmark import measure
from harness.catchup import RunOptions

pytestmark = pytest.mark.integration

RECORDS = 2500


def test_a_tiny_run_counts_plausible_operations(tmp_path: Path) -> None:
    result = measure(
        RunOptions(
            records=RECORDS,
            days=1,
            rate_limit=600,
            plan_every=2.0,
            bucket="duo-telephony-bench-test",
            timeout=300,
        ),
        steady_minutes=0.25,
        log_dir=tmp_path,
        progress=lambda _line: None,
    )
    summary = result.summary
    assert summary.ok and summary.records == RECORDS
    backfill = result.operations_backfill
    planner, fetcher, writer = backfill["planner"], backfill["fetcher"], backfill["writer"]

    # Every object is one create-only upload by the writer, one push delivery each at least.
    assert writer["storage_writes"] == summary.objects >= math.ceil(RECORDS / 1000)
    assert writer["cloud_run_requests"] >= summary.objects
    # Each batch was published by the fetcher, and marked landed by the writer.
    assert fetcher["pubsub_messages"] >= summary.objects
    assert writer["firestore_writes"] >= summary.objects
    assert fetcher["pubsub_bytes"] > RECORDS * 100  # a record is about 250 bytes of JSON
    # The planner planned, published its windows, and was called at least once.
    assert planner["cloud_run_requests"] >= 1
    assert planner["pubsub_messages"] >= 1
    assert planner["firestore_reads"] >= 1 and planner["firestore_writes"] >= 1
    # A fetch claims, checkpoints and reserves rate-limit slots: reads and writes.
    assert fetcher["firestore_reads"] >= fetcher["cloud_run_requests"] >= 1
    assert all(counts["log_bytes"] > 0 for counts in backfill.values())
    # Each request's start and end reached the bench: Cloud Run's instance time is modelled,
    # at least a 100 ms step, at most every request billed alone and rounded up.
    for counts in backfill.values():
        billable = counts["cloud_run_billable_ms"]
        assert (
            100 <= billable <= counts["cloud_run_request_ms"] + 100 * counts["cloud_run_requests"]
        )

    # 15 s of steady state at a planner run every 2 s: about 7 runs.
    assert 5 <= result.operations_steady["planner"]["cloud_run_requests"] <= 9
    # The backlog is read in at least one request per 1,000 records; nothing was live.
    assert result.requests.backfill >= math.ceil(RECORDS / 1000)
    assert result.requests.rate_limited == 0
    assert result.freshness_backfill is None and result.freshness_steady is None
