"""Each child's part of its MSP parent's shared Duo budget in this run (rate_share): N is the
parent's children in the registry, R the configured rate or, when it is found from Duo's
429s, the shared limiter's rate as found so far, read once a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from services.settings import PlannerSettings
from shared.clock import Clock, now_ms
from shared.pipeline.messages import WindowTask
from shared.pipeline.planning import is_live
from shared.pipeline.rate_share import (
    SharedRead,
    budget_key,
    budget_rate,
    checks_every,
    is_shared,
    read_every_ms,
    read_period_ms,
    shared_read,
)


def shared_budget(settings: PlannerSettings) -> tuple[str, float | None] | None:
    """The MSP parent's shared budget: its limiter's key and requests a minute (None: found
    from Duo's 429s); None when each child has its own."""
    parent = settings.parent
    if parent is None or not is_shared(parent.rate_limit):
        return None
    key = budget_key("", parent.id, parent.rate_limit)
    return key, budget_rate(parent.rate_limit, settings.rate_per_minute)


def children(settings: PlannerSettings, sources: Iterable[str]) -> list[str]:
    """The parent's children among ``sources``, in a stable order. The configured sources are
    no child (the registry reads a configured source in place of a child with its id), and
    every other active source is a child of the one configured parent (any other parent's
    are gone)."""
    configured = {spec.id for spec in settings.configured}
    return sorted(set(sources) - configured)


def shared_reads(
    settings: PlannerSettings,
    clock: Clock,
    active: list[str],
    found_rate: Callable[[str], float],
) -> dict[str, SharedRead]:
    """Each child's part this run by source id, over every ``active`` child of the registry
    (whether its run is due or not: N stays the registry's); ``found_rate(key)`` reads the
    shared limiter's rate."""
    budget = shared_budget(settings)
    sharing = children(settings, active)
    if budget is None or not sharing:
        return {}
    key, per_minute = budget
    if per_minute is None:
        per_minute = found_rate(key)
    every = read_every_ms(len(sharing), per_minute)
    period = read_period_ms(len(sharing), per_minute)
    turns = checks_every(len(sharing), per_minute, period)
    now = now_ms(clock)
    return {
        child: shared_read(every, period, i, len(sharing), now, turns)
        for i, child in enumerate(sharing)
    }


def timed(planned: list[WindowTask], shared: SharedRead | None, now: int) -> list[WindowTask]:
    """The run's windows, a child's live one with the time its read starts (a backfill is
    read at once, behind the live windows)."""
    start = shared.start_at_ms if shared else None
    return [
        dataclasses.replace(task, start_at_ms=start) if is_live(task.mintime, now) else task
        for task in planned
    ]
