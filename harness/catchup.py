"""A catch-up through the whole local pipeline, measured: what the demo and the benchmark run.

Emulators (started here, or the running ones named by their variables), the Duo simulator
(or a real Duo account from DUO_API_HOST, DUO_IKEY and DUO_SKEY), the three services as
separate processes, and the planner triggered the way Cloud Scheduler would trigger it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import statistics
import time
from argparse import ArgumentTypeError
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from harness.chaos import Chaos, ChaosReport
from harness.duo_requests import RecordingApi, RepairCost, repair_cost
from harness.emulators import LocalCloud
from harness.pipeline import LocalPipeline, PipelineConfig
from harness.scheduler import Scheduler
from harness.service_logs import log_entries, read_log
from services.settings import (
    ConfigError,
    lookback_seconds,
    object_prefix,
    parse_duration,
    rate_per_minute,
)
from shared.clock import SystemClock, utc_from_us
from shared.duo.records import record_time_ms
from shared.duo.secret import Secret
from shared.gcp.clients import storage_client
from shared.pipeline.objects import parse_object_name
from shared.pipeline.progress import Progress, describe
from shared.pipeline.repair import CHECK_BATCH_MS, DEFAULT_CHECKS_MS
from shared.pipeline.topics import TopicNames
from shared.pipeline.windows import DONE
from shared.secops.record_source import parse_stream
from simulator.api import ApiOptions
from simulator.command import DEMO_IKEY, DEMO_SKEY, rate_limit_changes
from simulator.dataset import Dataset, DatasetSpec
from simulator.server import SimulatorServer

DEMO_PROJECT = "duo-telephony-local"
# Settling waits this much past the longest a window's first late-record check can take.
SETTLE_MARGIN_SECONDS = 600


@dataclass(frozen=True)
class RunOptions:
    records: int = 20_000
    days: float = 2.0
    seed: int = 7
    lookback: str | None = None  # default: the simulated days and an hour more
    rate_limit: int = 60  # Duo requests per minute: the simulator's limit and the pipeline's
    rate_limit_changes: str = ""  # the simulator's limit changing while it runs: 10@5m,...
    pipeline_rate_limit: str = ""  # DUO_RATE_LIMIT_PER_MINUTE if not --rate-limit, e.g. auto
    bucket: str = "duo-telephony-demo"
    prefix: str = "duo-telephony"
    gzip: bool = False
    enrich: bool = False
    fail_rate: float = 0.0
    malformed_rate: float = 0.0
    slow: float = 0.0  # seconds the simulator adds to every answer
    live: float = 0.0
    late_rate: float = 0.0  # share of records the simulated Duo publishes late...
    late_by: str = "0s"  # ...by this much
    boundary_precision: str = "ms"  # how the simulated Duo compares maxtime: ms or us
    kill_every: tuple[float, float] | None = None  # SIGKILL a service worker this often (s)
    plan_every: float = 5.0  # seconds between planner runs (Cloud Scheduler: every minute)
    timeout: float = 1800.0
    parallelism: int | None = None  # PLAN_PARALLELISM; None: the planner's default

    @property
    def first_lookback(self) -> str:
        """--lookback, or by default the simulated days and an hour more, within 180 days."""
        return self.lookback or f"{min(math.ceil(self.days * 24) + 1, 180 * 24)}h"

    def check(self) -> None:
        """Refuses options that cannot run before anything is started, naming the flag."""
        if self.records < 0:
            raise ConfigError(f"--records: {self.records} must be 0 or more")
        if not 0 < self.days <= 180:
            raise ConfigError("--days: Duo keeps 180 days; use more than 0 and at most 180")
        lookback_seconds(self.first_lookback, "--lookback")
        if self.rate_limit < 1:
            raise ConfigError(f"--rate-limit: {self.rate_limit} must be at least 1 a minute")
        if self.pipeline_rate_limit:
            rate_per_minute(self.pipeline_rate_limit, "--pipeline-rate-limit")
        try:
            rate_limit_changes(self.rate_limit_changes)
        except ArgumentTypeError as error:
            raise ConfigError(f"--rate-limit-changes: {error}") from None
        for flag, share in (
            ("--fail-rate", self.fail_rate),
            ("--malformed-rate", self.malformed_rate),
        ):
            if not 0 <= share < 1:
                raise ConfigError(f"{flag}: {share} must be a share within [0, 1)")
        if not 0 <= self.late_rate <= 1:
            raise ConfigError(f"--late-rate: {self.late_rate} must be a share within [0, 1]")
        parse_duration(self.late_by, "--late-by")
        if self.boundary_precision not in ("ms", "us"):
            raise ConfigError(f"--boundary-precision: use ms or us, not {self.boundary_precision}")
        if self.live < 0:
            raise ConfigError(f"--live: {self.live} must be 0 or more records a minute")
        if self.timeout <= 0:
            raise ConfigError(f"--timeout: {self.timeout} must be more than 0 seconds")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", self.bucket):
            raise ConfigError(f"--bucket: {self.bucket!r} is not a bucket name")
        object_prefix(self.prefix, "--prefix")


@dataclass
class Summary:
    simulated: bool
    records: int = 0
    objects: int = 0
    bytes: int = 0
    duo_requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    minimum_requests: int | None = None
    expected: int | None = None
    missing: int | None = None
    # Records Duo published late, visible now, whose window's check has not come yet: not
    # missing until the window has had its check (``settle``).
    awaiting_check: int = 0
    duplicated: int | None = None
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    log_dir: str = ""
    watermark_ms: int | None = None
    chaos: ChaosReport | None = None
    repair: RepairCost | None = None

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def requests_per_minute(self) -> float:
        return self.duo_requests * 60 / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return not self.simulated or (self.missing == 0 and self.duplicated == 0)


@dataclass
class _Duo:
    api_host: str
    ikey: str
    skey: str
    simulator: SimulatorServer | None
    data_end_ms: int


@contextlib.contextmanager
def _duo(options: RunOptions, started: float) -> Iterator[_Duo]:
    real = [os.environ.get(name) for name in ("DUO_API_HOST", "DUO_IKEY", "DUO_SKEY")]
    if all(real):
        yield _Duo(real[0], real[1], real[2], None, int(started * 1000) - 120_000)
        return
    clock = SystemClock()
    dataset = Dataset(
        DatasetSpec(
            records=options.records,
            days=options.days,
            seed=options.seed,
            live_per_minute=options.live,
            late_rate=options.late_rate,
            late_by_seconds=parse_duration(options.late_by, "--late-by"),
        ),
        start=started,
    )
    api = RecordingApi(
        dataset,
        {DEMO_IKEY: Secret(DEMO_SKEY)},
        clock,
        random.Random(f"faults:{options.seed}"),
        ApiOptions(
            rate_limit_per_minute=options.rate_limit,
            rate_limit_changes=rate_limit_changes(options.rate_limit_changes),
            fail_rate=options.fail_rate,
            malformed_rate=options.malformed_rate,
            slow_seconds=options.slow,
            boundary_precision=options.boundary_precision,  # type: ignore[arg-type]
        ),
    )
    with SimulatorServer(api, port=0) as server:
        yield _Duo(
            f"http://{server.host_port}",
            DEMO_IKEY,
            DEMO_SKEY,
            server,
            int(started * 1000) - 120_000,
        )


@dataclass
class LocalStack:
    """A running pipeline and the Duo it reads (``duo.simulator`` when simulated)."""

    pipeline: LocalPipeline
    duo: _Duo
    options: RunOptions
    cloud_env: dict[str, str]  # the emulators' variables, for commands run beside the stack


@contextlib.contextmanager
def local_stack(
    options: RunOptions,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Emulators, Duo (simulated unless a real account is configured) and the three services;
    everything started here is stopped on the way out."""
    started = time.time()
    run_id = new_run_id(started)
    options.check()
    with (
        LocalCloud(log_dir, project=DEMO_PROJECT) as cloud,
        _duo(options, started) as duo,
        environment(cloud.env),
    ):
        config = PipelineConfig(
            project=cloud.project,
            bucket=options.bucket,
            prefix=options.prefix,
            duo_api_host=duo.api_host,
            duo_ikey=duo.ikey,
            duo_skey=duo.skey,
            source=f"demo-{run_id}",
            gzip=options.gzip,
            enrich=options.enrich,
            rate_per_minute=options.pipeline_rate_limit or options.rate_limit,
            lookback=options.first_lookback,
            parallelism=options.parallelism,
            topics=TopicNames.with_suffix(run_id),
            extra_env=extra_env or {},
        )
        progress(f"logs in {log_dir}; emulators: {', '.join(cloud.started) or 'given'}")
        progress(
            f"Duo: {'simulator at ' + duo.api_host if duo.simulator else duo.api_host}; "
            f"source {config.source}; bucket gs://{options.bucket}/{options.prefix}/"
        )
        with LocalPipeline(config, cloud.env, log_dir) as pipeline:
            yield LocalStack(pipeline, duo, options, dict(cloud.env))


