"""The Duo simulator in MSP mode for integration tests: a parent whose keys list four children,
one of them refused (a child in another Duo deployment), records spread by Zipf's law. What
landed and the ground truth: ``harness.fleet``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness.fleet import PARENT_IKEY, PARENT_SKEY
from shared.clock import Clock
from shared.duo.secret import Secret
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import FleetApi
from simulator.server import SimulatorServer


@contextlib.contextmanager
def msp_simulator(clock: Clock, dataset: DatasetSpec) -> Iterator[SimulatorServer]:
    api = FleetApi(
        FleetSpec(accounts=1, msp_children=4, refused_share=0.25, distribution="zipf"),
        dataset,
        (PARENT_IKEY, Secret(PARENT_SKEY)),
        clock,
    )
    server = SimulatorServer(api, port=0).start()
    try:
        yield server
    finally:
        server.stop()
