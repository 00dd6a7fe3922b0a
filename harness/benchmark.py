"""One measured run of the benchmark, at production's cadence: the planner triggered every
``plan_every`` seconds (60, as Cloud Scheduler does), a backfill of N records while live
records arrive, then a steady phase of some minutes after the backfill has caught up, then
(with live records) until every live record of the measured span has landed.

What it measures: Duo requests by purpose (``harness.duo_requests``), the freshness of live
records during and after the backfill (``harness.freshness``, to each object's ``timeCreated``,
which fake-gcs-server sets at upload: tests/integration/gcp/test_operations.py), the
operations each service counted (``harness.service_operations``) during the backfill and in
the steady phase, and the bucket checked against the simulator's ground truth.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.catchup import LocalStack, RunOptions, Summary, check_bucket, local_stack
from harness.chaos import Chaos, ChaosReport
from harness.duo_requests import RecordingApi, RequestCounts, classify, in_span
from harness.freshness import Freshness, split_by_phase
from harness.instance_time import BILLABLE_MS, InstanceTime, deployed_concurrency, instance_time
from harness.pipeline import SERVICES
from harness.scheduler import Scheduler
from harness.service_logs import read_log
from harness.service_operations import (
    LOG_BYTES,
    at,
    between,
    log_bytes,
    parse,
    requests_between,
)
from shared.duo.records import record_time_us
from shared.gcp.clients import storage_client
from shared.pipeline.objects import parse_object_name
from shared.secops.record_source import parse_stream

PROGRESS_EVERY = 10.0  # seconds between progress lines
POLL = 1.0  # seconds between looks at the cursor


@dataclass
class Measurement:
    records: int  # the backlog, N
    backfill_seconds: float  # from the first planner run to the watermark past the backlog
    steady_seconds: float
    requests: RequestCounts
    steady_requests: int  # answered Duo requests during the steady phase
    freshness_backfill: Freshness | None
    freshness_steady: Freshness | None
    operations_backfill: dict[str, dict[str, int]]  # service -> operation -> count
    operations_steady: dict[str, dict[str, int]]
    live_records_steady: int  # live records whose ts fell in the steady phase
    summary: Summary  # the bucket against the ground truth at the end, memory, objects
    chaos: ChaosReport | None = None

    def figures(self) -> dict[str, float | None]:
        """The run's figures by name, flat, for medians over repeats and for ``bench/cost``:
        operations per 1,000 backlog records during the backfill and per minute in the
        steady phase, by service (``backfill_per_1k.fetcher.firestore_reads``)."""
        r, summary = self.requests, self.summary
        figures: dict[str, float | None] = {
            "backfill_seconds": self.backfill_seconds,
            "backfill_requests": r.backfill,
            "live_requests": r.live,
            "backfill_checks": r.backfill_checks,
            "live_checks": r.live_checks,
            "steady_requests_per_minute": (
                self.steady_requests * 60 / self.steady_seconds if self.steady_seconds else None
            ),
            "rate_limited": r.rate_limited,
            "requests_per_minute": r.per_minute,
            "missing": summary.missing,
            "duplicated": summary.duplicated,
            "objects": summary.objects,
            "bytes_per_record": summary.bytes / summary.records if summary.records else None,
            "live_records_steady": self.live_records_steady,
            "steady_minutes": self.steady_seconds / 60,
        }
        phases = (("backfill", self.freshness_backfill), ("steady", self.freshness_steady))
        for phase, fresh in phases:
            for name in ("records", "p50", "p95", "max"):
                figures[f"fresh_{phase}_{name}"] = getattr(fresh, name) if fresh else None
        for service, mib in summary.peak_memory_mb.items():
            figures[f"peak_mib.{service}"] = mib
        per_1k = 1000 / self.records if self.records else 0
        per_minute = 60 / self.steady_seconds if self.steady_seconds else 0
        scales = (
            ("backfill_per_1k", self.operations_backfill, per_1k),
            ("steady_per_min", self.operations_steady, per_minute),
        )
        for phase, operations, scale in scales:
            for service, counts in operations.items():
                for name, count in counts.items():
                    figures[f"{phase}.{service}.{name}"] = count * scale if scale else None
        return figures


def phase_total(
    figures: dict[str, float | None],
    phase: str,
    operation: str,
    services: tuple[str, ...] = SERVICES,
) -> float:
    """One operation of a phase in ``Measurement.figures()``, added up over ``services``."""
    return sum(figures.get(f"{phase}.{service}.{operation}") or 0.0 for service in services)


class Cadence:
    """Triggers the planner every ``every`` seconds across the phases of a run, as Cloud
    Scheduler would: the next run is due ``every`` after the previous one was due."""

    def __init__(self, stack: LocalStack, every: float, progress: Callable[[str], None]) -> None:
        self._stack = stack
        self._scheduler = Scheduler(stack.pipeline.trigger_planner, every, progress)
        self._progress = progress
        self._said = 0.0
        self.started = time.time()

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float, phase: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._scheduler.poll()
            status = self._stack.pipeline.status()
            if now - self._said >= PROGRESS_EVERY:
                self._said = now
                self._say(phase, status)
            if done(status):
                return
            if now > deadline:
                log_dir = self._stack.pipeline.log_dir
                raise TimeoutError(f"{phase}: not done after {timeout:.0f} s; logs in {log_dir}")
            time.sleep(POLL)

    def _say(self, phase: str, status: dict[str, Any]) -> None:
        windows = status["windows"]
        line = (
            f"[{time.time() - self.started:7.1f}s] {phase}: watermark lag "
            f"{_lag(status):.0f} s, {status['records']:,} records fetched, windows done "
            f"{windows['done']}, open {sum(windows[s] for s in ('planned', 'fetching', 'fetched'))}"
        )
        if status["last_error"]:
            line += f"; last error: {status['last_error'][:160]}"
        self._progress(line)


def _lag(status: dict[str, Any]) -> float:
    return time.time() - (status["watermark_ms"] or 0) / 1000


def measure(
    options: RunOptions,
    steady_minutes: float,
    log_dir: Path,
    progress: Callable[[str], None] = print,
) -> Measurement:
    """Runs the backfill, the steady phase and the landing of the last live records."""
    with local_stack(options, log_dir, progress) as stack:
        api = stack.duo.simulator.api if stack.duo.simulator else None
        if not isinstance(api, RecordingApi):
            raise RuntimeError("the benchmark measures against the simulator, not a real Duo")
        cadence = Cadence(stack, options.plan_every, progress)
        chaos = None
        with contextlib.ExitStack() as running:
            if options.kill_every is not None:
                chaos = running.enter_context(
                    Chaos(stack.pipeline, stack.pipeline.window_docs, options.kill_every)
                )
            cadence.until(
                lambda s: (s["watermark_ms"] or 0) >= stack.duo.data_end_ms,
                options.timeout,
                "backfill",
            )
            caught_up = time.time()
            steady_end = caught_up + steady_minutes * 60
            cadence.until(lambda _s: time.time() >= steady_end, steady_minutes * 60 + 60, "steady")
            measured_end = time.time()
        if options.live:
            # Every live record of the measured span lands before freshness is read.
            cadence.until(
                lambda s: (s["watermark_ms"] or 0) >= measured_end * 1000,
                options.timeout,
                "landing the last live records",
            )
        summary = check_bucket(stack, caught_up - cadence.started)
        live_from = api.dataset.start_us / 1e6
        landings = _landings(stack, live_from)
        during, after = split_by_phase(landings, live_from, caught_up, measured_end)
        logs = {name: read_log(log_dir / f"{name}.log") for name in SERVICES}
        return Measurement(
            records=options.records,
            backfill_seconds=round(caught_up - cadence.started, 1),
            steady_seconds=round(measured_end - caught_up, 1),
            requests=classify(api.requests(), stack.duo.data_end_ms),
            steady_requests=in_span(api.requests(), caught_up, measured_end),
            freshness_backfill=during,
            freshness_steady=after,
            operations_backfill=phase_operations(logs, None, caught_up),
            operations_steady=phase_operations(logs, caught_up, measured_end),
            live_records_steady=sum(1 for ts, _ in landings if caught_up <= ts < measured_end),
            summary=summary,
            chaos=chaos.report if chaos else None,
        )


def phase_operations(
    logs: dict[str, list[str]], start: float | None, end: float
) -> dict[str, dict[str, int]]:
    """Each service's operations and log bytes from ``start`` (None: the beginning) to
    ``end``, and its requests' billable instance time as modelled (``BILLABLE_MS``), unless
    its log names no request's start and end."""
    phase = {}
    modelled = phase_instance_time(logs, start, end)
    for name, lines in logs.items():
        totals = parse(lines)
        counts = at(totals, end) if start is None else between(totals, start, end)
        phase[name] = counts | {LOG_BYTES: log_bytes(lines, start, end)}
        if (spent := modelled[name]) is not None:
            phase[name][BILLABLE_MS] = round(spent.billable_seconds * 1000)
    return phase


