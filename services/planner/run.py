"""Planning sources (one plan task's slice): for each, plan, resend what stalled, move the
watermark."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services import structured_log
from services.settings import PlannerSettings
from shared.clock import Clock, now_ms
from shared.gcp.cursor_store import CursorStore
from shared.gcp.publisher import Publisher
from shared.gcp.unmarked_batches import UnmarkedBatches
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import SpanCheck
from shared.pipeline.repair import spans_due
from shared.pipeline.schemas import MAX_CHECK_WINDOWS
from shared.pipeline.windows import QUARANTINED

log = logging.getLogger(__name__)

# Finished windows read per run when looking for late-record checks that are due.
CHECK_SCAN = 1000
# Sources of a slice planned at once: each waits on Firestore and Pub/Sub round trips, so a
# few threads keep a slice short while one slow source holds up only its own thread.
PLAN_THREADS = 4


def run_planner(
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: UnmarkedBatches | None = None,
    sources: Callable[[], list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Plans each source, ``PLAN_THREADS`` at a time: those ``sources`` returns (a plan task's
    slice), or the configured ones. Results are in the sources' order."""

    def plan(source: str) -> dict[str, Any]:
        try:
            return _run_source(source, settings, cursors, windows, publisher, clock, unmarked)
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
    unmarked: UnmarkedBatches | None,
) -> dict[str, Any]:
    planned = cursors.plan(
        source,
        int(settings.lookback_seconds * 1000),
        settings.parallelism,
        delay_ms=int(settings.delay_seconds * 1000),
        quiet_every_ms=settings.quiet_read_every_ms,
    )
    publisher.publish_tasks(planned)
    find = unmarked.find if unmarked else None
    swept = windows.sweep(source, settings.repair_checks_ms, settings.landing_timeout_ms, find)
    publisher.publish_tasks(swept.republish)
    checks = spans_due(
        windows.due_checks(source, limit=CHECK_SCAN),
        now_ms(clock),
        batch_ms=settings.repair_batch_ms,
        max_windows=MAX_CHECK_WINDOWS,
    )
    for span in checks:
        publisher.publish_check(SpanCheck(source, span.level, span.window_ids))
        windows.checks_sent(source, span)
    watermark = cursors.advance(source)
    result = {
        "source": source,
        "planned": len(planned),
        "republished": len(swept.republish),
        "completed": swept.completed,
        "rereads": swept.rereads,
        # Fetched windows left for the next run because the bucket could not be searched.
        "bucket_waits": swept.bucket_waits,
        "checks_sent": len(checks),
        "watermark_ms": watermark,
        "lag_seconds": round((now_ms(clock) - watermark) / 1000, 1) if watermark else None,
        # Read every run so a log-based metric can alert while a window waits for an operator.
        "quarantined": windows.count(source, QUARANTINED),
        # The backfill's records read against Duo's count, its rate and the time left.
        **(swept.reading.fields() if swept.reading else {}),
    }
    structured_log.event(log, logging.INFO, f"planned source {source}", **result)
    return result
