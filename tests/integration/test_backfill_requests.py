"""Every request counts (issue 9): a backfill costs ceil(N/1000) Duo requests, within 5 %,
while live windows keep being planned and fetched, one request each; the whole pipeline
against the simulator, at a high limit so that it takes seconds."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from google.cloud import firestore

from harness.catchup import LocalStack, RunOptions, catch_up, local_stack
from harness.duo_requests import BACKFILL, LIVE, requests_by_kind
from harness.service_logs import log_entries, read_log
from shared.clock import SystemClock
from shared.gcp.window_store import WindowStore

pytestmark = pytest.mark.integration

RECORDS = 20_000


def window_docs(stack: LocalStack) -> list[dict]:
    db = firestore.Client(project=stack.pipeline.config.project)
    windows = WindowStore(db, SystemClock()).windows(stack.pipeline.config.source)
    return [doc.to_dict() for doc in windows.stream()]


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
        backlog_end = stack.duo.data_end_ms

        def backfill_page(_number: int, query: str) -> bool:
            params = parse_qs(query)
            return int(params["mintime"][0]) < backlog_end and "next_offset" in params

        # The backfill's second page is held until a live window planned after it has been
        # fetched: live windows certainly run while the backfill does.
        second_page = stack.duo.simulator.api.hold(backfill_page)
        stack.pipeline.trigger_planner()
        second_page.wait_arrived(timeout=60)
        time.sleep(1.5)  # a live window of more than the shortest span planned
        stack.pipeline.trigger_planner()
        deadline = time.monotonic() + 60
        while not any(
            doc["mintime"] >= backlog_end and doc["state"] in ("fetched", "done")
            for doc in window_docs(stack)
        ):
            assert time.monotonic() < deadline, "no live window was fetched during the backfill"
            time.sleep(0.2)
        second_page.release()
        summary = catch_up(stack, lambda _line: None)
        docs = window_docs(stack)
    spent = requests_by_kind(log_entries(read_log(tmp_path / "fetcher.log")), backlog_end)
    live = [doc for doc in docs if doc["mintime"] >= backlog_end and doc["pages"]]

    assert summary.missing == 0 and summary.duplicated == 0 and summary.rate_limited == 0
    assert spent[BACKFILL] <= 1.05 * math.ceil(RECORDS / 1000)
    assert 0 < spent[LIVE] <= len(live)  # one request per live window
