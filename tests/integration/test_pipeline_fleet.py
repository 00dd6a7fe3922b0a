"""A fleet deployment as it runs in production: the three services as processes wired by
Pub/Sub push on the emulators, reading an account configured by the single-account variables
and an MSP parent's children discovered by the planner (the Duo simulator's MSP mode). Each
child lands under its own prefix, none missing or twice against the simulator's ground truth
per account; the child in another Duo deployment is refused and shown, and holds back no
other account."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from harness.fleet import landed, truth
from harness.pipeline import LocalPipeline
from shared.clock import SystemClock
from shared.gcp.clients import storage_client
from shared.gcp.source_registry import SourceRegistry
from shared.pipeline.sources import ACTIVE, REFUSED, REFUSED_FIX
from simulator.dataset import DatasetSpec
from tests.conftest import unique_name
from tests.msp_simulator import fleet_config, msp_simulator

pytestmark = pytest.mark.integration

OWN_PREFIX = "duo-telephony"


def test_the_own_account_and_each_discovered_child_land_exactly_once_each_where_it_belongs(
    local_cloud, firestore_db, tmp_path: Path
):
    with msp_simulator(SystemClock(), DatasetSpec(records=1500, days=0.5, seed=3)) as sim:
        config, own, children = fleet_config(
            sim,
            local_cloud.project,
            unique_name("fleet"),
            {},
            prefix=OWN_PREFIX,
            rate_per_minute=600,
            lookback="13h",
        )
        expected = {account: set(truth(sim, account)) for account in [own["account_id"], *children]}
        bucket = storage_client(local_cloud.project).bucket(config.bucket)
        registry = SourceRegistry(firestore_db, SystemClock())
        readable = [a for a, child in children.items() if not child["refused"]]
        with LocalPipeline(config, local_cloud.env, tmp_path) as pipeline:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                pipeline.trigger_planner()
                time.sleep(2)
                mine = landed(bucket, OWN_PREFIX).get("own", Counter())
                theirs = [
                    landed(bucket, f"customers/{a}").get(a.lower(), Counter()) for a in readable
                ]
                counts = [mine, *theirs]
                wanted = [expected[own["account_id"]], *(expected[a] for a in readable)]
                if all(set(c) >= w for c, w in zip(counts, wanted, strict=True)):
                    break
        entries = registry.entries()
    assert set(mine) == expected[own["account_id"]] and max(mine.values()) == 1
    assert set(landed(bucket, OWN_PREFIX)) == {"own"}  # children elsewhere
    for account, got in zip(readable, theirs, strict=True):
        assert set(got) == expected[account], account  # none missing, nothing foreign
        assert max(got.values()) == 1, account  # none twice
        assert entries[account.lower()]["state"] == ACTIVE
    [refused] = [a for a, child in children.items() if child["refused"]]
    entry = entries[refused.lower()]
    assert (entry["state"], entry["code"], entry["fix"]) == (REFUSED, 40301, REFUSED_FIX)
    assert entries["own"]["state"] == ACTIVE and entries["own"]["origin"] == "env"
