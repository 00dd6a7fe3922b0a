"""When a source's next planner run is due. A run of a quiet source costs its reads (the
cursor, the open and quarantined windows, the windows from the watermark) even in the minutes
when it can plan nothing; most accounts of a fleet are quiet. A run that leaves its
source with nothing to do (``idle``, its watermark at the end of what is planned) therefore
names the next run that can do something (``wake_at``), and the runs before it are skipped.
A quiet source is left asleep by the run that plans its window (``sleeps_once_planned``), the
window taken as passed: the next run passes it and plans the next in one cursor write, where a
run more would pass it and find the source idle. A fetcher finding records in such a window
sets the source back to every run (``wakes_on_records``). Planning is unchanged: a skipped run
would have planned nothing, so windows are planned, and records land, exactly as if every run
ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.pipeline.planning import LIVE_WINDOW_MS, first_plan_at, quiet_wait_ms
from shared.pipeline.rate_share import SharedRead

# The registry entry's field: a source is planned by the runs from then on (none: every run).
WAKE_AT = "wake_at_ms"
# The wake of an entry due every run. Stored as a time, not none: the planner's minute finds
# the entries it plans by a range on the wake (``SourceRegistry.due``), which skips none. A gone
# entry has none, and is never read by it.
EVERY_RUN = 0
# A settled source still runs this often, whatever QUIET_READ_EVERY says, so its lag and its
# quarantined count are logged within the alerts' 10-minute windows (deploy/monitoring).
SETTLED_RUN_EVERY_MAX_MS = 300_000


def idle(planned: int, open_windows: int) -> bool:
    """Whether a run left its source nothing to do until it can plan again: it planned
    nothing and left no window open (to be swept, sent again or read again). A late-record
    check it sent needs no run before its resend, kept on the cursor, and a window the check
    reopens is swept by the run the wake names, within SETTLED_RUN_EVERY_MAX_MS."""
    return planned == 0 and open_windows == 0


def sleeps_once_planned(
    windows: Sequence[tuple[int, int]],
    watermark_ms: int,
    open_windows: int,
    quiet: bool,
) -> bool:
    """Whether a run that planned ``windows`` (mintime, maxtime) leaves its source asleep at
    once, the windows taken as passed (``wake_at`` from their end): they are a ``quiet``
    source's (the quiet wait applied), each one a fetcher wakes the source for when it holds
    records (``wakes_on_records``), and the first starts at the watermark (no finished or
    stopped window is behind them); no other window is left open (``idle``). Not a
    busy source's: due every run anyway, its wake would be a write for nothing."""
    return (
        quiet
        and bool(windows)
        and windows[0][0] == watermark_ms
        and open_windows == 0
        and all(wakes_on_records(mintime, maxtime) for mintime, maxtime in windows)
    )


def wakes_on_records(mintime_ms: int, maxtime_ms: int) -> bool:
    """Whether a fetcher finding the first records of a window sets its source back to every
    run (its registry entry's wake to EVERY_RUN, one write): a window longer than a live
    minute, which a quiet source may have been left asleep with (``sleeps_once_planned``), so
    that the source's next windows are planned each minute, not when its next quiet window
    would be. A busy source's windows are a minute long; a backfill's, a catch-up's or a
    sharing child's longer one costs the write in vain, once a window that holds records."""
    return maxtime_ms - mintime_ms > LIVE_WINDOW_MS


def wake_at(
    watermark_ms: int,
    planned_until_ms: int,
    last_records_ms: int,
    now_ms: int,
    delay_ms: int,
    quiet_every_ms: int,
    shared: SharedRead | None = None,
) -> int | None:
    """When the source of an ``idle`` run is due again; None (every run) while its watermark
    is behind what is planned: a finished window it has not passed yet, or one quarantined,
    whose count is logged every run for the alert. Otherwise when its next window can be
    planned (with the
    quiet wait as it is now: a source only grows quieter while it sleeps, so no run before can
    plan), and never later than QUIET_READ_EVERY (at most SETTLED_RUN_EVERY_MAX_MS) from now,
    so a late-record check falling due, or a window a check reopened, waits at most that long.
    That bound is taken down to a whole minute, when Cloud Scheduler calls: the call it names
    is not missed by the call's few milliseconds late. A child sharing its parent's budget
    (``shared``) plans in the minute of its next read with the quiet wait, in any other once
    its span reaches the shared wait as well: the sooner of the two."""
    if watermark_ms != planned_until_ms:
        return None
    wait = quiet_wait_ms(last_records_ms, watermark_ms, now_ms, quiet_every_ms)
    latest = now_ms + min(quiet_every_ms, SETTLED_RUN_EVERY_MAX_MS)
    can_plan = first_plan_at(planned_until_ms, delay_ms, wait)
    if shared is not None:
        can_plan = min(
            max(can_plan, shared.next_run_ms),
            first_plan_at(planned_until_ms, delay_ms, max(wait, shared.wait_ms)),
        )
    return min(can_plan, latest - latest % LIVE_WINDOW_MS)


def due(entry: Mapping[str, Any], now_ms: int) -> bool:
    """Whether the source of a registry entry is planned by a run at ``now_ms`` (an entry
    without a wake, as before this rule, always is)."""
    wake = entry.get(WAKE_AT)
    return wake is None or wake <= now_ms
