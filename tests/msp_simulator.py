"""The Duo simulator in MSP mode for integration tests: by default a parent whose keys list four
children, one of them refused (a child in another Duo deployment), records spread by Zipf's
law; and what landed in a bucket, to hold against each account's ground truth."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import requests
from google.cloud import storage

from harness.pipeline import PipelineConfig
from shared.clock import Clock
from shared.duo.secret import Secret
from shared.pipeline.objects import decode_records, parse_object_name
from simulator.api import ApiOptions
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import ACCOUNTS_PATH, FleetApi
from simulator.server import SimulatorServer

PARENT_IKEY = "DIMSPPARENTINTEGRATE"
PARENT_SKEY = "MspParentSecretKeyForIntegrationTests000"
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
    listed = requests.get(f"{sim.base_url}{ACCOUNTS_PATH}", timeout=30).json()
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


def landed(bucket: storage.Bucket, prefix: str) -> dict[str, Counter]:
    """Records landed under ``prefix``, by source: telephony id -> times landed."""
    found: dict[str, Counter] = {}
    for blob in bucket.list_blobs(prefix=f"{prefix}/"):
        name = parse_object_name(blob.name, prefix)
        for record in decode_records(blob.download_as_bytes(), False):
            found.setdefault(name.source, Counter())[record["telephony_id"]] += 1
    return found


def truth(sim: SimulatorServer, account_id: str) -> set[str]:
    """The account's records as the simulator holds them."""
    body = requests.get(
        f"{sim.base_url}/__sim__/records", params={"account_id": account_id}, timeout=30
    ).text
    return {json.loads(line)["telephony_id"] for line in body.splitlines()}
