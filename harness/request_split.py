"""Duo requests of a local run split by what they served: the backfill, live windows, checks.

Read from the fetcher's log (one JSON line per window task and per span check, each with its
``requests``), so the split needs nothing from the simulator and works against a real Duo too.
A window belongs to the backfill when it starts before ``backlog_end_ms``, the end of what Duo
held when the run began; a check, when its span does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

BACKFILL, LIVE, BACKFILL_CHECKS, LIVE_CHECKS = "backfill", "live", "backfill checks", "live checks"


def requests_by_kind(fetcher_log: Iterable[str], backlog_end_ms: int) -> Counter[str]:
    """Duo requests (429s included) per kind, added up from the fetcher's log lines."""
    counts: Counter[str] = Counter()
    for line in fetcher_log:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # gunicorn's and the harness's own lines
        requests = int(entry.get("requests") or 0)
        if not requests:
            continue
        if "level" in entry and "windows" in entry:
            backfill = int(entry["mintime"]) < backlog_end_ms
            counts[BACKFILL_CHECKS if backfill else LIVE_CHECKS] += requests
        elif "window_id" in entry:
            mintime = int(str(entry["window_id"]).split("-", 1)[0])
            counts[BACKFILL if mintime < backlog_end_ms else LIVE] += requests
    return counts
