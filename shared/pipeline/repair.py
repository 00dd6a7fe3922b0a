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

from shared.duo.telephony import PAGE_LIMIT
from shared.pipeline.windows import DONE, QUARANTINED, Update

# When a finished window is checked again, after its end.
DEFAULT_CHECKS_MS = (15 * 60_000, 24 * 3_600_000)
# A span of due windows is checked once it covers this much time or has waited this long.
CHECK_BATCH_MS = 30 * 60_000
# A span sent for checking is sent again after this if its check never came back.
CHECK_RESEND_MS = 10 * 60_000

# The cursor's field: for each check age (by its place in REPAIR_CHECKS), ``until_ms``, the
# end of what that check has covered, and ``again_at_ms``, when the span sent from there is
# sent again if its check never came back. Checks go through a source's time in order, so
# that is all the state they need: no window document is written to send a check or to
# clear one, only the few a check finds Duo counted otherwise for, to read them again.
CHECK_LEVELS = "check_levels"


@dataclass(frozen=True)
class Span:
    """Finished windows of a source due for the same check: those from ``mintime`` (the
    level's ``until_ms`` when it was sent) to ``maxtime``."""

    level: int
    mintime: int
    maxtime: int


def start_levels(start_ms: int, checks: tuple[int, ...]) -> list[Update]:
    """A new source's check levels: nothing before where its planning starts."""
    return [{"until_ms": start_ms} for _ in checks]


def levels_of(cursor: Update, checks: tuple[int, ...]) -> list[Update]:
    """The cursor's check levels, one per age of ``checks``. A level the cursor does not keep
    (one kept from before the levels were, or an age added since) starts a batch and a resend
    before the windows its age makes due: those before had their check sent by the windows'
    own check times, then kept on each window."""
    kept = [dict(level) for level in (cursor.get(CHECK_LEVELS) or [])[: len(checks)]]
    watermark = cursor["watermark_ms"]
    return kept + [
        {"until_ms": watermark - age - CHECK_BATCH_MS - CHECK_RESEND_MS}
        for age in checks[len(kept) :]
    ]


@dataclass(frozen=True)
class Checks:
    """The late-record checks a planner run sends: their ``ages`` (REPAIR_CHECKS), their
    batch, and how many spans at most (a child sharing its parent's budget sends them in its
    turns: ``rate_share``; None: every span due)."""

    ages: tuple[int, ...] = ()
    batch_ms: int = CHECK_BATCH_MS
    limit: int | None = None


NO_CHECKS = Checks()


def spans_due(cursor: Update, now: int, checks: Checks) -> tuple[list[Span], Update]:
    """The spans to send now and the cursor's update for them ({} when none). A level's span
    runs from its ``until_ms`` to what its age has made due behind the watermark, and goes
    once its first window has waited the batch past its check (so it covers about a batch),
    unless the one sent before is still within its resend."""
    spans: list[Span] = []
    levels = levels_of(cursor, checks.ages)
    for level, (state, age) in enumerate(zip(levels, checks.ages, strict=True)):
        if checks.limit is not None and len(spans) >= checks.limit:
            break
        start, end = state["until_ms"], min(cursor["watermark_ms"], now - age)
        waited = now - age - start >= checks.batch_ms
        if end > start and waited and state.get("again_at_ms", 0) <= now:
            spans.append(Span(level, start, end))
            state["again_at_ms"] = now + CHECK_RESEND_MS
    return spans, {CHECK_LEVELS: levels} if spans else {}


def checked(cursor: Update, span: Span, until: int) -> Update | None:
    """The cursor's update once the check of ``span`` has got to ``until``: its level moved on
    there, its resend cleared (what is left of the span is due at once), one more span
    counted. None when the level is no longer at the span's start: another delivery of the
    check moved it on."""
    levels = _at_start(cursor, span)
    if levels is None:
        return None
    levels[span.level] = {"until_ms": until, "spans": levels[span.level].get("spans", 0) + 1}
    return {CHECK_LEVELS: levels}


def held(cursor: Update, span: Span, again_at: int) -> Update | None:
    """The cursor's update when the check of ``span`` found its first window longer than the
    span: the level is sent again once that window is due (``again_at``), not at each
    resend before. None when the level is no longer at the span's start."""
    levels = _at_start(cursor, span)
    if levels is None:
        return None
    levels[span.level]["again_at_ms"] = again_at
    return {CHECK_LEVELS: levels}


def _at_start(cursor: Update, span: Span) -> list[Update] | None:
    """The cursor's levels, if the span's level is still at the span's start."""
    levels = [dict(level) for level in cursor.get(CHECK_LEVELS) or []]
    if span.level >= len(levels) or levels[span.level]["until_ms"] != span.mintime:
        return None
    return levels


def checked_spans(cursor: Update) -> int:
    """How many spans the cursor's levels have checked (``checked``)."""
    return sum(level.get("spans", 0) for level in cursor.get(CHECK_LEVELS) or [])


@dataclass(frozen=True)
class CheckRun:
    """What one check of a span covers: ``windows`` (ids and documents, contiguous and done)
    to count against Duo, and ``until``, where the level's check has got to once they are
    (past quarantined windows before them too, which an operator's retry reads whole); None
    when it cannot move: the span's first window is being read (again), and the check is
    sent again later."""

    windows: list[tuple[str, Update]]
    until: int | None
    # The end of the span's first window when it is longer than the span: not checkable
    # before its own check (its end + the level's age).
    longer_until: int | None = None


def check_run(found: Sequence[tuple[str, Update]], span: Span, max_windows: int) -> CheckRun:
    """The windows a check of ``span`` counts, from ``found`` (the windows starting in it, by
    mintime): the first run of contiguous done ones, at most ``max_windows``, ending inside
    the span. A span in which no window starts is checked at once: its time fell out of Duo's
    retention before it was read, and the windows after it are the next span's."""
    if not found:
        return CheckRun([], span.maxtime)
    run: list[tuple[str, Update]] = []
    until = span.mintime
    for window_id, doc in found:
        if doc["maxtime"] > span.maxtime and until == span.mintime:
            return CheckRun([], None, doc["maxtime"])
        if doc["maxtime"] > span.maxtime or len(run) == max_windows:
            break
        if run and doc["mintime"] != run[-1][1]["maxtime"]:
            break  # a gap: counts are differences of edges over contiguous windows
        if doc["state"] == DONE:
            run.append((window_id, doc))
        elif run or doc["state"] != QUARANTINED:
            break
        until = doc["maxtime"]
    return CheckRun(run, until if until != span.mintime else None)


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