def phase_instance_time(
    logs: dict[str, list[str]], start: float | None, end: float
) -> dict[str, InstanceTime | None]:
    """Each service's requests that ended from ``start`` (None: the beginning) to ``end``, on
    Cloud Run's instances as ``harness.instance_time`` models them with the service's deployed
    concurrency; None for a service whose log names no request's start and end."""
    found: dict[str, InstanceTime | None] = {}
    for name, lines in logs.items():
        requests = requests_between(parse(lines), start, end)
        found[name] = (
            None if requests is None else instance_time(requests, deployed_concurrency(name))
        )
    return found


def _landings(stack: LocalStack, live_from: float) -> list[tuple[float, float]]:
    """(record ts, its object's creation) in epoch seconds, for every live record landed."""
    options, source = stack.options, stack.pipeline.config.source
    client = storage_client(stack.pipeline.config.project)
    found = []
    for blob in client.list_blobs(options.bucket, prefix=f"{options.prefix}/"):
        if parse_object_name(blob.name, options.prefix).source != source:
            continue
        created = blob.time_created.timestamp()
        with blob.open("rb", raw_download=True) as stream:
            for line in parse_stream(blob.name, stream):
                if line.record is None:
                    continue
                ts = record_time_us(line.record) / 1e6
                if ts >= live_from:
                    found.append((ts, created))
    return found
