"""Every request counts (issue 9): a backfill costs ceil(N/1000) Duo requests, within 5 %,
while live windows keep being planned and fetched, one request each; the whole pipeline
against the simulator, at a high limit so that it takes seconds."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from google.cloud import firestore

from harness.catchup import RunOptions, catch_up, local_stack
from harness.request_split import BACKFILL, LIVE, requests_by_kind
from shared.clock import SystemClock
from shared.gcp.window_store import WindowStore

pytestmark = pytest.mark.integration

RECORDS = 20_000


def test_a_backfill_costs_its_pages_while_live_windows_run_one_request_each(
    local_cloud, tmp_path: Path
):
    run = RunOptions(
        records=RECORDS,
        days=7.0,
        rate_limit=600,
        live=300,  # a few records in every live window
        plan_every=2.0,
        bucket=f"backfill-{uuid.uuid4().hex[:10]}",
        timeout=300.0,
    )
    with local_stack(run, tmp_path, lambda _line: None) as stack:
        summary = catch_up(stack, lambda _line: None)
        backlog_end = stack.duo.data_end_ms
        db = firestore.Client(project=stack.pipeline.config.project)
        docs = [
            doc.to_dict()
            for doc in WindowStore(db, SystemClock()).windows(stack.pipeline.config.source).stream()
        ]
    with (tmp_path / "fetcher.log").open() as log:
        spent = requests_by_kind(log, backlog_end)
    backfill_done = max(doc["fetched_at_ms"] for doc in docs if doc["mintime"] < backlog_end)
    live = [doc for doc in docs if doc["mintime"] >= backlog_end and doc["pages"]]

    assert summary.missing == 0 and summary.duplicated == 0 and summary.rate_limited == 0
    assert spent[BACKFILL] <= 1.05 * math.ceil(RECORDS / 1000)
    # Live windows were fetched while the backfill ran, each with one request.
    assert any(doc["fetched_at_ms"] < backfill_done for doc in live)
    assert 0 < spent[LIVE] <= len(live)
