"""Which windows to fetch next: pure arithmetic, so it is tested without a database.

Every window costs one request more than its full pages (its partial or empty last page), and
Duo's rate limit, not the reader, bounds a catch-up: one sequential reader waits for the
limiter at the limits Duo gives (against the simulator it kept up with 120 requests a minute).
So a backlog is one window by default (``DEFAULT_PARALLELISM``), read in ceil(N / 1000)
requests, or one more; ``parallelism`` cuts it into more, each at least ``min_split_ms`` long
and each costing up to one request more, for a limit one reader cannot reach. Once the backlog
is planned, each planner run (every minute) plans the minute just published as one live
window: one request a minute. Windows end on a whole minute, so however often the planner
runs, a live window is a minute long at least: a shorter one would buy no freshness (Duo
publishes two minutes late) and cost a request.

Windows are half-open, ``[mintime, maxtime)`` in milliseconds, and the next one starts at the
previous one's ``maxtime``: Duo is asked for both ends inclusive, and a record is kept by the
window whose span holds the millisecond of its ``ts``. Duo's ``ts`` has microseconds; whether
it compares them with the millisecond bounds or not, a record at ``maxtime`` ms + 500 µs is
returned by the next window and kept there, never lost between two windows.
"""

from __future__ import annotations

from typing import Any

from shared.duo.telephony import AVAILABILITY_DELAY_MS, RETENTION_MS

DEFAULT_PARALLELISM = 1
MIN_SPLIT_MS = 3_600_000
MIN_WINDOW_MS = 1_000
# Windows end on a multiple of this: the length of a live window.
LIVE_WINDOW_MS = 60_000
# A source none of whose windows held a record in this long is quiet: it is read less often.
QUIET_AFTER_MS = 3_600_000
# How often a quiet source is read (QUIET_READ_EVERY): a record after a quiet hour then lands
# within about 8 minutes (this, Duo's two minutes, a planner period, the fetch and the write).
DEFAULT_QUIET_READ_EVERY_MS = 300_000
# A window starting this recently is live: a planner run's minute, or the few minutes after a
# short outage; a backfill window starts hours or days back.
LIVE_MS = 15 * 60_000
# Planning stays a little inside Duo's limits so a window is still valid when fetched later.
RETENTION_MARGIN_MS = 3_600_000
# A fetch starting now stays this far inside the retention edge, for the pages that follow.
FETCH_RETENTION_MARGIN_MS = 600_000


def _oldest_planned(now_ms: int) -> int:
    """The oldest millisecond planning still takes: inside Duo's retention, with a margin."""
    return now_ms - RETENTION_MS + RETENTION_MARGIN_MS


def first_planned_until(now_ms: int, lookback_ms: int) -> int:
    """The cursor of a new source: everything before here counts as done."""
    oldest = _oldest_planned(now_ms)
    return max(now_ms - lookback_ms, oldest)


def plan_windows(
    planned_until: int,
    now_ms: int,
    parallelism: int,
    min_split_ms: int = MIN_SPLIT_MS,
    delay_ms: int = AVAILABILITY_DELAY_MS,
    wait_ms: int = 0,
) -> list[tuple[int, int]]:
    """Half-open windows ``[mintime, maxtime)`` (ms) covering [planned_until, now - delay),
    up to its last whole minute (``LIVE_WINDOW_MS``), once that is ``wait_ms`` long at least
    (``quiet_wait_ms``); the delay is Duo's two minutes at least, more where its logs are seen
    to arrive late."""
    start = planned_until
    end = _published_until(now_ms, delay_ms)
    span = end - start
    if span < _least_span(wait_ms):
        return []
    count = max(1, min(parallelism, span // min_split_ms))
    bounds = [start + span * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


def _delay(delay_ms: int) -> int:
    """How far behind now Duo's logs are taken to be complete: Duo's two minutes at least."""
    return max(delay_ms, AVAILABILITY_DELAY_MS)


def _published_until(now_ms: int, delay_ms: int) -> int:
    """Where the windows planned at ``now_ms`` end: the last whole minute Duo has published."""
    published = now_ms - _delay(delay_ms)
    return published - published % LIVE_WINDOW_MS


def _least_span(wait_ms: int) -> int:
    """The shortest span ``plan_windows`` plans a window for."""
    return max(MIN_WINDOW_MS, wait_ms)


def first_plan_at(planned_until: int, delay_ms: int, wait_ms: int) -> int:
    """The earliest now at which ``plan_windows(planned_until, now, ..., delay_ms, wait_ms)``
    plans a window: once the first whole minute that ends its least span is published."""
    least_end = planned_until + _least_span(wait_ms)
    end = least_end + (-least_end) % LIVE_WINDOW_MS
    return end + _delay(delay_ms)


def quiet_wait_ms(last_records_ms: int, watermark_ms: int, now_ms: int, quiet_every_ms: int) -> int:
    """How long a span a source's next window waits for (``plan_windows``): none, or
    ``quiet_every_ms`` for a quiet source, none of whose windows up to ``last_records_ms`` (the
    end of the newest that held a record) held one in the last QUIET_AFTER_MS. Most accounts
    are silent most minutes, and a window costs its reads and writes whether or not Duo has
    records. A source still reading its backlog (its watermark further behind than a quiet
    read leaves it, by LIVE_MS) is not quiet: whether its records are old is not known yet, and
    its live windows go before the backlog's requests only if there are any."""
    reading_backlog = watermark_ms < now_ms - quiet_every_ms - LIVE_MS
    quiet = last_records_ms < now_ms - QUIET_AFTER_MS and not reading_backlog
    return quiet_every_ms if quiet else 0


def is_live(mintime: int, now_ms: int) -> bool:
    """Whether a window holds the newest records (it starts within ``LIVE_MS``): the records
    people wait for, whose requests go before the backfill's."""
    return mintime >= now_ms - LIVE_MS


def retention_gap(planned_until: int, now_ms: int) -> tuple[int, int] | None:
    """After an outage longer than Duo keeps logs, the part that can no longer be fetched:
    ``[first, last]`` ms, both inclusive; planning goes on from ``last + 1``."""
    oldest = _oldest_planned(now_ms)
    if planned_until >= oldest:
        return None
    return planned_until, oldest - 1


def past_retention(
    cursor: dict[str, Any], gap: tuple[int, int] | None, now_ms: int
) -> dict[str, Any]:
    """The cursor's update once ``gap`` (``retention_gap``) was lost to Duo's retention: said
    loudly, and planning and the watermark go on from what Duo still has; {} without a gap."""
    if gap is None:
        return {}
    update: dict[str, Any] = {
        "last_error": (
            f"logs between {gap[0]} and {gap[1]} ms were older than Duo's 180-day "
            "retention when planned and cannot be collected"
        ),
        "last_error_at_ms": now_ms,
        "gap_ms": list(gap),
        "planned_until_ms": gap[1] + 1,
    }
    if cursor["watermark_ms"] <= gap[1]:
        update["watermark_ms"] = gap[1] + 1
    return update


def retention_start(mintime: int, now_ms: int) -> int:
    """Where a window's fetch may start now: its mintime, or, once Duo no longer keeps that,
    the oldest millisecond it still keeps (with a margin for the pages that follow)."""
    return max(mintime, now_ms - RETENTION_MS + FETCH_RETENTION_MARGIN_MS)