def new_run_id(started: float) -> str:
    """A run's own suffix for its source and topics: its start, and a little randomness."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(started)) + os.urandom(2).hex()


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """This process reads Firestore and Storage too (status, the final check); the variables
    are put back afterwards so a next run does not take stopped emulators for running ones."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_catchup(
    options: RunOptions,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    keep_running: Callable[[LocalStack, Summary], Summary | None] | None = None,
) -> Summary:
    """Runs until the watermark has passed everything Duo had when the run started; then, if
    given, ``keep_running(stack, summary)``, whose summary (if any) is the run's."""
    with local_stack(options, log_dir, progress) as stack:
        summary = catch_up(stack, progress)
        if keep_running is not None:
            return keep_running(stack, summary) or summary
        return summary


def catch_up(stack: LocalStack, progress: Callable[[str], None] = print) -> Summary:
    """Triggers the planner until caught up, then checks the bucket."""
    clock_start = time.monotonic()
    chaos = None
    with contextlib.ExitStack() as running:
        if stack.options.kill_every is not None:
            chaos = running.enter_context(
                Chaos(stack.pipeline, stack.pipeline.window_docs, stack.options.kill_every)
            )
        status = _until_caught_up(stack.pipeline, stack.duo, stack.options, progress, clock_start)
    seconds = time.monotonic() - clock_start
    summary = _summarize(
        stack.pipeline, stack.duo, stack.options, status, seconds, stack.pipeline.log_dir
    )
    summary.chaos = chaos.report if chaos else None
    return summary


