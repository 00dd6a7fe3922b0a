"""``duo-telephony status``: where each source stands, read from Firestore."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from google.api_core.exceptions import GoogleAPICallError, RetryError

from services.fleet_status import SUMMARY_OVER, capped, summary
from services.settings import ConfigError, firestore_database, planner_settings
from shared.clock import Clock, SystemClock, now_ms
from shared.gcp.clients import firestore_client
from shared.gcp.cursor_store import CursorStore
from shared.gcp.rate_limiter import DEFAULT_COLLECTION as LIMITS
from shared.gcp.rate_scope_store import decision_from, scope_key
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.progress import Progress, describe
from shared.pipeline.sources import (
    ACTIVE,
    CHILD,
    ENV,
    GONE,
    MSP_PARENT,
    SOURCES_FILE,
    TROUBLED,
    SourceSpec,
)

T = TypeVar("T")
# Firestore's client keeps retrying a server it cannot reach (300 s against a closed port);
# status gives up sooner, so an operator (or a probe) is told at once.
READ_DEADLINE_SECONDS = 10.0
# Sources read at once: enough to hide Firestore's round trips, few enough for its quotas.
READERS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        help="source id (default: the sources SOURCE_ID or DUO_SOURCES configure, or, with "
        "neither set or with a sources file or an MSP parent, every source found in Firestore)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help=f"text (with more than {SUMMARY_OVER} sources, a summary on one screen) or json "
        "(every source's report, for scripts)",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="--format json"
    )


def run(args: argparse.Namespace) -> int:
    try:
        sources = args.source
        if (
            not sources
            and (os.environ.get("SOURCE_ID") or os.environ.get("DUO_SOURCES"))
            and not fleet(os.environ)
        ):
            sources = list(planner_settings(os.environ).sources)
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
        if not project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT is required but not set")
        firestore_database(os.environ)  # read_reports opens it: a wrong one is told here
    except ConfigError as error:
        print(f"duo-telephony status: {error}")
        return 2
    clock = SystemClock()
    answered = threading.Event()
    try:
        reports = within(
            READ_DEADLINE_SECONDS, lambda: read_reports(project, sources, clock, answered), answered
        )
    except (GoogleAPICallError, RetryError, NoAnswer) as error:
        # A wrong project, credentials or emulator address: one line, not a gRPC traceback.
        where = os.environ.get("FIRESTORE_EMULATOR_HOST")
        target = f"the emulator at {where}" if where else f"project {project}"
        reason = str(error).splitlines()[0][:200]
        print(f"duo-telephony status: could not read Firestore ({target}): {reason}")
        return 2
    if not reports:
        print(f"duo-telephony status: no source in Firestore ({project}): the planner has not run")
        return 1
    as_json = args.format == "json"
    code = show(reports, now_ms(clock), as_json=as_json, out=sys.stdout)
    return max(code, show_parents(read_parents(project, clock), as_json=as_json, out=sys.stdout))


def read_reports(
    project: str, sources: list[str] | None, clock: Clock, answered: threading.Event
) -> list[dict[str, Any]]:
    """Each source's status as read from Firestore (the database FIRESTORE_DATABASE names);
    every source found there when ``sources`` is None. ``answered`` is set as each is read."""
    db = firestore_client(project, firestore_database(os.environ))
    windows = WindowStore(db, clock)
    store = CursorStore(db, windows, clock)
    registry = SourceRegistry(db, clock).entries()

    def report(source: str) -> dict[str, Any]:
        read = store.status(source) | reading(windows, source) | {"registry": registry.get(source)}
        answered.set()
        return read

    # A source takes a dozen round trips; a fleet's are overlapped rather than queued.
    return overlapped(report, sources or windows.sources(), READERS)


def overlapped(read: Callable[[str], T], items: list[str], width: int) -> list[T]:
    """``read(item)`` for each item, in order, ``width`` at a time. The readers are daemon
    threads (a ThreadPoolExecutor's are joined at exit): once ``within`` has given up on a
    Firestore that does not answer, the command exits at once instead of waiting for the
    client's own retries (about 300 s)."""
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    queue = iter(enumerate(items))
    lock = threading.Lock()

    def reader() -> None:
        while not errors:
            with lock:
                taken = next(queue, None)
            if taken is None:
                return
            try:
                results[taken[0]] = read(taken[1])
            except BaseException as error:
                errors.append(error)

    threads = [
        threading.Thread(target=reader, name="status-source", daemon=True)
        for _ in range(min(width, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class NoAnswer(TimeoutError):
    """Firestore did not answer in time."""


def within(seconds: float, call: Callable[[], T], answered: threading.Event | None = None) -> T:
    """``call()``'s result, or NoAnswer when it has not returned within ``seconds``, or, given
    ``answered``, when ``seconds`` pass without the call setting it (a fleet's read takes longer
    than the deadline, but an answer never waits that long). The call runs in a daemon thread,
    left behind when it is late: the command is about to exit."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, name="status-read", daemon=True)
    thread.start()
    thread.join(seconds)
    while thread.is_alive():
        if answered is None or not answered.is_set():
            raise NoAnswer(f"no answer within {seconds:g} s")
        answered.clear()
        thread.join(seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def reading(windows: WindowStore, source: str) -> dict[str, Any]:
    """The backfill's progress: records read against Duo's count, the rate, the time left."""
    progress = windows.reading(source)
    return {"progress": dataclasses.asdict(progress) if progress else None}


def progress_line(report: dict[str, Any]) -> list[str]:
    """``  backfill    [#####.....] 12,000 / 20,000 records (60 %), 1,000/min, ~8 min left``,
    while a window is being read."""
    if not report.get("progress"):
        return []
    return ["  " + describe(Progress(**report["progress"]), label="backfill   ")]


def show(reports: list[dict[str, Any]], now: int, *, as_json: bool, out: TextIO) -> int:
    """Prints the reports, as a summary when there are more than SUMMARY_OVER; the exit code is
    1 when a window failed, is quarantined or stalls on the bucket, or a source has no cursor
    yet, so a script or a probe can tell without reading the text."""
    if as_json:
        print(json.dumps(reports, indent=2), file=out)
    elif len(reports) > SUMMARY_OVER:
        print(render_summary(summary(reports, now)), file=out)
    else:
        for report in reports:
            print(render(report, now), file=out)
    troubled = (
        not r["exists"]
        or r["windows"]["failed"]
        or r["windows"]["quarantined"]
        or r["stalled"]
        or registry_troubled(r.get("registry"))
        for r in reports
    )
    return 1 if any(troubled) else 0


def render(report: dict, now: int) -> str:
    if not report["exists"]:
        return "\n".join(
            [
                f"source {report['source']}: no cursor yet (the planner has not run)",
                *registry_lines(report.get("registry"), now),
            ]
        )
    watermark = report["watermark_ms"]
    windows = report["windows"]
    lines = [
        f"source {report['source']}",
        f"  watermark   {_time(watermark)} (everything up to here is in Cloud Storage)",
        f"  lag         {(now - watermark) / 1000:,.0f} s behind now",
        f"  planned to  {_time(report['planned_until_ms'])}",
        "  windows     "
        + ", ".join(
            f"{state} {windows[state]}"
            for state in ("planned", "fetching", "fetched", "done", "failed", "quarantined")
        ),
        f"  records     {report['records']:,} fetched by the windows kept (30 days)",
        f"  re-reads    {report['rereads']} (windows read again because batches did not land)",
        f"  late checks {report['checks']} spans checked against Duo's count, "
        f"{report['repairs']} found records Duo published late and read the window again",
        f"  last error  {report['last_error'] or 'none'}",
        *progress_line(report),
    ]
    for window in report["quarantined"]:
        lines.append(
            f"  quarantined {window['window_id']} after {window['failures']} failures: "
            f"{window['error']}\n"
            f"              put it back: duo-telephony retry {report['source']} "
            f"{window['window_id']}"
        )
    for window in report["stalled"]:
        lines.append(
            f"  stalled     {window['window_id']} waited {window['bucket_waits']} planner runs "
            f"for the bucket: {window['error']}"
        )
    for first, last in report["retention_lost_ms"]:
        lines.append(
            f"  lost        {_time(first)} to {_time(last)}: left Duo's 180-day retention "
            "before it was fetched"
        )
    lines += registry_lines(report.get("registry"), now)
    return "\n".join(lines)


def registry_lines(entry: dict[str, Any] | None, now: int) -> list[str]:
    """The source's registry entry: where it comes from and lands, and, unless it is a
    configured source reading as it should, its state since when, Duo's answer and the fix."""
    if entry is None or (entry.get("origin") == ENV and entry.get("state") == ACTIVE):
        return []
    state, since = entry.get("state"), _time(entry.get("since_ms"))
    if entry.get("origin") == CHILD:
        origin = f"child account {entry.get('account_id')} ({entry.get('name')!r}) of "
        origin += f"{entry.get('parent')} at {entry.get('api_host')}"
    else:
        origin = f"configured in {SourceSpec.from_fields(entry).setting}"
    lines = [f"  account     {origin}"]
    destination = entry.get("destination") or {}
    if destination.get("bucket") or destination.get("prefix") is not None:
        bucket = destination.get("bucket") or "GCS_BUCKET"
        lines.append(f"  lands in    gs://{bucket}/{destination.get('prefix') or ''}")
    if state == GONE:
        lines.append(
            f"  gone since  {since}: no longer configured or listed; not planned, its cursor "
            "and windows kept"
        )
    elif state in TROUBLED:
        code = f" (Duo code {entry['code']})" if entry.get("code") else ""
        lines.append(f"  {state:<11} since {since}{code}: {entry.get('error')}")
        if entry.get("fix"):
            lines.append(f"  fix         {entry['fix']}")
        lines.append("              not planned; tried again after ACCOUNTS_REFRESH")
    else:
        lines.append(f"  state       {state} since {since}")
    if entry.get("conflict"):
        lines.append(f"  conflict    {entry['conflict']}")
    return lines


def fleet(env: Mapping[str, str]) -> bool:
    """Whether the deployment's sources come from the registry too: then they are all shown."""
    return bool(env.get(SOURCES_FILE) or env.get(MSP_PARENT))


def registry_troubled(entry: dict[str, Any] | None) -> bool:
    return bool(entry) and (entry.get("state") in TROUBLED or bool(entry.get("conflict")))


def read_parents(project: str, clock: Clock) -> dict[str, dict[str, Any]]:
    """Each MSP parent's last listing of its children, and under ``rate_limit: auto`` how Duo
    was found to count their reads (``rate_limit_scope``)."""
    db = firestore_client(project, firestore_database(os.environ))
    parents = SourceRegistry(db, clock).parents()
    for parent, doc in parents.items():
        decided = db.collection(LIMITS).document(scope_key(parent)).get()
        if decided.exists:
            doc["rate_limit_scope"] = decided.to_dict()
    return parents


def show_parents(parents: dict[str, dict[str, Any]], *, as_json: bool, out: TextIO) -> int:
    """Prints each MSP parent's last listing (not with --json, whose output is the sources'
    reports); 1 when a listing failed or listed a child that cannot be read."""
    for parent, doc in sorted(parents.items()):
        if as_json:
            continue
        print(
            f"msp parent {parent}: children listed {_time(doc.get('listed_at_ms'))}, "
            f"{doc.get('children', 0)} admitted",
            file=out,
        )
        if doc.get("error"):
            print(f"  error       {doc['error']}", file=out)
        for invalid in doc.get("invalid") or []:
            print(f"  not read    {invalid}", file=out)
        if doc.get("rate_limit_scope"):
            decision = decision_from(doc["rate_limit_scope"])
            since = f" since {_time(int(decision.since * 1000))}" if decision.since else ""
            print(f"  rate limit  counted per {decision.scope}{since}", file=out)
            print(f"  evidence    {decision.evidence}", file=out)
    return 1 if any(doc.get("error") or doc.get("invalid") for doc in parents.values()) else 0


def render_summary(totals: dict[str, Any]) -> str:
    """The summary as about 40 lines, whatever the number of sources."""
    states, health = totals["states"], totals["health"]
    lines = [
        f"fleet of {totals['sources']:,} sources "
        "(duo-telephony status --source ID shows one in full)",
        "  registry    " + ", ".join(f"{state} {n:,}" for state, n in states.items()),
        "  health      " + ", ".join(f"{name} {n:,}" for name, n in health.items()),
        "  worst lags",
    ]
    lines += [
        f"    {lag['source']:<24} {lag['lag_ms'] / 1000:>12,.0f} s behind, watermark "
        f"{_time(lag['watermark_ms'])}"
        for lag in totals["worst_lags"]
    ]
    lines.append(f"  refused or broken: {len(totals['troubled']):,}")
    lines += capped(
        [
            f"    {t['source']} {t['state']}"
            + (f" (Duo code {t['code']})" if t.get("code") else "")
            + (f": {t['error']}" if t.get("error") else "")
            + (f"; fix: {t['fix']}" if t.get("fix") else "")
            for t in totals["troubled"]
        ]
    )
    lines.append(f"  quarantined windows: {totals['quarantined_windows']:,}")
    lines += capped(
        [
            f"    duo-telephony retry {q['source']} {q['window_id']}  # {q['error']}"
            for q in totals["quarantined"]
        ],
        totals["quarantined_windows"],
    )
    backfills = totals["backfills"]
    if backfills["count"]:
        longest = backfills["longest_minutes_left"]
        lines.append(
            f"  backfills   {backfills['count']:,} in progress, "
            f"{backfills['records_left']:,} records left, longest "
            + (f"~{longest:,.0f} min left" if longest is not None else "time left not known yet")
        )
    else:
        lines.append("  backfills   none in progress")
    return "\n".join(lines)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
