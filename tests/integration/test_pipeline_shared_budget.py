"""An MSP parent whose children's reads Duo counts against the parent's keys (the simulator's
``rate_limit_scope`` ``parent``): the fleet keeps to the one shared budget (no 429), each child
is read at least once per ceil(N / R) minutes, and every child's records land once each."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from harness.fleet_reads import reads
from harness.pipeline import LocalPipeline
from shared.clock import SystemClock
from shared.gcp.window_store import WindowStore
from shared.pipeline.sources import child_source_id
from shared.pipeline.windows import DONE
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from tests.conftest import unique_name
from tests.msp_simulator import busy_fleet

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
CHILDREN = 8
RATE = 6  # the parent's budget, requests a minute: each child read every ceil(8 / 6) = 2 min
EVERY_MS = 2 * MINUTE_MS
RUN_SECONDS = 240  # at least: two periods after the backfill
# A loaded machine starts the services and the backfill later: the run goes on until each child
# has two reads done after its backfill, for at most this long.
DEADLINE_SECONDS = 600


def test_children_sharing_the_parents_budget_are_each_read_every_ceil_n_over_r_minutes(
    local_cloud, firestore_db, tmp_path: Path
):
    with busy_fleet(
        local_cloud.project,
        unique_name("shared"),
        FleetSpec(accounts=1, msp_children=CHILDREN, rate_limit_scope="parent"),
        DatasetSpec(records=400, days=0.1, seed=5),
        limit_per_minute=RATE,
        rate_limit="parent",
        rate_per_minute=RATE,
    ) as fleet:
        windows = WindowStore(firestore_db, SystemClock())
        with LocalPipeline(fleet.config, local_cloud.env, tmp_path) as pipeline:
            started = time.monotonic()
            while time.monotonic() - started < RUN_SECONDS or (
                not _each_read_twice(windows, fleet.children)
                and time.monotonic() - started < DEADLINE_SECONDS
            ):
                pipeline.trigger_planner()  # Cloud Scheduler, more often than its minute
                time.sleep(10)
            time.sleep(20)  # the last planned windows are fetched and written
            ended_ms = int(time.time() * 1000)
        served = fleet.sim.api.stats()["accounts"]
    # The fleet kept to the parent's one budget.
    assert sum(account["rate_limited"] for account in served.values()) == 0
    fleet.assert_landed_once()
    windows = WindowStore(firestore_db, SystemClock())
    for account in fleet.children:
        source = child_source_id(account)
        read = reads(snapshot.to_dict() for snapshot in windows.windows(source).stream())
        assert read.windows >= 2, account
        # Each read covers at most ceil(N / R) minutes, and the reads follow each other: a
        # child's read comes in its own minute, behind at most a minute's share of the others.
        assert read.longest_span_ms <= EVERY_MS, account
        assert read.longest_gap_ms <= EVERY_MS + MINUTE_MS, (account, read)
        # Read up to ceil(N / R) minutes behind Duo's two-minute delay, a minute for the run.
        assert read.newest_end_ms >= ended_ms - EVERY_MS - 3 * MINUTE_MS - 20_000, account


def _each_read_twice(windows: WindowStore, children: Iterable[str]) -> bool:
    """Whether each child has its backfill and two later windows read (done)."""
    return all(
        sum(
            1
            for snapshot in windows.windows(child_source_id(account)).stream()
            if snapshot.get("state") == DONE
        )
        >= 3
        for account in children
    )
