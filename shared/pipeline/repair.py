"""Late-record repair: finished windows are counted again by Duo once they have settled.

Duo may publish a record after the two minutes it promises (its ingestion lags, its clock is a
second behind): the record then falls in a window already read. So each finished window is
checked again at each configured age (by default 15 minutes and a day after its end): Duo's
exact count for a span of contiguous finished windows is compared with what the pipeline landed
for them. Equal: nothing was missed. Different: the span is halved with more counts until the
windows that differ are found (``bisect_step``), and only those are read again, landing only
the records not already in the bucket; a part Duo gives no exact count for is read again whole.

Duo's ``maxtime`` is inclusive and may be compared with the records' microseconds or not, so a
count that ends inside the span cannot be trusted for its last millisecond. Every count ends at
the same point past the span (its end + 1 ms): the count of a part is the difference of the
counts from its two edges, exact whichever way Duo compares.

Checks cost two Duo requests per span, and one more per halving while a window differs (about
log2 of the span's windows per late record). A span waits until it covers ``batch_ms`` of time
(or its oldest window has waited that long), so in steady state the checks take about two
requests per ``batch_ms`` per check age: 4 requests an hour by default, a few percent of the
smallest budget Duo has been seen to give (2 requests a minute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.duo.telephony import PAGE_LIMIT

# When a finished window is checked again, after its end.
DEFAULT_CHECKS_MS = (15 * 60_000, 24 * 3_600_000)
# A span of due windows is checked once it covers this much time or has waited this long.
CHECK_BATCH_MS = 30 * 60_000
# A span sent for checking is sent again after this if its check never came back.
CHECK_RESEND_MS = 10 * 60_000

Update = dict[str, Any]


# A window's next check time less its length (at most CHECK_BATCH_MS): no span that starts
# with it can be sent before this + the batch (``spans_due``), so the planner reads the due
# windows only once one window's is that old (``sendable_from``), not every run while they
# wait for their batch.
CHECK_FROM = "check_from_ms"


def _next_check(mintime: int, maxtime: int, next_at: int | None) -> Update:
    """The fields of a window's next check at ``next_at`` (None: no check to come)."""
    return {
        "next_check_at_ms": next_at,
        CHECK_FROM: None if next_at is None else next_at - min(maxtime - mintime, CHECK_BATCH_MS),
    }


def first_check(mintime: int, maxtime: int, checks: tuple[int, ...]) -> Update:
    """The check fields of a window that has just finished."""
    if not checks:
        return {}
    return {"check_level": 0} | _next_check(mintime, maxtime, maxtime + checks[0])


def after_check(doc: Update, level: int, checks: tuple[int, ...]) -> Update:
    """A window's check fields once its span was checked at ``level``: on to the next check
    (a window Duo counted otherwise is also read again: ``windows.checked``)."""
    following = level + 1
    next_at = doc["maxtime"] + checks[following] if following < len(checks) else None
    return {
        "check_level": following,
        "checks": doc.get("checks", 0) + 1,
    } | _next_check(doc["mintime"], doc["maxtime"], next_at)


def sent_again_at(again: int, span_mintime: int, span_maxtime: int) -> Update:
    """The check fields of a sent span's windows, held back until ``again``: each window's
    CHECK_FROM taken with the span's length, which is at least its own (read sooner, never
    later)."""
    return _next_check(span_mintime, span_maxtime, again)


def sendable_from(now: int, batch_ms: int) -> int:
    """No span is sendable at ``now`` unless a due window's CHECK_FROM is at most this: a span
    is sent once it covers ``batch_ms`` (its last window due, so its first window's next check
    less its length + the batch is past) or its first window has waited that long (later
    still), or holds ``max_windows`` windows (which, a minute long at least, cover any batch up
    to 6 h). Both sides take the length and the batch at most CHECK_BATCH_MS: a window longer
    is sendable once due, and at the default batch only a due window is found."""
    return now - min(batch_ms, CHECK_BATCH_MS)


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


UNKNOWN = -1  # an edge not counted yet


@dataclass(frozen=True)
class BisectStep:
    """A check's next move: the edge whose count it needs (None: it is done), and the windows
    to read again: the verdict once done, else what a check stopped now reads again (every
    window not yet cleared by the counts)."""

    ask: int | None
    reread: tuple[int, ...]


def bisect_step(landed: Sequence[int], counts: Mapping[int, int | None]) -> BisectStep:
    """Where a span's difference lies. ``landed[i]``: records landed for window i of the span;
    ``counts[j]``: Duo's count from edge j (window j's start; edge ``len(landed)``, the span's
    end) to the common end past the span, None when Duo gave no exact count. A part differs
    when its edges' counts differ by other than what landed for it; a differing part is halved
    while counts can spare re-reads (``_worth_halving``), else read again."""
    ask: int | None = None
    reread: list[int] = []
    parts = [(0, len(landed))]
    while parts:
        lo, hi = parts.pop()
        # The end first: a record published between two counts then only adds to the difference.
        end, start = counts.get(hi, UNKNOWN), counts.get(lo, UNKNOWN)
        if end is None or start is None or UNKNOWN in (end, start):
            if ask is None and end is not None and start is not None:
                ask = hi if end == UNKNOWN else lo
            reread.extend(range(lo, hi))
            continue
        difference = start - end - sum(landed[lo:hi])
        if difference == 0:
            continue
        if _worth_halving(landed[lo:hi], difference):
            middle = (lo + hi) // 2
            parts += [(middle, hi), (lo, middle)]  # the left half is taken up first
        else:
            reread.extend(range(lo, hi))
    return BisectStep(ask, tuple(sorted(reread)))


def _worth_halving(landed: Sequence[int], difference: int) -> bool:
    """Whether counting a part's middle can spare re-reads: it holds more than one window, and
    fewer records are missing than it has windows (so some window misses none), or a window
    takes more than one request to read again."""
    if len(landed) < 2:
        return False
    return difference < len(landed) or any(records >= PAGE_LIMIT for records in landed)
