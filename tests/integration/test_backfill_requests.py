"""Every request counts (issue 9): a backfill costs ceil(N/1000) Duo requests, within 5 %,
while live windows keep being planned and fetched, one request each, and however often the
planner runs, a live window a minute (issue 16, item 12): the whole pipeline against the
simulator, at a high limit so that it takes seconds, and a minute for a live window.
"""

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
from shared.pipeline.planning import LIVE_WINDOW_MS

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
    began = time.monotonic()
    with local_stack(run, tmp_path, lambda _line: None) as stack:
        backlog_end = stack.duo.data_end_ms

        def backfill_page(_number: int, query: str) -> bool:
            params = parse_qs(query)
            return int(params["mintime"][0]) < backlog_end and "next_offset" in params

        # The backfill's second page is held until a live window planned after it has been
        # fetched: live windows certainly run while the backfill does. The planner runs every
        # 2 s, as the demo's does while it catches up; a live window comes once a whole
        # minute more is published.
        second_page = stack.duo.simulator.api.hold(backfill_page)
        stack.pipeline.trigger_planner()
        second_page.wait_arrived(timeout=60)
        (backfill,) = window_docs(stack)
        deadline = time.monotonic() + 90
        while not any(
            doc["mintime"] >= backfill["maxtime"] and doc["state"] in ("fetched", "done")
            for doc in window_docs(stack)
        ):
            assert time.monotonic() < deadline, "no live window was fetched during the backfill"
            stack.pipeline.trigger_planner()
            time.sleep(run.plan_every)
        second_page.release()
        summary = catch_up(stack, lambda _line: None)
        docs = window_docs(stack)
    minutes = (time.monotonic() - began) / 60
    spent = requests_by_kind(log_entries(read_log(tmp_path / "fetcher.log")), backlog_end)
    live = [doc for doc in docs if doc["mintime"] >= backfill["maxtime"]]

    assert summary.missing == 0 and summary.duplicated == 0 and summary.rate_limited == 0
    # Windows end on whole minutes: the backlog's last part-minute goes with the first live
    # window, whose request counts as the backfill's (it reads backlog records).
    assert spent[BACKFILL] <= 1.05 * math.ceil(RECORDS / 1000) + 1
    assert spent[BACKFILL] + spent[LIVE] <= 1.05 * math.ceil(RECORDS / 1000) + len(live)
    # A live window a minute, however often the planner ran: the demo costs what production
    # costs, ceil(N/1000) requests and one a live minute.
    assert all(doc["maxtime"] - doc["mintime"] >= LIVE_WINDOW_MS for doc in live)
    assert 0 < len(live) <= minutes + 1
    assert summary.duo_requests <= math.ceil(summary.records / 1000) + 1 + len(live)
