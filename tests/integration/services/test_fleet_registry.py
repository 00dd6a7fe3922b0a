"""A fleet deployment's sources, end to end against the Duo simulator's MSP mode over real
sockets and the Firestore and Storage emulators: the planner discovers the parent's children
into the registry and plans each, the fetcher reads each at its own host with the parent's
keys, the writer lands each under its own prefix (and the sources file's account in its own
bucket), and a child in another Duo deployment is shown refused with Duo's code and the fix,
holding back no other account.

The services' work runs in this process, window tasks and record batches handed on directly
instead of through Pub/Sub (tests/integration/test_pipeline.py covers Pub/Sub's delivery); the
simulator and the services share one fake clock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import pytest
import requests

from harness.fleet import landed, truth
from services.fetcher.duo_clients import DuoClients
from services.fetcher.window_fetch import WindowFetcher
from services.planner.discovery import discover, planned_sources
from services.planner.run import run_planner
from services.settings import fetcher_settings, planner_settings
from services.status import render
from services.writer.landing import land_batch
from shared.clock import now_ms
from shared.gcp.clients import storage_client
from shared.gcp.cursor_store import CursorStore
from shared.gcp.destinations import Destinations
from shared.gcp.secret_manager import CachedSecrets
from shared.gcp.source_registry import CachedEntries, SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.sources import ACTIVE, REFUSED, REFUSED_FIX
from shared.pipeline.windows import QUARANTINED
from simulator.dataset import DatasetSpec
from simulator.fleet_api import ACCOUNTS_PATH
from simulator.server import SimulatorServer
from tests.conftest import unique_name
from tests.fakes import FakeClock
from tests.msp_simulator import PARENT_IKEY, PARENT_SKEY, msp_simulator

pytestmark = pytest.mark.integration

PARENT_SECRET = "projects/duo-telephony-test/secrets/msp-parent/versions/1"
OWN_SECRET = "projects/duo-telephony-test/secrets/own/versions/1"


class HandOn:
    """Pub/Sub's place: what the services publish, kept for the next step."""

    def __init__(self) -> None:
        self.tasks: list = []
        self.batches: list = []

    def publish_tasks(self, tasks) -> int:
        self.tasks += list(tasks)
        return len(tasks)

    def publish_batch(self, batch) -> str:
        self.batches.append(batch)
        return str(len(self.batches))

    def publish_check(self, check) -> str:
        return "check"


@pytest.fixture
def fleet() -> Iterator[tuple[SimulatorServer, FakeClock]]:
    clock = FakeClock()
    with msp_simulator(clock, DatasetSpec(records=1200, days=1, seed=11)) as server:
        yield server, clock


def test_discovered_children_land_under_their_own_prefix_and_a_refused_one_is_shown(
    fleet, firestore_db, gcs_bucket, tmp_path
):
    sim, clock = fleet
    project = firestore_db.project
    listed = requests.get(f"{sim.base_url}{ACCOUNTS_PATH}", timeout=30).json()
    [own] = [a for a in listed if not a["msp_child"]]
    read_secret = {PARENT_SECRET: PARENT_SKEY, OWN_SECRET: own["skey"]}.__getitem__
    sources_file = tmp_path / "sources.json"
    own_bucket = gcs_bucket.client.create_bucket(unique_name("own"))
    own_entry = {"id": "own", "api_host": sim.base_url, "ikey": own["ikey"]}
    own_entry |= {"skey_secret": OWN_SECRET, "destination": {"bucket": own_bucket.name}}
    sources_file.write_text(json.dumps([own_entry]))
    env = {
        "GOOGLE_CLOUD_PROJECT": project,
        "DUO_SOURCES_FILE": str(sources_file),
        "DUO_MSP_PARENT": json.dumps(
            {
                "id": "msp",
                "api_host": sim.base_url,
                "ikey": PARENT_IKEY,
                "skey_secret": PARENT_SECRET,
                "destination": {"prefix": "customers/{account_id}/"},
            }
        ),
        "LOOKBACK": "30h",
        "DUO_RATE_LIMIT_PER_MINUTE": "600",
        "GCS_BUCKET": gcs_bucket.name,
    }
    settings = planner_settings(env)
    registry = SourceRegistry(firestore_db, clock, settings.accounts_refresh_ms)
    windows = WindowStore(firestore_db, clock)
    cursors = CursorStore(firestore_db, windows, clock)
    hand_on = HandOn()
    destinations = Destinations(
        registry, clock, storage_client(project), gcs_bucket.name, "duo-telephony"
    )
    list_children = functools.partial(
        discover, secrets=CachedSecrets(read_secret, clock), clock=clock
    )

    def sources() -> list[str]:
        return planned_sources(settings, registry, list_children, clock).due

    clients = DuoClients(
        fetcher_settings(env, read_secret),
        firestore_db,
        clock,
        CachedEntries(registry, clock),
        CachedSecrets(read_secret, clock),
    )
    fetcher = WindowFetcher(
        windows, hand_on, clients.api, clock, lease_seconds=60, time_budget_seconds=240
    )
    write = functools.partial(destinations.write, gzip=False)

    try:
        for _run in range(3):
            run_planner(settings, cursors, windows, hand_on, clock, destinations, sources)
            while hand_on.tasks:
                fetcher.fetch(hand_on.tasks.pop(0))
                while hand_on.batches:
                    land_batch(hand_on.batches.pop(0), write, windows)
            clock.advance(300)
        in_own_bucket = landed(own_bucket, "duo-telephony")
    finally:
        for blob in own_bucket.list_blobs():
            blob.delete()
        own_bucket.delete()

    assert set(in_own_bucket) == {"own"}  # the file's source in its own bucket
    assert set(in_own_bucket["own"]) == set(truth(sim, own["account_id"]))
    assert max(in_own_bucket["own"].values()) == 1
    children = {a["account_id"]: a for a in listed if a["msp_child"]}
    entries = registry.entries()
    assert sorted(entries) == sorted([*(account.lower() for account in children), "own"])
    assert registry.parent("msp")["error"] is None
    for account_id, child in children.items():
        source = account_id.lower()
        entry = entries[source]
        if child["refused"]:
            assert entry["state"] == REFUSED
            assert entry["code"] == 40301 and entry["fix"] == REFUSED_FIX
            assert "Duo answered HTTP 403 code 40301" in entry["error"]
            assert windows.count(source, QUARANTINED) == 0
            text = render(cursors.status(source) | {"registry": entry}, now_ms(clock))
            assert "(Duo code 40301)" in text and REFUSED_FIX in text
            continue
        assert entry["state"] == ACTIVE
        [(name, got)] = landed(gcs_bucket, f"customers/{account_id}").items()
        assert name == source
        expected = set(truth(sim, account_id))
        assert len(expected) == child["records"] > 0
        assert set(got) == expected  # none missing
        assert max(got.values()) == 1  # none twice
    assert not list(gcs_bucket.client.list_blobs(gcs_bucket, prefix="duo-telephony/"))
