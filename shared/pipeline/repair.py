"""Late-record repair: finished windows are counted again by Duo once they have settled.

Duo may publish a record after the two minutes it promises (its ingestion lags, its clock is a
second behind): the record then falls in a window already read. So each finished window is
checked again at each configured age (by default 15 minutes and a day after its end): Duo's
exact count for a span of contiguous finished windows is compared with what the pipeline landed
for them. Equal: nothing was missed. Different, or not an exact count: the windows are read
again, landing only the records not already in the bucket.

Checks cost one Duo request per span. A span waits until it covers ``batch_ms`` of time (or
its oldest window has waited that long), so in steady state the checks take about one request
per ``batch_ms`` per check age: 2 requests an hour by default, a few percent of the smallest
budget Duo has been seen to give (2 requests a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# When a finished window is checked again, after its end.
DEFAULT_CHECKS_MS = (15 * 60_000, 24 * 3_600_000)
# A span of due windows is checked once it covers this much time or has waited this long.
CHECK_BATCH_MS = 30 * 60_000
# A span sent for checking is sent again after this if its check never came back.
CHECK_RESEND_MS = 10 * 60_000

Update = dict[str, Any]


def first_check(maxtime: int, checks: tuple[int, ...]) -> Update:
    """The check fields of a window that has just finished."""
    if not checks:
        return {}
    return {"check_level": 0, "next_check_at_ms": maxtime + checks[0]}


def after_check(doc: Update, level: int, checks: tuple[int, ...]) -> Update:
    """A window's check fields once its span was checked at ``level``: on to the next check
    (a window Duo counted otherwise is also read again: ``windows.checked``)."""
    following = level + 1
    return {
        "check_level": following,
        "checks": doc.get("checks", 0) + 1,
        "next_check_at_ms": doc["maxtime"] + checks[following] if following < len(checks) else None,
    }


@dataclass(frozen=True)
class Span:
    """Contiguous finished windows due for the same check."""

    level: int
    window_ids: tuple[str, ...]
    mintime: int
    maxtime: int


def spans_due(
    due: list[tuple[str, Update]],
    now: int,
    *,
    batch_ms: int = CHECK_BATCH_MS,
    max_windows: int,
) -> list[Span]:
    """The spans to check now among finished windows whose check is due, ``(window id, doc)``:
    each run of contiguous windows of one level, cut at ``max_windows``, once it covers
    ``batch_ms`` or its first window has waited that long."""
    runs: list[list[tuple[str, Update]]] = []
    for window_id, doc in sorted(due, key=lambda item: item[1]["mintime"]):
        run = runs[-1] if runs else None
        if (
            run is not None
            and run[-1][1]["maxtime"] == doc["mintime"]
            and run[-1][1]["check_level"] == doc["check_level"]
            and len(run) < max_windows
        ):
            run.append((window_id, doc))
        else:
            runs.append([(window_id, doc)])
    spans = []
    for run in runs:
        first, last = run[0][1], run[-1][1]
        covers = last["maxtime"] - first["mintime"] >= batch_ms
        waited = now - min(doc["next_check_at_ms"] for _, doc in run) >= batch_ms
        if covers or waited or len(run) == max_windows:
            spans.append(
                Span(
                    first["check_level"],
                    tuple(window_id for window_id, _ in run),
                    first["mintime"],
                    last["maxtime"],
                )
            )
    return spans
