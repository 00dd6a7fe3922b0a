"""The Duo simulator in MSP mode for integration tests: by default a parent whose keys list four
children, one of them refused (a child in another Duo deployment), records spread by Zipf's
law; and the pipeline's configuration reading them. What landed and the ground truth:
``harness.fleet``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from harness.fleet import PARENT_IKEY, PARENT_SKEY, listed_accounts
from harness.pipeline import PipelineConfig
from shared.clock import Clock
from shared.duo.secret import Secret
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
