"""How fresh live records are when they land: seconds from a record's ``ts`` to the creation
of the object holding it, summarised as p50, p95 and maximum, split at the moment the backfill
had caught up (records newer than that are the steady state)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Freshness:
    records: int
    p50: float
    p95: float
    max: float


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in (0, 1]): the smallest value with at least that
    share of the values at or below it, so it is always one of the values measured."""
    if not values or not 0 < share <= 1:
        raise ValueError("a percentile needs values and a share within (0, 1]")
    ordered = sorted(values)
    return ordered[math.ceil(share * len(ordered)) - 1]


def summarize(ages: list[float]) -> Freshness | None:
    if not ages:
        return None
    return Freshness(len(ages), percentile(ages, 0.5), percentile(ages, 0.95), max(ages))


def split_by_phase(
    landings: Iterable[tuple[float, float]], live_from: float, caught_up: float, until: float
) -> tuple[Freshness | None, Freshness | None]:
    """``landings`` are (record ts, object created) in epoch seconds. Live records are those
    from ``live_from`` (the run's start) to ``until`` (the end of the measured run); those
    before ``caught_up`` arrived during the backfill, the others after it."""
    during: list[float] = []
    after: list[float] = []
    for ts, created in landings:
        if not live_from <= ts < until:
            continue
        (during if ts < caught_up else after).append(created - ts)
    return summarize(during), summarize(after)
