"""``"rate_limit": "auto"`` against the simulator counting an MSP parent's children either way
(``rate_limit_scope``): per account, nothing takes the count for the parent's and the fleet is
served above one account's limit; against the parent, nothing takes it for per account and the
fleet keeps to the one shared limit it found. Either way every child's records land once each,
and Duo's 429s stay few."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.pipeline import LocalPipeline
from shared.duo.adaptive_rate import AutoPolicy
from shared.gcp.rate_limiter import DEFAULT_COLLECTION, auto_rate
from shared.gcp.rate_scope_store import decision_from, scope_key
from shared.pipeline.rate_share import ACCOUNT, PARENT
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from tests.conftest import unique_name
from tests.msp_simulator import busy_fleet

pytestmark = pytest.mark.integration

LIMIT = 6  # Duo's requests a minute: each child's, or the parent's for all of them
DEADLINE_SECONDS = 240
# Records spread by Zipf's law over the simulator's own account and the children (seed 5).
# Per account, 8 children: one holds 5 pages of 1,000, the others 1 to 3, so all are busy at
# first, then that one alone. Against the parent, 4 children of a page or two, which the one
# budget reads beside their live windows (4 of its 6 requests a minute) in about 2 minutes.
FLEET = {ACCOUNT: (8, 12_000), PARENT: (4, 3_000)}


def minute_peak(samples: list[tuple[float, int]]) -> int:
    """The most requests accepted within 60 seconds, from (time, accepted so far) samples."""
    return max(
        (later - earlier for t0, earlier in samples for t1, later in samples if 0 <= t1 - t0 <= 60),
        default=0,
    )


@pytest.mark.parametrize("scope", [ACCOUNT, PARENT])
def test_auto_finds_how_duo_counts_the_childrens_reads(
    scope, local_cloud, firestore_db, tmp_path: Path
):
    children_count, records = FLEET[scope]
    with busy_fleet(
        local_cloud.project,
        unique_name("auto-scope"),
        FleetSpec(
            accounts=1, msp_children=children_count, distribution="zipf", rate_limit_scope=scope
        ),
        DatasetSpec(records=records, days=0.1, seed=5),
        limit_per_minute=LIMIT,
        rate_limit="auto",
        rate_per_minute="auto",
    ) as fleet:
        decisions = firestore_db.collection(DEFAULT_COLLECTION).document(scope_key("msp"))

        def accepted() -> int:
            served = fleet.sim.api.stats()["accounts"]
            return sum(served[account]["ok"] for account in fleet.children)

        samples: list[tuple[float, int]] = []
        with LocalPipeline(fleet.config, local_cloud.env, tmp_path) as pipeline:
            started = time.monotonic()
            planned = -10.0
            while time.monotonic() - started < DEADLINE_SECONDS:
                now = time.monotonic()
                samples.append((now, accepted()))
                if now - planned >= 10:
                    planned = now
                    pipeline.trigger_planner()  # Cloud Scheduler, more often than its minute
                    if now - started > 90 and fleet.caught_up():
                        break  # no demand is left to tell the two ways of counting apart
                time.sleep(2)
        served = fleet.sim.api.stats()["accounts"]
    decision = decision_from(decisions.get().to_dict())
    peak = minute_peak(samples)
    refused = sum(served[account]["rate_limited"] for account in fleet.children)
    shared = auto_rate(
        firestore_db.collection(DEFAULT_COLLECTION).document("msp:children").get().to_dict() or {},
        AutoPolicy(),
    )
    print(
        f"scope {scope}: {decision}; at most {peak} accepted in a minute, {refused} 429s, "
        f"shared {shared}"
    )
    if scope == ACCOUNT:
        # Never taken for the parent's count on evidence (decided per account when a child was
        # refused alone after the fleet had been served well above that: a catch-up this short
        # does not always get that far), and the fleet was served above one account's budget.
        assert decision.scope == ACCOUNT or decision.since == 0, decision
        assert peak > LIMIT
    else:
        assert (decision.scope, decision.since) == (PARENT, 0), decision  # never changed
        # The limit found at the one shared budget (the count errs a request high), and the
        # budget kept to it, once Duo refused the fleet: on a loaded machine its few children
        # may never ask for more than the limit, and then there is nothing to find (CI saw 0
        # 429s, found 0 and the search's starting rate). What Duo accepted in a minute is not
        # asserted: counting against the parent, it never accepts more than the limit.
        if refused:
            assert 0.75 * LIMIT <= shared.found <= LIMIT + 1
            assert shared.per_minute <= LIMIT + 1
    assert refused <= 8  # 3 and 2 when this was written
    fleet.assert_landed_once()
