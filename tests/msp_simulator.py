"""The Duo simulator in MSP mode for integration tests: by default a parent whose keys list four
children, one of them refused (a child in another Duo deployment), records spread by Zipf's
law; and the pipeline's configuration reading them. What landed and the ground truth:
``harness.fleet``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from google.cloud import storage

from harness.fleet import PARENT_IKEY, PARENT_SKEY, landed, listed_accounts, truth
from harness.pipeline import PipelineConfig
from shared.clock import Clock, SystemClock
from shared.duo.secret import Secret
from shared.gcp.clients import storage_client
from shared.pipeline.sources import child_source_id
from simulator.api import ApiOptions
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import FleetApi
from simulator.server import SimulatorServer

PARENT_SECRET = "projects/duo-telephony-test/secrets/msp-parent/versions/1"
DEFAULT_FLEET = FleetSpec(accounts=1, msp_children=4, refused_share=0.25, distribution="zipf")


@contextlib.contextmanager
def msp_simulator(
    clock: Clock,
    dataset: DatasetSpec,
    fleet: FleetSpec = DEFAULT_FLEET,
    options: ApiOptions | None = None,
) -> Iterator[SimulatorServer]:
    """The simulator serving ``fleet``; ``options``: its rate limit, per account or (the
    fleet's ``rate_limit_scope``) for every request made with the parent's keys."""
    api = FleetApi(fleet, dataset, (PARENT_IKEY, Secret(PARENT_SKEY)), clock, options)
    server = SimulatorServer(api, port=0).start()
    try:
        yield server
    finally:
        server.stop()


def fleet_config(
    sim: SimulatorServer, project: str, bucket: str, parent: dict[str, Any], **config: Any
) -> tuple[PipelineConfig, dict[str, Any], dict[str, dict[str, Any]]]:
    """The pipeline reading the simulator's own account (source ``own``) and the parent's
    children (each under its own prefix; ``parent``: more ``DUO_MSP_PARENT`` fields), and the
    accounts as the simulator lists them: the own one, and the children by account id."""
    listed = listed_accounts(sim)
    [own] = [a for a in listed if not a["msp_child"]]
    children = {a["account_id"]: a for a in listed if a["msp_child"]}
    setting = {
        "id": "msp",
        "api_host": sim.base_url,
        "ikey": PARENT_IKEY,
        "skey_secret": PARENT_SECRET,
        "destination": {"prefix": "customers/{account_id}"},
    }
    env = {
        "DUO_MSP_PARENT": json.dumps(setting | parent),
        "DUO_LOCAL_SECRETS": json.dumps({PARENT_SECRET: PARENT_SKEY}),
    }
    pipeline = PipelineConfig(
        project=project,
        bucket=bucket,
        duo_api_host=sim.base_url,
        duo_ikey=own["ikey"],
        duo_skey=own["skey"],
        source="own",
        extra_env=env,
        **config,
    )
    return pipeline, own, children


@dataclasses.dataclass(frozen=True)
class BusyFleet:
    """A parent's children served by the simulator, the pipeline's configuration reading them,
    and what each child holds (telephony ids by account id)."""

    sim: SimulatorServer
    config: PipelineConfig
    expected: dict[str, set[str]]
    bucket: storage.Bucket

    @property
    def children(self) -> list[str]:
        return list(self.expected)

    def caught_up(self) -> bool:
        """Whether every child's records have landed."""
        got = landed(self.bucket, "customers")
        return all(
            set(got.get(child_source_id(account), Counter())) == records
            for account, records in self.expected.items()
        )

    def assert_landed_once(self) -> None:
        """Every child's records landed, each once, and nothing foreign."""
        got = landed(self.bucket, "customers")
        for account, records in self.expected.items():
            found = got.get(child_source_id(account), Counter())
            assert set(found) == records, account  # none missing, nothing foreign
            assert not found or max(found.values()) == 1, account  # none twice


@contextlib.contextmanager
def busy_fleet(
    project: str,
    bucket: str,
    fleet: FleetSpec,
    dataset: DatasetSpec,
    limit_per_minute: int,
    rate_limit: str,
    rate_per_minute: float | str,
) -> Iterator[BusyFleet]:
    """The simulator serving ``fleet`` at Duo's ``limit_per_minute`` (per account or the
    parent's, as the fleet's ``rate_limit_scope`` says) and the pipeline reading it with the
    parent's ``rate_limit`` at ``rate_per_minute``, three hours back. Every child is read as a
    busy one (``QUIET_READ_EVERY=1m``: a child with no record in its backlog is otherwise
    quiet, read every 5 minutes, longer than these tests run)."""
    options = ApiOptions(rate_limit_per_minute=limit_per_minute)
    with msp_simulator(SystemClock(), dataset, fleet, options) as sim:
        config, _own, children = fleet_config(
            sim,
            project,
            bucket,
            {"rate_limit": rate_limit},
            rate_per_minute=rate_per_minute,
            lookback="3h",
        )
        config = dataclasses.replace(
            config, extra_env=config.extra_env | {"QUIET_READ_EVERY": "1m"}
        )
        expected = {account: set(truth(sim, account)) for account in children}
        yield BusyFleet(sim, config, expected, storage_client(project).bucket(config.bucket))
