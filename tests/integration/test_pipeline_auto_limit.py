"""The whole pipeline with DUO_RATE_LIMIT_PER_MINUTE=auto (three services as processes, the
emulators, the simulator) while the account's limit drops in the middle of the catch-up:
Duo's 429s slow it down, and the bucket still matches the simulator's ground truth."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from harness.catchup import RunOptions, catch_up, local_stack

pytestmark = pytest.mark.integration


def test_a_limit_dropping_mid_catch_up_costs_time_not_records(local_cloud, tmp_path: Path):
    # From 60 a minute, doubling per minute of use, the fetchers have sent about 30 requests
    # when the limit falls from 600 to 15 after 30 s: the last minute already holds twice the
    # new limit, so Duo refuses until it has drained, and the rest goes at the new limit.
    run = RunOptions(
        records=30_000,
        days=1.0,
        rate_limit=600,
        rate_limit_changes="15@30s",
        pipeline_rate_limit="auto",
        bucket=f"auto-{uuid.uuid4().hex[:10]}",
        # Each planner run plans a live window, and live windows go first: planned every 2 s
        # they would take the whole new budget of 15 a minute and starve the backlog.
        plan_every=20.0,
        timeout=420.0,
    )
    with local_stack(run, tmp_path, lambda _line: None) as stack:
        summary = catch_up(stack, lambda _line: None)
        served = stack.duo.simulator.api.stats()
    # The drop was felt, and understood at once: two 429s when this was written, 62 when the
    # fetchers ignored what a 429 says.
    assert 0 < served["rate_limited"] <= 8
    assert summary.records == summary.expected == 30_000
    assert summary.missing == 0 and summary.duplicated == 0
