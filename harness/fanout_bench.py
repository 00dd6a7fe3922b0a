"""The scheduler's call with a fleet, timed: the planner alone on the emulators, with a sources
file of N accounts that its first call syncs into the registry, and POST /run called a few
times (bench/fanout). The slices it hands out are not planned: only the call is measured."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from harness.catchup import DEMO_PROJECT
from harness.emulators import LocalCloud, http_request
from harness.pipeline import LocalPipeline, PipelineConfig
from harness.pubsub_setup import ensure_topic
from shared.gcp.clients import pubsub_publisher
from shared.pipeline.sources import SOURCES_FILE
from shared.pipeline.topics import TopicNames

# The accounts' host (never called: the planner plans from ids alone).
HOST = "api-00000000.duosecurity.com"


@dataclass(frozen=True)
class FanoutTimes:
    sources: int  # what /run handed out
    slices: int
    first_seconds: float  # the first call: the registry's entries written
    seconds: list[float]  # the calls after it

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)


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
            url = f"http://{pipeline.services['planner'].address}/run"
            times, answer = [], {}
            for call in range(calls + 1):
                started = timer()
                status, body = http_request("POST", url, timeout=120)
                times.append(timer() - started)
                if status != 200:
                    raise RuntimeError(f"planner /run answered {status}: {body[:500]}")
                answer = json.loads(body)
                say(f"call {call + 1}: {times[-1]:.2f} s, {answer}")
        finally:
            pipeline.stop()
    return FanoutTimes(answer["sources"], answer["slices"], times[0], times[1:])