def _until_caught_up(
    pipeline: LocalPipeline,
    duo: _Duo,
    options: RunOptions,
    progress: Callable[[str], None],
    clock_start: float,
) -> dict[str, Any]:
    scheduler = Scheduler(pipeline.trigger_planner, options.plan_every, progress)
    first_watermark = None
    while True:
        now = time.monotonic()
        scheduler.poll()
        status = pipeline.status()
        watermark = status["watermark_ms"] or 0
        first_watermark = first_watermark or watermark
        span = max(duo.data_end_ms - first_watermark, 1)
        done = min(max(watermark - first_watermark, 0) / span, 1.0)
        progress(catch_up_line(now - clock_start, status, pipeline.reading(), done))
        if watermark >= duo.data_end_ms:
            return status
        if now - clock_start > options.timeout:
            raise TimeoutError(
                f"not caught up after {options.timeout:.0f} s; logs in {pipeline.log_dir}"
            )
        time.sleep(1.0)


def catch_up_line(
    elapsed: float, status: dict[str, Any], reading: Progress | None, watermark_done: float
) -> str:
    """The demo's progress line: while the backfill is read, its bar against Duo's count (the
    watermark moves only once its window is done), else how far the watermark has come."""
    windows = status["windows"]
    open_windows = sum(windows[s] for s in ("planned", "fetching", "fetched", "failed"))
    where = describe(reading) if reading else f"watermark {watermark_done:6.1%}"
    line = (
        f"[{elapsed:6.1f}s] {where}; {status['records']:,} records fetched, "
        f"windows done {windows['done']}, open {open_windows}"
    )
    if status["last_error"]:
        line += f"; last error: {status['last_error'][:160]}"
    return line


