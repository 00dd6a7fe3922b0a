"""One planner run (one Cloud Scheduler call): plan, resend what stalled, move the watermark."""

from __future__ import annotations

import logging
from typing import Any

from shared import structured_log
from shared.clock import Clock, now_ms
from shared.cursor_store import CursorStore
from shared.publishing import Publisher
from shared.settings import PlannerSettings

log = logging.getLogger(__name__)


def run_planner(
    settings: PlannerSettings, cursors: CursorStore, publisher: Publisher, clock: Clock
) -> list[dict[str, Any]]:
    results = []
    lease_ms = int(settings.lease_seconds * 1000)
    for source in settings.sources:
        planned = cursors.plan(source, int(settings.lookback_seconds * 1000), settings.parallelism)
        publisher.publish_tasks(planned)
        swept = cursors.sweep(source, lease_ms)
        publisher.publish_tasks(swept.republish)
        watermark = cursors.advance(source)
        result = {
            "source": source,
            "planned": len(planned),
            "republished": len(swept.republish),
            "completed": swept.completed,
            "refetch": swept.refetch,
            "watermark_ms": watermark,
            "lag_seconds": round((now_ms(clock) - watermark) / 1000, 1) if watermark else None,
        }
        structured_log.event(log, logging.INFO, f"planned source {source}", **result)
        results.append(result)
    return results
