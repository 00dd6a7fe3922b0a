"""How far the windows being read are, against Duo's count: records read of Duo's total, the
rate over a recent interval, and the time left. Pure: every time is passed in.

Each page Duo answers carries ``total_objects``, its count of the records in the window asked
for; the fetcher keeps the newest on the window document, with the records its current read
has read so far and a reference point the rate is measured from. ``status``, the planner's
log line and the demo show the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.duo.paging import DuoTotal
from shared.pipeline.windows import FAILED, FETCHING, PLANNED

# The rate is measured from a page read at most this long before the newest page (and one page
# more), so it follows the current pace rather than the whole read's average.
RATE_INTERVAL_MS = 300_000
BAR_WIDTH = 10
# A window in these states, with a page read, is being read (a fetched one has been read).
READING_STATES = (PLANNED, FETCHING, FAILED)
# The window document's fields ``measure`` reads.
FIELDS = (
    "state",
    "pages",
    "reread_from",
    "duo_total",
    "duo_total_exact",
    "read_records",
    "read_at_ms",
    "rate_from_ms",
    "rate_from_records",
)
# A window document's progress after a page, as the checkpoint writes it.
Update = dict[str, Any]


def after_page(doc: Mapping[str, Any], read: int, total: DuoTotal | None, now: int) -> Update:
    """The window's progress once a page of ``read`` records is checkpointed: the first page of
    a read (the window's, or a re-read's) starts the count again."""
    # Empty pages that took no number leave the read's first page behind them (its next token
    # moved on). A window whose read began before its documents kept progress starts it here.
    first = (
        doc["pages"] == doc.get("reread_from", 0) and doc["next_offset"] == doc.get("read_offset")
    ) or "rate_from_ms" not in doc
    records = read if first else doc["read_records"] + read
    update: Update = {"read_records": records, "read_at_ms": now}
    if first:
        # Measured from the claim that began the read (not from a renewal of its lease while
        # the page waited for its slot), so a rate shows after one page and falls while the
        # read stalls.
        claimed = doc.get("claimed_at_ms", doc["updated_at_ms"])
        update |= {"rate_from_ms": min(claimed, now), "rate_from_records": 0}
    elif now - doc["rate_from_ms"] >= RATE_INTERVAL_MS:
        # Measured from the page before this one from now on: the rate's interval stays
        # between one page and RATE_INTERVAL_MS and a page.
        update |= {"rate_from_ms": doc["read_at_ms"], "rate_from_records": doc["read_records"]}
    # Duo counts the whole window: a gap's read, from or up to a token, reads only part of it.
    gap = doc.get("read_offset") is not None or doc.get("read_until") is not None
    if total is not None and not gap:
        update |= {"duo_total": total.value, "duo_total_exact": total.exact}
    elif first:
        update |= {"duo_total": None, "duo_total_exact": False}
    return update


@dataclass(frozen=True)
class Progress:
    records: int  # read so far by the windows being read
    total: int  # Duo's count for them
    exact: bool  # False: some count is only a lower bound
    per_minute: float | None  # None: not measured yet (no time since the read began)

    @property
    def fraction(self) -> float:
        return min(self.records / self.total, 1.0) if self.total else 1.0

    @property
    def minutes_left(self) -> float | None:
        if not self.per_minute:
            return None
        return max(self.total - self.records, 0) / self.per_minute

    def fields(self) -> dict[str, Any]:
        """The figures as structured log fields (the planner's run line, ``status --json``)."""
        left = self.minutes_left
        return {
            "progress_records": self.records,
            "progress_total": self.total,
            "progress_total_exact": self.exact,
            "progress_percent": round(self.fraction * 100, 1),
            "progress_per_minute": None if self.per_minute is None else round(self.per_minute),
            "progress_minutes_left": None if left is None else round(left, 1),
        }


def measure(docs: Iterable[Mapping[str, Any]], now: int) -> Progress | None:
    """The progress of the windows being read (a page read, Duo's count known) among
    ``docs``; None when no window is being read."""
    reading = [
        doc
        for doc in docs
        if doc["state"] in READING_STATES
        and doc.get("duo_total") is not None
        and doc["pages"] > doc.get("reread_from", 0)
    ]
    if not reading:
        return None
    rates = [
        (doc["read_records"] - doc["rate_from_records"]) * 60_000 / (now - doc["rate_from_ms"])
        for doc in reading
        if now > doc["rate_from_ms"]
    ]
    return Progress(
        records=sum(doc["read_records"] for doc in reading),
        total=sum(doc["duo_total"] for doc in reading),
        exact=all(doc.get("duo_total_exact", True) for doc in reading),
        per_minute=sum(rates) if rates else None,
    )


def describe(progress: Progress, label: str = "backfill") -> str:
    """``backfill [#####.....] 12,000 / 20,000 records (60 %), 1,000/min, ~8 min left``."""
    filled = int(progress.fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    total = f"{progress.total:,}" if progress.exact else f">= {progress.total:,}"
    line = (
        f"{label} [{bar}] {progress.records:,} / {total} records ({progress.fraction * 100:.0f} %)"
    )
    left = progress.minutes_left
    if progress.per_minute is None:
        return line + ", rate not measured yet"
    if left is None:
        return line + ", 0/min: stalled"
    return line + f", {progress.per_minute:,.0f}/min, {_duration(left)} left"


def _duration(minutes: float) -> str:
    whole = round(minutes)
    if whole < 1:
        return "under a minute"
    if whole < 60:
        return f"~{whole} min"
    hours, rest = divmod(whole, 60)
    if hours < 48:
        return f"~{hours} h {rest} min"
    days, hours = divmod(hours, 24)
    return f"~{days} d {hours} h"
