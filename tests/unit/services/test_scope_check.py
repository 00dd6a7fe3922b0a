"""``rate_limit: auto`` in the planner: the children's requests of the last minute go to the
parent's decision each run, and a decision per account plans the children without shared
waits."""

from __future__ import annotations

from services.planner.scope_check import scoped_waits
from shared.pipeline.rate_scope import ScopeDecision
from shared.pipeline.rate_share import ACCOUNT, PARENT
from tests.fakes import FakeClock


class Decisions:
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.minutes: list[float] = []

    def served(self, served: float) -> ScopeDecision:
        self.minutes.append(served)
        return ScopeDecision(scope=self.scope)


def run(scope: str) -> tuple[dict[str, int], list[float], list[float]]:
    clock = FakeClock(start=1_000.0)
    decisions = Decisions(scope)
    asked: list[float] = []

    def served(now: float) -> int:
        asked.append(now)
        return 17

    waits = scoped_waits(
        lambda listed: {source: 120_000 for source in listed},
        decisions,  # type: ignore[arg-type]
        served,
        clock,
    )
    return dict(waits(["own", "da1", "da2"])), decisions.minutes, asked


def test_children_taken_to_share_the_parents_budget_wait_their_turn():
    waits, served, asked = run(PARENT)
    assert waits == {"own": 120_000, "da1": 120_000, "da2": 120_000}
    assert served == [17] and asked == [1_000.0]  # the fleet's last minute, once a run


def test_children_counted_per_account_wait_for_nothing():
    waits, served, _ = run(ACCOUNT)
    assert waits == {} and served == [17]
