"""``duo-telephony status`` for a fleet: many sources' reports summarised on one screen.

Pure: the summary is plain data computed from the reports ``services.status`` reads and the
time now; ``services.status`` prints it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.pipeline.progress import Progress
from shared.pipeline.sources import ACTIVE, TROUBLED, state_counts

# More sources than this and `status` prints the summary; `--source ID` shows one in full.
SUMMARY_OVER = 5
# Each list of the summary names at most this many, then "and K more".
LISTED = 5
# A source whose watermark is further behind than this counts as behind.
BEHIND_MS = 3_600_000
HEALTH = ("behind", "no cursor", "failed", "quarantined", "stalled")


def summary(reports: list[dict[str, Any]], now: int) -> dict[str, Any]:
    """Counts by registry state and by health, the worst lags, the refused or broken accounts,
    the quarantined windows and the backfills in progress."""
    health: Counter[str] = Counter()
    lags = []
    quarantined = []
    backfills = []
    for report in reports:
        if not report["exists"]:
            health["no cursor"] += 1
        else:
            lag = now - report["watermark_ms"]
            lags.append((lag, report["source"], report["watermark_ms"]))
            health["behind"] += lag > BEHIND_MS
        health["failed"] += bool(report["windows"]["failed"])
        health["quarantined"] += bool(report["windows"]["quarantined"])
        health["stalled"] += bool(report["stalled"])
        quarantined += [(report["source"], w) for w in report["quarantined"]]
        if report.get("progress"):
            backfills.append(Progress(**report["progress"]))
    troubled = [
        (r["source"], r["registry"])
        for r in reports
        if (r.get("registry") or {}).get("state") in TROUBLED
    ]
    lefts = [p.minutes_left for p in backfills if p.minutes_left is not None]
    return {
        "sources": len(reports),
        "states": state_counts((r.get("registry") or {}).get("state", ACTIVE) for r in reports),
        "health": {name: health[name] for name in HEALTH},
        "worst_lags": [
            {"source": source, "lag_ms": lag, "watermark_ms": watermark}
            for lag, source, watermark in sorted(lags, key=lambda x: (-x[0], x[1]))[:LISTED]
        ],
        "troubled": [
            {
                "source": source,
                "state": entry["state"],
                "code": entry.get("code"),
                "error": entry.get("error"),
                "fix": entry.get("fix"),
            }
            for source, entry in sorted(troubled, key=lambda t: t[0])
        ],
        # A source's report names at most STATUS_LIST of its windows; its count is exact.
        "quarantined_windows": sum(r["windows"]["quarantined"] for r in reports),
        "quarantined": [
            {"source": source, "window_id": w["window_id"], "error": w["error"]}
            for source, w in sorted(quarantined, key=lambda q: (q[0], q[1]["window_id"]))
        ],
        "backfills": {
            "count": len(backfills),
            "records_left": sum(max(p.total - p.records, 0) for p in backfills),
            "longest_minutes_left": max(lefts) if lefts else None,
        },
    }


def capped(lines: list[str], total: int | None = None) -> list[str]:
    """The first LISTED lines, then how many more of ``total`` (default: the lines) there are."""
    total = len(lines) if total is None else total
    if total <= LISTED:
        return lines[:LISTED]
    return [*lines[:LISTED], f"    and {total - LISTED:,} more"]
