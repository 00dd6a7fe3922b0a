"""``rate_limit: auto``: each run the planner gives the parent's decision (rate_scope) the
requests the fleet made in the last minute, as the shared limiter counted them, and plans by
it: decided per account, each child is planned as one with its own budget (no shared waits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shared.clock import Clock
from shared.gcp.rate_scope_store import RateScopeStore
from shared.pipeline.rate_share import ACCOUNT, SharedRead


def scoped_waits(
    waits: Callable[[list[str]], Mapping[str, SharedRead]],
    store: RateScopeStore,
    served: Callable[[float], int],
    clock: Clock,
) -> Callable[[list[str]], Mapping[str, SharedRead]]:
    """``waits`` while Duo is taken to count against the parent, none once per account;
    ``served(now)``: the fleet's requests in the minute to ``now``."""

    def run(listed: list[str]) -> Mapping[str, SharedRead]:
        decided = store.served(served(clock.now()))
        return {} if decided.scope == ACCOUNT else waits(listed)

    return run
