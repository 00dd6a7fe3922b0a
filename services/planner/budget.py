"""The span each child sharing its MSP parent's Duo budget waits for this run (rate_share):
N is the parent's children planned this run, R the configured rate or, when it is found from
Duo's 429s, the shared limiter's rate as found so far, read once a run."""

from __future__ import annotations

from collections.abc import Callable

from services.settings import PlannerSettings
from shared.clock import Clock, now_ms
from shared.pipeline.rate_share import (
    budget_key,
    budget_rate,
    is_shared,
    read_every_ms,
    shared_wait_ms,
)


def shared_budget(settings: PlannerSettings) -> tuple[str, float | None] | None:
    """The MSP parent's shared budget: its limiter's key and requests a minute (None: found
    from Duo's 429s); None when each child has its own."""
    parent = settings.parent
    if parent is None or not is_shared(parent.rate_limit):
        return None
    key = budget_key("", parent.id, parent.rate_limit)
    return key, budget_rate(parent.rate_limit, settings.rate_per_minute)


def shared_waits(
    settings: PlannerSettings,
    clock: Clock,
    planned: list[str],
    found_rate: Callable[[str], float],
) -> dict[str, int]:
    """Each child's wait (ms) by source id; ``found_rate(key)`` reads the shared limiter's
    rate. The configured sources are no child (the registry reads a configured source in
    place of a child with its id), and every other active source is a child of the one
    configured parent (any other parent's are gone)."""
    budget = shared_budget(settings)
    configured = {spec.id for spec in settings.configured}
    children = [source for source in planned if source not in configured]
    if budget is None or not children:
        return {}
    key, per_minute = budget
    if per_minute is None:
        per_minute = found_rate(key)
    every = read_every_ms(len(children), per_minute)
    now = now_ms(clock)
    return {child: shared_wait_ms(every, i, now) for i, child in enumerate(sorted(children))}
