"""The scheduler's call with a fleet, timed: ``POST /run`` of a planner started alone, so that
only the call is measured (the slices it hands out are not planned). One timer for both
benchmarks: bench/fanout (a sources file of N accounts that the first call syncs into the
registry, the calls back to back) and bench/fleet (the fleet simulator's accounts, the calls
on the planner's cadence)."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from harness.catchup import DEMO_PROJECT
from harness.emulators import LocalCloud
from harness.pipeline import LocalPipeline, PipelineConfig
from harness.pubsub_setup import ensure_topic
from shared.gcp.clients import pubsub_publisher
from shared.pipeline.sources import SOURCES_FILE
from shared.pipeline.topics import TopicNames

# The accounts' host (never called: the planner plans from ids alone).
HOST = "api-00000000.duosecurity.com"


@dataclass(frozen=True)
class FanoutTimes:
    sources: int  # what /run handed out, at its last call
    slices: int
    first_seconds: float  # the first call: the registry's entries written
    seconds: list[float]  # the calls after it

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def figures(self) -> dict[str, Any]:
        """The figures both benchmarks write, in seconds."""
        median = self.median_seconds
        return {
            "sources": self.sources,
            "slices": self.slices,
            "first_call_seconds": round(self.first_seconds, 3),
            "later_calls_seconds": [round(seconds, 3) for seconds in self.seconds],
            "later_median_seconds": None if median is None else round(median, 3),
        }


def time_calls(
    call: Callable[[], dict[str, Any]],
    later: int,
    every: float = 0.0,
    say: Callable[[str], None] = print,
    timer: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> FanoutTimes:
    """Times ``later`` + 1 scheduler calls (``call`` answers what /run handed out), each
    started ``every`` seconds after the one before (at once when that one took longer; 0:
    back to back). A call that fails raises: a figure would hide it."""
    times: list[float] = []
    answer: dict[str, Any] = {}
    for number in range(later + 1):
        started = timer()
        answer = call()
        times.append(timer() - started)
        say(f"call {number + 1}: {times[-1]:.2f} s, {answer}")
        if number < later:
            sleep(max(every - times[-1], 0.0))
    return FanoutTimes(answer["sources"], answer["slices"], times[0], times[1:])


def sources_file(path: Path, project: str, count: int) -> Path:
    """A sources file of ``count`` accounts, each with its own secret's name (never read: the
    planner plans from ids alone)."""
    entries = [
        {
            "id": f"account-{n:05d}",
            "api_host": HOST,
            "ikey": f"DI{n:018d}",
            "skey_secret": f"projects/{project}/secrets/account-{n:05d}/versions/1",
        }
        for n in range(count)
    ]
    path.write_text(json.dumps(entries))
    return path


def time_scheduler_calls(
    log_dir: Path,
    sources: int,
    calls: int,
    say: Callable[[str], None] = print,
    timer: Callable[[], float] = time.perf_counter,
) -> FanoutTimes:
    """Starts the emulators and the planner, then times ``calls`` + 1 calls of its /run."""
    log_dir.mkdir(parents=True, exist_ok=True)
    suffix = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + os.urandom(2).hex()
    with LocalCloud(log_dir, project=DEMO_PROJECT) as cloud, mock.patch.dict(os.environ, cloud.env):
        config = PipelineConfig(
            project=cloud.project,
            bucket="",
            # No single-account variables: the planner's sources are the file's alone.
            duo_api_host="",
            duo_ikey="",
            duo_skey="",
            topics=TopicNames.with_suffix(suffix),
            extra_env={
                SOURCES_FILE: str(sources_file(log_dir / "sources.json", cloud.project, sources))
            },
        )
        ensure_topic(pubsub_publisher(), cloud.project, config.topics.plans)
        pipeline = LocalPipeline(config, cloud.env, log_dir)
        try:
            pipeline.start_service("planner")
            return time_calls(pipeline.trigger_planner, calls, say=say, timer=timer)
        finally:
            pipeline.stop()