def settle(
    stack: LocalStack,
    period: float,
    progress: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Ends the simulated live arrivals, then runs the planner every ``period`` seconds until
    every record lies below the watermark and every window holding records has had its first
    late-record check, and checks the bucket against everything Duo shows then: a late record
    must have been repaired by then, not merely be excused."""
    simulator = stack.duo.simulator
    if simulator is None:
        raise ConfigError("settling needs the Duo simulator: its ground truth is the check")
    clock_start = time.monotonic()
    records_end = simulator.api.dataset.end_live(time.time())
    # The first check comes this long after a window ends, spans wait up to a batch for company.
    patience = (DEFAULT_CHECKS_MS[0] + CHECK_BATCH_MS) / 1000 + SETTLE_MARGIN_SECONDS
    progress(
        f"live records stopped at {utc_from_us(records_end * 1000):%H:%M:%S} UTC; waiting (at "
        f"most {patience / 60:.0f} min) until every window before then is fetched and checked "
        "for late records"
    )
    scheduler = Scheduler(stack.pipeline.trigger_planner, period, progress)
    while True:
        scheduler.call()
        status = stack.pipeline.status()
        checked = status["checked_until_ms"][:1] or [0]
        waiting = unsettled(stack.pipeline.window_docs(), records_end, checked[0])
        watermark = status["watermark_ms"] or 0
        elapsed = time.monotonic() - clock_start
        progress(
            f"[{elapsed:6.1f}s] {len(waiting)} window(s) still to fetch or check; "
            f"{status['checks']} check(s), {status['rereads']} re-read(s) so far"
        )
        if watermark >= records_end and not waiting:
            break
        if elapsed > patience:
            raise TimeoutError(
                f"windows not settled after {patience:.0f} s: {sorted(waiting)[:5]}; "
                f"logs in {stack.pipeline.log_dir}"
            )
        sleep(period)
    return _summarize(
        stack.pipeline,
        stack.duo,
        stack.options,
        status,
        elapsed,
        stack.pipeline.log_dir,
        settled=True,
    )


def unsettled(
    windows: dict[str, dict[str, Any]], records_end: int, checked_until_ms: int
) -> list[str]:
    """The windows holding time before ``records_end`` that are not yet done, or not yet
    checked once (the first check level has not got past them)."""
    return [
        window_id
        for window_id, doc in windows.items()
        if doc["mintime"] < records_end
        and (doc["state"] != DONE or doc["maxtime"] > checked_until_ms)
    ]


def _summarize(
    pipeline: LocalPipeline,
    duo: _Duo,
    options: RunOptions,
    status: dict[str, Any],
    seconds: float,
    log_dir: Path,
    settled: bool = False,
) -> Summary:
    summary = Summary(simulated=duo.simulator is not None, seconds=round(seconds, 1))
    summary.watermark_ms = status["watermark_ms"]
    summary.log_dir = str(log_dir)
    summary.peak_memory_mb = {
        name: peak_memory_mb(service.pid) for name, service in pipeline.services.items()
    }
    ids: Counter[str] = Counter()
    client = storage_client(pipeline.config.project)
    for blob in client.list_blobs(options.bucket, prefix=f"{options.prefix}/"):
        if parse_object_name(blob.name, options.prefix).source != pipeline.config.source:
            continue
        summary.objects += 1
        summary.bytes += blob.size or 0
        with blob.open("rb", raw_download=True) as stream:
            for line in parse_stream(blob.name, stream):
                if line.record is not None:
                    ids[line.record["telephony_id"]] += 1
    summary.records = sum(ids.values())
    summary.duplicated = sum(1 for count in ids.values() if count > 1)
    fetcher_log = list(log_entries(read_log(log_dir / "fetcher.log")))
    if duo.simulator is not None:
        stats = duo.simulator.api.stats()
        summary.duo_requests, summary.rate_limited = stats["requests"], stats["rate_limited"]
        expected = _ground_truth(duo.simulator, summary.watermark_ms or 0)
        summary.expected = len(expected)
        missing = expected - ids.keys()
        if not settled:
            dataset = duo.simulator.api.dataset
            late = {telephony_id for telephony_id in missing if dataset.is_late_id(telephony_id)}
            summary.awaiting_check = len(late)
            missing -= late
        summary.missing = len(missing)
    else:
        summary.duo_requests, summary.rate_limited = _fetcher_requests(fetcher_log)
    summary.repair = repair_cost(fetcher_log)
    summary.minimum_requests = math.ceil(summary.records / 1000) if summary.records else 1
    return summary


def check_bucket(stack: LocalStack, seconds: float) -> Summary:
    """The bucket now, checked against Duo's ground truth up to the current watermark."""
    pipeline, status = stack.pipeline, stack.pipeline.status()
    return _summarize(pipeline, stack.duo, stack.options, status, seconds, pipeline.log_dir)


def _ground_truth(simulator: SimulatorServer, watermark_ms: int) -> set[str]:
    response = requests.get(f"{simulator.base_url}/__sim__/records", stream=True, timeout=60)
    response.raise_for_status()
    ids = set()
    for line in response.iter_lines():
        record = json.loads(line)
        if record_time_ms(record) < watermark_ms:
            ids.add(record["telephony_id"])
    return ids


def _fetcher_requests(entries: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Duo requests and 429s, added up from the fetcher's one line per window task."""
    made = throttled = 0
    for entry in entries:
        made += int(entry.get("requests") or 0)
        throttled += int(entry.get("rate_limited") or 0)
    return made, throttled


def peak_memory_mb(pid: int | None) -> float:
    """The largest peak resident size among the processes of ``pid``'s process group (the
    gunicorn master and its worker), in MiB."""
    return round(max(group_memory_kib(pid, "VmHWM"), default=0) / 1024, 1)


def group_memory_kib(pid: int | None, name: str) -> list[int]:
    """``name`` (VmHWM, VmRSS: /proc/PID/status) of each process in ``pid``'s process group,
    in KiB."""
    if pid is None:
        return []
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pid:  # field 5 of stat, the process group
                continue
            for line in (status.parent / "status").read_text().splitlines():
                if line.startswith(f"{name}:"):
                    found.append(int(line.split()[1]))
        except (OSError, IndexError, ValueError):
            continue
    return found


def format_summary(summary: Summary) -> str:
    rows = [
        ("records", f"{summary.records:,}"),
        ("objects", f"{summary.objects:,}"),
        ("bytes", f"{summary.bytes:,}"),
        (
            "Duo requests",
            f"{summary.duo_requests} (minimum ceil(N/1000) = {summary.minimum_requests})",
        ),
        ("429s", str(summary.rate_limited)),
        ("duration", f"{summary.seconds:.1f} s"),
        ("records per second", f"{summary.records_per_second:,.0f}"),
        ("requests per minute", f"{summary.requests_per_minute:.1f}"),
        (
            "peak memory (MiB)",
            ", ".join(f"{k} {v}" for k, v in summary.peak_memory_mb.items()),
        ),
    ]
    if summary.simulated:
        rows += [
            ("expected (ground truth)", f"{summary.expected:,}"),
            ("missing telephony_ids", str(summary.missing)),
            *(
                [("late, awaiting their check", str(summary.awaiting_check))]
                if summary.awaiting_check
                else []
            ),
            ("duplicated telephony_ids", str(summary.duplicated)),
        ]
    else:
        rows.append(("duplicated telephony_ids", str(summary.duplicated)))
    if summary.repair is not None and summary.duo_requests:
        repair = summary.repair
        per_record = repair.requests_per_record
        rows += [
            (
                "late-record repair",
                f"{repair.check_requests} check request(s), {repair.bisection_requests} "
                f"bisection count(s), {repair.reread_requests} re-read request(s): "
                f"{repair.requests / summary.duo_requests:.1%} of Duo requests",
            ),
            ("records the repair landed", f"{repair.records_repaired:,}"),
            (
                "windows read again",
                f"{repair.windows_reread} ({repair.windows_reread_for_nothing} landing nothing)",
            ),
            (
                "repair requests per record",
                "none landed" if per_record is None else f"{per_record:.2f}",
            ),
        ]
    if summary.chaos is not None:
        recoveries = sorted(summary.chaos.recoveries)
        rows += [
            ("workers killed", ", ".join(f"{k} {v}" for k, v in summary.chaos.kills.items())),
            (
                "windows taken up again",
                f"{len(recoveries)} (median {statistics.median(recoveries):.0f} s, "
                f"max {recoveries[-1]:.0f} s)"
                if recoveries
                else "none held at a kill",
            ),
            ("windows not taken up", str(summary.chaos.unrecovered)),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
