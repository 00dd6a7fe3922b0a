"""Our client and window reader against the simulator over real sockets, faults included.

The simulator and the client share one fake clock: backoff and rate-limit waits advance it
instead of sleeping, and the simulator's rate window and Date check see the same time.
"""

from __future__ import annotations

import json
import random

import pytest
import requests

from shared.clock import now_ms
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.errors import DuoConfigurationError, DuoRateLimitedError, DuoTransientError
from shared.duo.paging import read_window
from shared.duo.rate_limit import TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from simulator.api import ApiOptions, TelephonyApi
from simulator.dataset import Dataset, DatasetSpec
from simulator.server import SimulatorServer
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

IKEY = "DIREADERSIMULATOR001"
SKEY = "ReaderSecretKeyForTheSimulatorTests00000"
DAY_MS = 86_400_000


def start_simulator(clock, records=3000, **options):
    dataset = Dataset(DatasetSpec(records=records, days=2, seed=5), clock.now())
    api = TelephonyApi(
        dataset, {IKEY: Secret(SKEY)}, clock, random.Random(1), ApiOptions(**options)
    )
    return SimulatorServer(api, port=0).start()


def client(sim, clock, *, skey=SKEY, version=5, digest="sha512", rate=1000.0, retry=None):
    endpoint = DuoEndpoint.parse(sim.base_url)
    signer = Signer(SigningConfig(IKEY, Secret(skey), endpoint.host, version, digest), clock)
    return DuoApi(
        DuoHttp(endpoint),
        signer,
        limiter=TokenBucket(rate=rate, burst=1, clock=clock),
        retry=retry or RetryPolicy(max_attempts=12, max_elapsed=3600),
        clock=clock,
        rng=random.Random(2),
    )


def truth(sim) -> list[str]:
    body = requests.get(f"{sim.base_url}/__sim__/records", timeout=30).text
    return [json.loads(line)["telephony_id"] for line in body.splitlines()]


def read_everything(duo, clock) -> list[str]:
    now = now_ms(clock)
    pages = read_window(duo, now - 3 * DAY_MS, now - 120_000, now_ms=now)
    return [item["telephony_id"] for page in pages for item in page.items]


@pytest.mark.parametrize(
    ("version", "digest"), [(5, "sha512"), (2, "sha512"), (2, "sha1")], ids=["v5", "v2", "v2sha1"]
)
def test_reads_the_whole_data_set_exactly(version, digest):
    clock = FakeClock()
    sim = start_simulator(clock)
    try:
        duo = client(sim, clock, version=version, digest=digest)
        assert read_everything(duo, clock) == truth(sim)
        assert duo.stats.requests == 3
    finally:
        sim.stop()


def test_rides_out_a_429_storm_by_backing_off():
    clock = FakeClock()
    sim = start_simulator(clock, records=6000, rate_limit_per_minute=2)
    try:
        duo = client(sim, clock)
        assert read_everything(duo, clock) == truth(sim)
        assert duo.stats.rate_limited > 0
        assert duo.stats.by_status[200] == 6
        assert sim.api.stats()["rate_limited"] == duo.stats.rate_limited
    finally:
        sim.stop()


def test_gives_up_on_an_endless_429_storm_within_its_budget():
    clock = FakeClock()
    sim = start_simulator(clock, rate_limit_per_minute=1)
    try:
        duo = client(sim, clock, retry=RetryPolicy(max_attempts=3, max_elapsed=1))
        duo.get("/admin/v2/logs/telephony", _params(clock), lambda r: r)
        with pytest.raises(DuoRateLimitedError, match="42901"):
            duo.get("/admin/v2/logs/telephony", _params(clock), lambda r: r)
    finally:
        sim.stop()


def test_survives_5xx_bursts_slow_answers_and_malformed_bodies():
    clock = FakeClock()
    sim = start_simulator(clock, records=5000, fail_rate=0.3, malformed_rate=0.3, slow_seconds=20)
    try:
        duo = client(sim, clock)
        assert read_everything(duo, clock) == truth(sim)
        assert duo.stats.transient_failures > 0
        assert duo.stats.by_status[200] >= 5
    finally:
        sim.stop()


def test_repeated_boundary_events_are_dropped():
    clock = FakeClock()
    sim = start_simulator(clock, records=3000, repeat_boundary=True)
    try:
        assert read_everything(client(sim, clock), clock) == truth(sim)
    finally:
        sim.stop()


def test_a_wrong_secret_is_a_configuration_error_without_the_secret():
    clock = FakeClock()
    sim = start_simulator(clock)
    wrong = "WrongSecretKeyWrongSecretKeyWrongSecret0"
    try:
        duo = client(sim, clock, skey=wrong)
        with pytest.raises(DuoConfigurationError) as error:
            read_everything(duo, clock)
        assert "40103" in str(error.value) and wrong not in str(error.value)
        assert duo.stats.requests == 1
    finally:
        sim.stop()


def test_connection_refused_is_transient():
    clock = FakeClock()
    sim = start_simulator(clock)
    sim.stop()
    duo = client(sim, clock, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(DuoTransientError, match="could not reach Duo"):
        read_everything(duo, clock)


def _params(clock) -> dict[str, str]:
    now = now_ms(clock)
    return {
        "mintime": str(now - DAY_MS),
        "maxtime": str(now - 120_000),
        "limit": "1000",
        "sort": "ts:asc",
    }


def test_an_empty_last_page_that_hands_the_token_back_ends_the_window():
    # Issue 8, case 11: a server that answers past the last page with no items and the same
    # token. The window ends with every record, instead of failing for ever.
    clock = FakeClock()
    sim = start_simulator(clock, final_offset="echo")
    try:
        duo = client(sim, clock)
        assert read_everything(duo, clock) == truth(sim)
        assert duo.stats.requests == 4  # three full pages, then the empty one
    finally:
        sim.stop()
