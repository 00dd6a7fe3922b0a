"""One planner run (one Cloud Scheduler call): plan, resend what stalled, move the watermark."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
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


def run_planner(
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: UnmarkedBatches | None = None,
    sources: Callable[[], list[str]] | None = None,
    waits: Callable[[list[str]], Mapping[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Plans each source: those ``sources`` returns (the registry's active ones), or the
    configured ones; ``waits`` gives the span each child sharing its parent's budget waits
    for, once a run."""
    results = []
    planned = sources() if sources else list(settings.sources)
    shared = waits(planned) if waits else {}
    for source in planned:
        try:
            results.append(
                _run_source(
                    source,
                    settings,
                    cursors,
                    windows,
                    publisher,
                    clock,
                    unmarked,
                    shared_wait_ms=shared.get(source, 0),
                )
            )
        except Exception as error:
            # One account's trouble (say, its windows cannot be published) must not stop the
            # others; the run still answers 500 so Cloud Scheduler shows the failure.
            log.exception("planning source %s failed", source)
            results.append({"source": source, "error": f"{type(error).__name__}: {error}"})
    return results


def _run_source(
    source: str,
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: UnmarkedBatches | None,
    shared_wait_ms: int = 0,
) -> dict[str, Any]:
    planned = cursors.plan(
        source,
        int(settings.lookback_seconds * 1000),
        settings.parallelism,
        delay_ms=int(settings.delay_seconds * 1000),
        quiet_every_ms=settings.quiet_read_every_ms,
        shared_wait_ms=shared_wait_ms,
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
