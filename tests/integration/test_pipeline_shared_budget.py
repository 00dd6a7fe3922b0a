"""An MSP parent whose children's reads Duo counts against the parent's keys (the simulator's
``rate_limit_scope`` ``parent``): the fleet keeps to the one shared budget (no 429), each child
is read at least once per ceil(N / R) minutes, and every child's records land once each."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from harness.fleet_reads import reads
from harness.pipeline import LocalPipeline, PipelineConfig
from shared.clock import SystemClock
from shared.gcp.clients import storage_client
from shared.gcp.window_store import WindowStore
from shared.pipeline.sources import child_source_id
from simulator.api import ApiOptions
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import ACCOUNTS_PATH
from tests.conftest import unique_name
from tests.msp_simulator import PARENT_IKEY, PARENT_SKEY, landed, msp_simulator, truth

pytestmark = pytest.mark.integration

PARENT_SECRET = "projects/duo-telephony-test/secrets/msp-parent/versions/1"
MINUTE_MS = 60_000
CHILDREN = 8
RATE = 6  # the parent's budget, requests a minute: each child read every ceil(8 / 6) = 2 min
EVERY_MS = 2 * MINUTE_MS
RUN_SECONDS = 240


def test_children_sharing_the_parents_budget_are_each_read_every_ceil_n_over_r_minutes(
    local_cloud, firestore_db, tmp_path: Path
):
    fleet = FleetSpec(accounts=1, msp_children=CHILDREN, rate_limit_scope="parent")
    dataset = DatasetSpec(records=400, days=0.1, seed=5)
    with msp_simulator(
        SystemClock(), dataset, fleet, ApiOptions(rate_limit_per_minute=RATE)
    ) as sim:
        listed = requests.get(f"{sim.base_url}{ACCOUNTS_PATH}", timeout=30).json()
        [own] = [a for a in listed if not a["msp_child"]]
        children = [a["account_id"] for a in listed if a["msp_child"]]
        config = PipelineConfig(
            project=local_cloud.project,
            bucket=unique_name("shared"),
            duo_api_host=sim.base_url,
            duo_ikey=own["ikey"],
            duo_skey=own["skey"],
            source="own",
            rate_per_minute=RATE,
            lookback="3h",
            extra_env={
                "DUO_MSP_PARENT": json.dumps(
                    {
                        "id": "msp",
                        "api_host": sim.base_url,
                        "ikey": PARENT_IKEY,
                        "skey_secret": PARENT_SECRET,
                        "destination": {"prefix": "customers/{account_id}"},
                        "rate_limit": "parent",
                    }
                ),
                "DUO_LOCAL_SECRETS": json.dumps({PARENT_SECRET: PARENT_SKEY}),
            },
        )
        expected = {account: truth(sim, account) for account in children}
        bucket = storage_client(local_cloud.project).bucket(config.bucket)
        with LocalPipeline(config, local_cloud.env, tmp_path) as pipeline:
            started = time.monotonic()
            while time.monotonic() - started < RUN_SECONDS:
                pipeline.trigger_planner()  # Cloud Scheduler, more often than its minute
                time.sleep(10)
            time.sleep(20)  # the last planned windows are fetched and written
            ended_ms = int(time.time() * 1000)
        served = sim.api.stats()["accounts"]
    # The fleet kept to the parent's one budget.
    assert sum(account["rate_limited"] for account in served.values()) == 0
    windows = WindowStore(firestore_db, SystemClock())
    for account in children:
        source = child_source_id(account)
        got = landed(bucket, f"customers/{account}").get(source, Counter())
        assert set(got) == expected[account], account  # none missing, nothing foreign
        assert not got or max(got.values()) == 1, account  # none twice
        read = reads(snapshot.to_dict() for snapshot in windows.windows(source).stream())
        assert read.windows >= 2, account
        # Each read covers at most ceil(N / R) minutes, and the reads follow each other: a
        # child's read comes in its own minute, behind at most a minute's share of the others.
        assert read.longest_span_ms <= EVERY_MS, account
        assert read.longest_gap_ms <= EVERY_MS + MINUTE_MS, (account, read)
        # Read up to ceil(N / R) minutes behind Duo's two-minute delay, a minute for the run.
        assert read.newest_end_ms >= ended_ms - EVERY_MS - 3 * MINUTE_MS - 20_000, account
