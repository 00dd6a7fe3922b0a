"""The fleet benchmark's measurements, at production's cadence (the planner every minute):

- a fleet through the whole local pipeline: its backfill, then a settle phase of some minutes
  (the pipeline kept on its cadence, not measured, so the backfill's one-time late-record checks
  are behind), then a steady phase of some minutes, then until every account's watermark has
  passed the steady phase's end; measured in the steady phase: the operations each service
  counted and its requests' billable instance time on Cloud Run as modelled
  (``harness.instance_time``), Duo requests, the planner call's duration, the freshness of live
  records (of accounts active in the hour before, and the first record after a quiet hour, told
  apart by the account's ground truth), the peak memory of each service (its processes' resident
  sizes added up, sampled), and every account's records against its ground truth;
- the scheduler's call alone with a registry of many accounts: the planner started by itself,
  ``POST /run`` timed on the same cadence (``harness.fanout_bench.time_calls``, bench/fanout's
  timer).

``bench/fleet`` prices the operations (``bench/cost``) and prints the figures.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.benchmark import phase_instance_time, phase_operations
from harness.catchup import group_memory_kib
from harness.fanout_bench import time_calls
from harness.fleet import (
    FleetOptions,
    FleetStack,
    caught_up,
    check_fleet,
    fleet_stack,
    landed_records,
    truths,
)
from harness.freshness import summarize
from harness.pipeline import SERVICES, LocalPipeline
from harness.scheduler import Scheduler
from harness.service_logs import read_log
from shared.gcp.clients import storage_client
from simulator.dataset import VISIBILITY_DELAY_US

QUIET_SECONDS = 3600  # an account without a record in the hour before is quiet (the goal)
MEMORY_EVERY = 2.0  # seconds between memory samples
POLL = 5.0  # seconds between looks at the fleet's progress


class MemoryPeaks:
    """Samples each service's resident memory (its gunicorn processes added up) in a thread,
    keeping the peak in MiB."""

    def __init__(self, pipeline: LocalPipeline, every: float = MEMORY_EVERY) -> None:
        self._pipeline = pipeline
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peaks: dict[str, float] = dict.fromkeys(SERVICES, 0.0)

    def sample(self) -> None:
        for name, service in self._pipeline.services.items():
            mib = sum(group_memory_kib(service.pid, "VmRSS")) / 1024
            self.peaks[name] = round(max(self.peaks.get(name, 0.0), mib), 1)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def __enter__(self) -> MemoryPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TimedCalls:
    """The planner call, timed: (when it started, seconds) for each call that answered."""

    def __init__(self, call: Callable[[], list[dict[str, Any]]]) -> None:
        self._call = call
        self.calls: list[tuple[float, float]] = []

    def __call__(self) -> list[dict[str, Any]]:
        started = time.time()
        results = self._call()
        self.calls.append((started, time.time() - started))
        return results

    def between(self, start: float, end: float) -> list[float]:
        return [seconds for at, seconds in self.calls if start <= at < end]


def freshness_by_activity(
    landings: list[tuple[str, float, float]],
    history: dict[str, list[float]],
    start: float,
    end: float,
) -> dict[str, list[float]]:
    """Seconds from ts to landing for each record (source, ts, created) with ts in [start,
    end), as ``active`` (its account had a record in the hour before it, per ``history``, the
    account's sorted record times) or ``after_quiet`` (none: the first after a quiet hour)."""
    ages: dict[str, list[float]] = {"active": [], "after_quiet": []}
    for source, ts, created in landings:
        if not start <= ts < end:
            continue
        times = history.get(source, [])
        before = bisect.bisect_left(times, ts)
        active = before > 0 and ts - times[before - 1] <= QUIET_SECONDS
        ages["active" if active else "after_quiet"].append(created - ts)
    return ages


def measure_fleet(
    options: FleetOptions,
    steady_minutes: float,
    plan_every: float,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    settle_minutes: float = 0.0,
) -> dict[str, Any]:
    with fleet_stack(options, log_dir, progress) as stack, MemoryPeaks(stack.pipeline) as memory:
        planner = TimedCalls(stack.pipeline.trigger_planner)
        scheduler = Scheduler(planner, plan_every, progress)
        started = time.time()
        data_end_ms = int(started * 1000) - VISIBILITY_DELAY_US // 1000
        _until(stack, scheduler, data_end_ms, options.timeout, "backfill", progress)
        backfilled = time.time()
        _keep_cadence(scheduler, backfilled + settle_minutes * 60)
        caught = time.time()
        progress(f"settle phase over after {(caught - backfilled) / 60:.1f} min; steady phase")
        requests_before = stack.api.stats()["requests"]
        _keep_cadence(scheduler, caught + steady_minutes * 60)
        measured_end = time.time()
        requests_after = stack.api.stats()["requests"]
        progress(f"steady phase over after {(measured_end - caught) / 60:.1f} min")
        _until(stack, scheduler, int(measured_end * 1000), options.timeout, "landing", progress)
        memory.sample()
        known = truths(stack.sim)
        check = check_fleet(stack, known)
        bucket = storage_client(stack.pipeline.config.project).bucket(options.bucket)
        landings = [(r.source, r.ts, r.created) for r in landed_records(bucket, options.prefix)]
        stored = sum(b.size or 0 for b in bucket.list_blobs(prefix=f"{options.prefix}/"))
        logs = {name: read_log(log_dir / f"{name}.log") for name in SERVICES}
        readable = [a for a in check.accounts if not a.refused]
        history = {a.source: sorted(known[a.account_id].values()) for a in readable}
        ages = freshness_by_activity(landings, history, caught, measured_end)
        steady_seconds = measured_end - caught
        return {
            "accounts": len(check.accounts),
            "readable_accounts": len(readable),
            "backfill_seconds": round(backfilled - started, 1),
            "settle_seconds": round(caught - backfilled, 1),
            "steady_seconds": round(steady_seconds, 1),
            "operations_steady": phase_operations(logs, caught, measured_end),
            "cloud_run_steady": {
                name: asdict(spent) if spent else None
                for name, spent in phase_instance_time(logs, caught, measured_end).items()
            },
            "duo_requests_steady": requests_after - requests_before,
            "requests_per_account_minute": (requests_after - requests_before)
            / len(readable)
            / (steady_seconds / 60),
            "planner_call_seconds_steady": planner.between(caught, measured_end),
            "freshness": {
                kind: asdict(found) if (found := summarize(values)) else None
                for kind, values in ages.items()
            },
            "live_records_steady": sum(len(v) for v in ages.values()),
            "records": len(landings),
            "bytes": stored,
            "peak_mib": memory.peaks,
            "check": check.totals(),
            "failed_accounts": [asdict(a) for a in check.accounts if not a.ok][:20],
        }


def _keep_cadence(scheduler: Scheduler, end: float) -> None:
    """Keeps the planner's cadence until ``end`` (epoch seconds)."""
    while time.time() < end:
        scheduler.poll()
        time.sleep(min(POLL, max(end - time.time(), 0)))


def _until(
    stack: FleetStack,
    scheduler: Scheduler,
    until_ms: int,
    timeout: float,
    phase: str,
    progress: Callable[[str], None],
) -> None:
    """Keeps the planner's cadence until every account's watermark has passed ``until_ms``
    (a refused one shown refused)."""
    started = time.monotonic()
    said = 0.0
    while True:
        scheduler.poll()
        done, total = caught_up(stack, until_ms)
        elapsed = time.monotonic() - started
        if done == total:
            progress(f"[{elapsed:6.1f}s] {phase}: all {total} accounts past the mark")
            return
        if elapsed - said >= 30:
            said = elapsed
            progress(f"[{elapsed:6.1f}s] {phase}: {done} of {total} accounts past the mark")
        if elapsed > timeout:
            raise TimeoutError(f"{phase}: {done} of {total} accounts after {timeout:.0f} s")
        time.sleep(POLL)


def time_scheduler_call(
    options: FleetOptions,
    calls: int,
    plan_every: float,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    call_timeout: float = 900.0,
) -> dict[str, Any]:
    """``POST /run`` with the planner alone and a fleet of ``options``' accounts, ``calls``
    times on the cadence (``harness.fanout_bench.time_calls``): the first call (the registry
    made) and the ones after it, in seconds, and the sources and slices handed out."""
    with fleet_stack(options, log_dir, progress, planner_only=True) as stack:
        times = time_calls(
            lambda: stack.pipeline.trigger_planner(timeout=call_timeout),
            calls - 1,
            plan_every,
            progress,
        )
    return {"accounts": options.accounts + options.msp_children, **times.figures()}
