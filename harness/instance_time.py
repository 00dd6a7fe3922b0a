"""Cloud Run's billable instance time, modelled from the requests a service served.

With request-based billing (CPU allocated only during requests, the services' setting), an
instance is billed while at least one request is active on it, rounded up to 100 ms
(cloud.google.com/run/docs/configuring/billing-settings, cloud.google.com/run/pricing):
requests served at once on one instance are billed once. Cloud Run puts at most the service's
``--concurrency`` (cloudbuild.yaml) requests on an instance, so the requests are laid on
modelled instances first-fit in the order they started (a request goes to the first instance
with fewer than ``concurrency`` requests active, else to a new one); while the measured
concurrency stays within the limit that is one instance, and its billable time the union of
the requests' intervals. Each of an instance's busy spans is rounded up to 100 ms. Not
modelled: an instance's start and shutdown (billed too), and Cloud Run spreading requests
over more instances than it needs (it may: then this is below the bill)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

# The modelled billable milliseconds, beside the operations the services counted.
BILLABLE_MS = "cloud_run_billable_ms"
BILLING_STEP_SECONDS = 0.1  # Cloud Run bills instance time in 100 ms steps
CLOUDBUILD = Path(__file__).resolve().parent.parent / "cloudbuild.yaml"

Interval = tuple[float, float]  # a request's start and end, in seconds


@dataclass(frozen=True)
class InstanceTime:
    requests: int
    request_seconds: float  # the requests' durations added up
    peak_concurrency: int  # the most requests active at once, measured
    concurrency: int  # the most Cloud Run puts on one instance
    instances: int  # modelled instances the requests needed
    billable_seconds: float


@cache
def deployed_concurrency(service: str) -> int:
    """The service's ``--concurrency`` as cloudbuild.yaml deploys it (``_PLANNER_CONCURRENCY``)."""
    substitutions = yaml.safe_load(CLOUDBUILD.read_text())["substitutions"]
    return int(substitutions[f"_{service.upper()}_CONCURRENCY"])


def peak_concurrency(intervals: Iterable[Interval]) -> int:
    """The most intervals open at one moment (one ending as another starts: not at once)."""
    ends: list[float] = []
    peak = 0
    for start, end in sorted(intervals):
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        heapq.heappush(ends, end)
        peak = max(peak, len(ends))
    return peak


def on_instances(intervals: Iterable[Interval], concurrency: int) -> list[list[Interval]]:
    """The intervals laid first-fit, in the order they started, on instances that each hold
    at most ``concurrency`` at once."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    instances: list[list[Interval]] = []
    active: list[list[float]] = []  # per instance: the ends of its requests still open (a heap)
    for start, end in sorted(intervals):
        index = _first_with_room(active, start, concurrency)
        if index == len(instances):
            instances.append([])
            active.append([])
        instances[index].append((start, end))
        heapq.heappush(active[index], end)
    return instances


def _first_with_room(active: list[list[float]], start: float, concurrency: int) -> int:
    """The first instance with fewer than ``concurrency`` requests open at ``start`` (those
    ended by then dropped), or the index of a new one."""
    for index, ends in enumerate(active):
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        if len(ends) < concurrency:
            return index
    return len(active)


def busy_spans(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of the intervals: the spans with at least one of them open."""
    spans: list[list[float]] = []
    for start, end in sorted(intervals):
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


def billed(seconds: float) -> float:
    """A busy span's seconds as billed: rounded up to the next 100 ms, at least 100 ms."""
    steps = max(math.ceil(round(seconds / BILLING_STEP_SECONDS, 6)), 1)
    return steps * BILLING_STEP_SECONDS


def instance_time(intervals: Iterable[Interval], concurrency: int) -> InstanceTime:
    """The requests' billable instance time on Cloud Run, modelled (module docstring)."""
    requests = list(intervals)
    instances = on_instances(requests, concurrency)
    billable = sum(
        billed(end - start) for instance in instances for start, end in busy_spans(instance)
    )
    return InstanceTime(
        requests=len(requests),
        request_seconds=sum(end - start for start, end in requests),
        peak_concurrency=peak_concurrency(requests),
        concurrency=concurrency,
        instances=len(instances),
        billable_seconds=billable,
    )
