"""The scheduler's run: the sources to plan, handed out in slices as plan tasks, so that many
planner requests (and instances) plan a fleet in parallel and the scheduler's call returns in
seconds whatever the fleet's size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shared.pipeline.messages import PlanTask
from shared.pipeline.rate_share import SharedRead
from shared.pipeline.schemas import MAX_PLAN_SLICE


class PlanPublisher(Protocol):
    def publish_plans(self, plans: Sequence[PlanTask]) -> int: ...


def slices(
    sources: Sequence[str], size: int, waits: Mapping[str, SharedRead] | None = None
) -> list[PlanTask]:
    """The sources, each once, ``size`` to a task, each task with the ``waits`` of its
    sources. The children sharing a budget whose read this run plans come first, in the order
    of their reads' times and up to MAX_PLAN_SLICE to a task: one planner request plans them
    in that order, so their window tasks reach the fetchers in about the order they are read
    in and none holds a fetcher's thread long waiting for its time. The others follow in
    their order."""
    unique = list(dict.fromkeys(sources))
    waits = waits or {}
    starts = {
        source: start
        for source in unique
        if source in waits and (start := waits[source].start_at_ms) is not None
    }
    timed = sorted(starts, key=lambda source: (starts[source], source))
    rest = [source for source in unique if source not in starts]
    return [
        PlanTask(part, {source: waits[source] for source in part if source in waits})
        for group, per_task in ((timed, MAX_PLAN_SLICE), (rest, size))
        for part in (
            tuple(group[start : start + per_task]) for start in range(0, len(group), per_task)
        )
    ]


def fan_out(
    sources: Sequence[str],
    size: int,
    publisher: PlanPublisher,
    waits: Mapping[str, SharedRead] | None = None,
) -> dict[str, int]:
    """Publishes the plan tasks of ``sources`` (all at once, then waits on them); what was
    handed out, for the scheduler's answer and log."""
    plans = slices(sources, size, waits)
    publisher.publish_plans(plans)
    return {"sources": sum(len(plan.sources) for plan in plans), "slices": len(plans)}
