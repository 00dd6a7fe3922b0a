"""Planning sources (one plan task's slice): for each, resend what stalled, send the due
late-record checks, then move the watermark and plan the next windows."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services import structured_log
from services.planner.budget import timed
from services.settings import PlannerSettings
from shared.clock import Clock, now_ms
from shared.gcp.cursor_store import CursorStore, Step, quiet_since
from shared.gcp.publisher import Publisher
from shared.gcp.unmarked_batches import BatchFinder
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import SpanCheck
from shared.pipeline.planning import quiet_wait_ms
from shared.pipeline.rate_share import SharedRead
from shared.pipeline.repair import Checks
from shared.pipeline.wake import idle, sleeps_once_planned, wake_at

log = logging.getLogger(__name__)

# Sources of a slice planned at once: each waits on Firestore and Pub/Sub round trips, so a
# few threads keep a slice short while one slow source holds up only its own thread.
PLAN_THREADS = 4


def run_planner(
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: BatchFinder | None = None,
    sources: Callable[[], list[str]] | None = None,
    record_wake: Callable[[str, int], None] | None = None,
    waits: Mapping[str, SharedRead] | None = None,
) -> list[dict[str, Any]]:
    """Plans each source, ``PLAN_THREADS`` at a time: those ``sources`` returns (a plan task's
    slice), or the configured ones. Results are in the sources' order. ``record_wake(source,
    wake_at_ms)`` records when a source left with nothing to do is due again
    (``shared.pipeline.wake``); ``waits``: the span each child sharing its parent's budget
    waits for and when its read starts (services/planner/budget), by source."""
    shared = waits or {}

    def plan(source: str) -> dict[str, Any]:
        try:
            return _run_source(
                source,
                settings,
                cursors,
                windows,
                publisher,
                clock,
                unmarked,
                record_wake,
                shared.get(source),
            )
        except Exception as error:
            # One account's trouble (say, its windows cannot be published) must not stop the
            # others; it is logged as an error and the next minute's run plans it again.
            log.exception("planning source %s failed", source)
            return {"source": source, "error": f"{type(error).__name__}: {error}"}

    with ThreadPoolExecutor(PLAN_THREADS, thread_name_prefix="plan") as pool:
        # Each in a copy of the request's context, so its log lines keep the request's trace.
        futures = [
            pool.submit(contextvars.copy_context().run, plan, source)
            for source in (sources() if sources else settings.sources)
        ]
        return [future.result() for future in futures]


def _run_source(
    source: str,
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: BatchFinder | None,
    record_wake: Callable[[str, int], None] | None = None,
    shared: SharedRead | None = None,
) -> dict[str, Any]:
    find = unmarked.find if unmarked else None
    swept = windows.sweep(source, settings.repair_checks_ms, settings.landing_timeout_ms, find)
    publisher.publish_tasks(swept.republish)
    # Last, so the watermark passes the windows the sweep just finished, in the same write as
    # the next windows are planned and the due checks sent in (the cursor read and written
    # once a run).
    step = cursors.step(
        source,
        int(settings.lookback_seconds * 1000),
        settings.parallelism,
        delay_ms=int(settings.delay_seconds * 1000),
        quiet_every_ms=settings.quiet_read_every_ms,
        shared_wait_ms=shared.wait_ms if shared else 0,
        checks=Checks(
            settings.repair_checks_ms,
            settings.repair_batch_ms,
            shared.checks if shared else None,  # a shared child's in its turns (rate_share)
        ),
    )
    # Recorded before the windows are sent: a fetcher finding records in one sets the source
    # back to every run after this, never before it (``wake.wakes_on_records``).
    wake = _wake_at(step, swept.open_windows, settings, clock, shared)
    if record_wake and wake is not None:
        record_wake(source, wake)
    publisher.publish_tasks(timed(step.tasks, shared, now_ms(clock)))
    for span in step.checks:
        publisher.publish_check(SpanCheck(source, span.level, span.mintime, span.maxtime))
    watermark = step.cursor["watermark_ms"]
    result = {
        "source": source,
        "planned": len(step.tasks),
        "republished": len(swept.republish),
        "completed": swept.completed,
        "rereads": swept.rereads,
        # Fetched windows left for the next run because the bucket could not be searched.
        "bucket_waits": swept.bucket_waits,
        "checks_sent": len(step.checks),
        "watermark_ms": watermark,
        "lag_seconds": round((now_ms(clock) - watermark) / 1000, 1) if watermark else None,
        # Logged every run so a log-based metric can alert while a window waits for an operator.
        "quarantined": swept.quarantined,
        # The backfill's records read against Duo's count, its rate and the time left.
        **(swept.reading.fields() if swept.reading else {}),
    }
    if record_wake and wake is not None:
        result["wake_at_ms"] = wake
    structured_log.event(log, logging.INFO, f"planned source {source}", **result)
    return result


def _wake_at(
    step: Step,
    open_windows: int,
    settings: PlannerSettings,
    clock: Clock,
    shared: SharedRead | None,
) -> int | None:
    """``wake.wake_at`` for a source this run left idle, or asleep with the windows it planned
    taken as passed (``wake.sleeps_once_planned``), from its cursor as the run left it; None:
    due the next run."""
    cursor, now = step.cursor, now_ms(clock)
    watermark, until = cursor["watermark_ms"], cursor["planned_until_ms"]
    quiet_every = settings.quiet_read_every_ms
    if step.tasks:
        quiet = quiet_wait_ms(quiet_since(cursor), watermark, now, quiet_every) > 0
        windows = [(task.mintime, task.maxtime) for task in step.tasks]
        if not sleeps_once_planned(windows, watermark, open_windows, quiet):
            return None
        watermark = until
    elif not idle(0, open_windows):
        return None
    delay = int(settings.delay_seconds * 1000)
    return wake_at(watermark, until, quiet_since(cursor), now, delay, quiet_every, shared)
