"""The scheduler's run: the sources to plan, handed out in slices as plan tasks, so that many
planner requests (and instances) plan a fleet in parallel and the scheduler's call returns in
seconds whatever the fleet's size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shared.pipeline.messages import PlanTask


class PlanPublisher(Protocol):
    def publish_plans(self, plans: Sequence[PlanTask]) -> int: ...


def slices(
    sources: Sequence[str], size: int, waits: Mapping[str, int] | None = None
) -> list[PlanTask]:
    """The sources, in their order and each once, ``size`` to a task, each task with the
    ``waits`` of its sources."""
    unique = list(dict.fromkeys(sources))
    waits = waits or {}
    return [
        PlanTask(part, {source: waits[source] for source in part if source in waits})
        for part in (tuple(unique[start : start + size]) for start in range(0, len(unique), size))
    ]


def fan_out(
    sources: Sequence[str],
    size: int,
    publisher: PlanPublisher,
    waits: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Publishes the plan tasks of ``sources`` (all at once, then waits on them); what was
    handed out, for the scheduler's answer and log."""
    plans = slices(sources, size, waits)
    publisher.publish_plans(plans)
    return {"sources": sum(len(plan.sources) for plan in plans), "slices": len(plans)}
