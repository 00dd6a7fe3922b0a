"""DUO_RATE_LIMIT_PER_MINUTE=auto: two fetcher instances find the simulated account's limit
together through one document in the Firestore emulator, and follow it when it drops.

The simulator, the limiters and the Duo clients share one virtual clock, so twenty minutes
of a saturated catch-up take seconds: each instance is a thread, and time moves on only when
both wait for it; the simulator's 60-second window sees the same time.
"""

from __future__ import annotations

import random
import threading

import pytest
from google.cloud import firestore

from shared.clock import now_ms
from shared.duo.adaptive_rate import AutoPolicy
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.paging import count_records
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from shared.gcp.rate_limiter import DEFAULT_COLLECTION, FirestoreRateLimiter
from simulator.api import ApiOptions, TelephonyApi
from simulator.dataset import Dataset, DatasetSpec
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

IKEY = "DIAUTOLIMITSIMULATOR"
SKEY = "AutoLimitSecretKeyForTheSimulatorTests00"
INSTANCES = 2


class VirtualClock:
    """Time that advances only when every one of ``sleepers`` threads sleeps, to the earliest
    wake-up among them; a thread doing I/O holds time still. A thread that is done calls
    ``leave``."""

    def __init__(self, sleepers: int, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers = sleepers
        self._wakes: list[float] = []
        self._changed = threading.Condition()

    def now(self) -> float:
        with self._changed:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._changed:
            wake = self._now + seconds
            self._wakes.append(wake)
            self._advance()
            if not self._changed.wait_for(lambda: self._now >= wake, timeout=30):
                raise TimeoutError("virtual time stood still for 30 s")
            self._wakes.remove(wake)

    def leave(self) -> None:
        with self._changed:
            self._sleepers -= 1
            self._advance()

    def _advance(self) -> None:
        if self._wakes and len(self._wakes) >= self._sleepers:
            self._now = max(self._now, min(self._wakes))
            self._changed.notify_all()


def saturate(
    db: firestore.Client, source: str, minutes: float, **options: object
) -> tuple[list[float], int, dict]:
    """Two instances asking Duo as fast as their shared limiter lets them for ``minutes``:
    the fake times at which Duo accepted a request, the 429s it sent, and the document."""
    clock = VirtualClock(INSTANCES)
    api = TelephonyApi(
        Dataset(DatasetSpec(records=100, days=1, seed=3), clock.now()),
        {IKEY: Secret(SKEY)},
        clock,
        random.Random(1),
        ApiOptions(**options),  # type: ignore[arg-type]
    )
    with SimulatorServer(api, port=0) as server:
        endpoint = DuoEndpoint.parse(server.base_url)
        signer = Signer(SigningConfig(IKEY, Secret(SKEY), endpoint.host, 5, "sha512"), clock)
        http = DuoHttp(endpoint)
        clients = [
            DuoApi(
                http,
                signer,
                limiter=FirestoreRateLimiter(db, source, rate=AutoPolicy(), clock=clock),
                retry=RetryPolicy(max_attempts=20, max_elapsed=3600),
                clock=clock,
                rng=random.Random(number),
            )
            for number in range(INSTANCES)
        ]
        began, accepted, record = clock.now(), [], threading.Lock()

        def catch_up(duo: DuoApi) -> None:
            try:
                while clock.now() < began + minutes * 60:
                    now = now_ms(clock)
                    count_records(duo, now - 3_600_000, now - 180_000, now_ms=now)
                    with record:
                        accepted.append(clock.now() - began)
            finally:
                clock.leave()

        threads = [threading.Thread(target=catch_up, args=(duo,)) for duo in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(thread.is_alive() for thread in threads)
        throttled = api.stats()["rate_limited"]
    document = db.collection(DEFAULT_COLLECTION).document(source).get().to_dict()
    return accepted, throttled, document


def per_minute_between(accepted: list[float], first: float, last: float) -> float:
    return sum(1 for at in accepted if first * 60 <= at < last * 60) / (last - first)


def test_two_instances_find_the_limit_together_and_keep_just_under_it(firestore_db):
    limit = 40
    accepted, throttled, document = saturate(
        firestore_db, "auto-steady", minutes=20, rate_limit_per_minute=limit
    )
    # Starting above it (60 a minute), the first 429 finds the limit within a minute.
    assert per_minute_between(accepted, 1, 20) >= 0.9 * limit
    assert throttled <= 4
    assert limit <= document["found_per_minute"] <= 1.05 * limit
    assert 0.85 * limit <= document["rate_per_minute"] <= 1.05 * limit


def test_a_limit_that_drops_is_followed_down_within_two_minutes(firestore_db):
    accepted, throttled, document = saturate(
        firestore_db,
        "auto-drop",
        minutes=20,
        rate_limit_per_minute=90,
        rate_limit_changes=((300, 20),),
    )
    assert per_minute_between(accepted, 3, 5) >= 0.9 * 90
    assert per_minute_between(accepted, 7, 20) >= 0.9 * 20
    assert throttled <= 10
    assert 20 <= document["found_per_minute"] <= 1.05 * 20
