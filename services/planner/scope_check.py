"""``rate_limit: auto``: each run the planner gives the parent's decision (rate_scope) the
requests its children made in the last minute, as their own limiters counted them, and plans
by it: decided per account, each child is planned as one with its own budget (no shared
waits)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from shared.clock import Clock
from shared.gcp.rate_scope_store import RateScopeStore
from shared.pipeline.rate_share import ACCOUNT


def scoped_waits(
    waits: Callable[[list[str]], Mapping[str, int]],
    store: RateScopeStore,
    configured: Collection[str],
    served: Callable[[list[str], float], int],
    clock: Clock,
) -> Callable[[list[str]], Mapping[str, int]]:
    """``waits`` while Duo is taken to count against the parent, none once per account;
    ``served(children, now)``: the children's requests in the minute to ``now``. Every listed
    source but the ``configured`` ones is a child (as ``shared_waits`` counts them)."""

    def run(listed: list[str]) -> Mapping[str, int]:
        children = [source for source in listed if source not in configured]
        fleet = served(children, clock.now()) if children else 0
        return {} if store.served(fleet).scope == ACCOUNT else waits(listed)

    return run
