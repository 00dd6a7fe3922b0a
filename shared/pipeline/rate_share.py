"""An MSP parent's Duo rate limit: per child account, or one budget the children share.

Whether Duo counts a child's reads made with the parent's keys against the child or against
the parent is not documented. ``account``: each child has its own budget (its own limiter, as
a configured account has). ``parent``: every child draws from one limiter keyed by the
parent, at ``DUO_RATE_LIMIT_PER_MINUTE`` (a number, or ``auto``: found from Duo's 429s).
``auto``: one shared limiter whose rate is always found from the 429s, whatever
``DUO_RATE_LIMIT_PER_MINUTE`` says: a shared budget is safe under either way of counting, so
``parent`` is the default (per account, it only reads more slowly than Duo would allow).

A shared budget of R requests a minute is divided fairly by planning: with N children every
child is read at least once per ceil(N / R) minutes (``read_every_ms``). Each child's reads
follow each other a period apart (``read_period_ms``: that, a few seconds shorter when R
allows), the children's reads spread evenly over the period, each at a fixed time of it
(``shared_read``): the run of the minute before plans the window, and the fetcher starts the
read at its time, not in the order the minute's windows happen to be delivered in. The
shared limiter gives live windows' requests first and what is left to the backfill in
arrival order, one page at a time, so one child's backlog starves no other.

Requests outside the children's live reads are counted in the division too. The late-record
checks (``repair``) are the one kind planned at a rate of their own (a span of windows due
each half hour and check age per child: at 200 children that is 13 to 27 requests a minute,
far more than the reads leave of R = 60): each child sends them only with some of its reads
(``checks_every``), one span at a time, so that they ask for at most half of what the reads
leave; the other half is the backfill's, and the windows a check finds short are read again
from it. A span left waiting grows (up to MAX_CHECK_WINDOWS windows) rather than costing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.pipeline.planning import LIVE_WINDOW_MS

ACCOUNT, PARENT, AUTO = "account", "parent", "auto"
RATE_LIMIT_SCOPES = (ACCOUNT, PARENT, AUTO)
DEFAULT_RATE_LIMIT = PARENT


def is_shared(scope: str | None) -> bool:
    """Whether children of a parent with this ``rate_limit`` share one budget (None: a source
    that is no parent's child)."""
    return scope in (PARENT, AUTO)


def budget_key(source: str, parent: str | None, scope: str | None) -> str:
    """The limiter document a source's reads draw from: its own, or its parent's shared one
    (a colon cannot occur in a source id, so the parent's never names a source's)."""
    return f"{parent}:children" if parent and is_shared(scope) else source


def budget_rate(scope: str | None, per_minute: float | None) -> float | None:
    """The requests a minute a source's limiter keeps to: the configured rate, or None (found
    from Duo's 429s) when the configured rate is ``auto`` or the parent's scope is."""
    return None if scope == AUTO else per_minute


def read_every_ms(children: int, per_minute: float) -> int:
    """How often each of ``children`` sharing ``per_minute`` requests is read: ceil(N / R)
    whole minutes."""
    # The epsilon keeps an exact quotient such as 2.0000000000000004 from rounding up to 3.
    return max(1, math.ceil(children / per_minute - 1e-9)) * LIVE_WINDOW_MS


# How long after the start of the minute whose run plans it a child's read starts at the
# soonest: Cloud Scheduler calls at the top of the minute, and the run's plan tasks and the
# window tasks they publish reach the fetchers within seconds (a loaded planner took 25 s
# to plan 200 sources a minute, the timed ones first).
READ_LEAD_MS = 30_000
# How much sooner than ceil(N / R) minutes a child's reads follow each other, when the budget
# allows: a read starts up to a limiter slot after its time (a backfill request may hold it)
# and is counted done after its Firestore writes, so reads exactly ceil(N / R) apart would
# land a little over it.
READ_MARGIN_MS = 5_000
# The margin is taken while the live reads ask for at most this share of R: the rest is the
# backfill's.
MARGIN_SHARE = 0.9


# What one span's check asks of the budget when it finds no late record: Duo's count from each
# of its two edges (a quiet span's check, one; each halving after a late record, one more).
CHECK_REQUESTS = 2
# The share of what the children's reads leave of R that their late-record checks may ask
# for; the rest is the backfill's.
CHECK_SHARE = 0.5


@dataclass(frozen=True)
class SharedRead:
    """A child's part of the shared budget in one planner run."""

    wait_ms: int  # the span its live window waits for (``plan_windows``)
    start_at_ms: int | None  # when the read planned by this run starts (None: no read due)
    next_run_ms: int  # the start of the minute whose run plans its next read
    # The late-record check spans this run may send (a plan task of an earlier version
    # carries none: one).
    checks: int = 1


def read_period_ms(children: int, per_minute: float) -> int:
    """How far apart each child's reads are: ``read_every_ms``, less READ_MARGIN_MS when
    reads that often still ask for at most MARGIN_SHARE of the budget (and are a minute apart
    at least: one run plans one read)."""
    every = read_every_ms(children, per_minute)
    period = every - READ_MARGIN_MS
    fits = children * LIVE_WINDOW_MS <= per_minute * MARGIN_SHARE * period
    return period if fits and period >= LIVE_WINDOW_MS else every


def checks_every(children: int, per_minute: float, period_ms: int) -> int:
    """With how many of its reads (one in so many) a child sharing ``per_minute`` requests
    sends a late-record check: the children's checks, CHECK_REQUESTS each, ask for at most
    CHECK_SHARE of what their reads (one each per ``period_ms``) leave of the budget, and
    never less than of the tenth of it that the reads' margin keeps (MARGIN_SHARE) when they
    leave less."""
    reads = children * LIVE_WINDOW_MS / period_ms
    spare = max(per_minute - reads, (1 - MARGIN_SHARE) * per_minute) * CHECK_SHARE
    per_period = spare * period_ms / LIVE_WINDOW_MS
    # The epsilon keeps an exact quotient from rounding up.
    return max(1, math.ceil(children * CHECK_REQUESTS / per_period - 1e-9))


def shared_read(
    every_ms: int,
    period_ms: int,
    position: int,
    children: int,
    now_ms: int,
    checks_every: int = 1,
) -> SharedRead:
    """The child at ``position`` (in a stable order of the ``children``) in the run at
    ``now_ms``. Its reads come ``period_ms`` apart at the same time of each period, the
    children's spread evenly over it; the run of a minute plans the reads starting from
    READ_LEAD_MS into it to a minute later (each minute about N / period of them), with no
    wait, and leaves the others waiting for ``every_ms`` of span: a run missed still has the
    window planned after ``every_ms``. One in ``checks_every`` of a child's reads is planned
    with a late-record check (the run of the read always plans the child: ``wake``), the
    children's turns spread evenly over their reads; no other run sends one."""
    phase = position * period_ms // children
    minute = now_ms - now_ms % LIVE_WINDOW_MS
    first = minute + READ_LEAD_MS
    read = first + (phase - first) % period_ms
    if read < first + LIVE_WINDOW_MS:
        turn = ((read - phase) // period_ms + position) % checks_every == 0
        return SharedRead(0, read, _planning_minute(read + period_ms), int(turn))
    return SharedRead(every_ms, None, _planning_minute(read), 0)


def _planning_minute(read_ms: int) -> int:
    """The start of the minute whose run plans the read starting at ``read_ms``."""
    planned = read_ms - READ_LEAD_MS
    return planned - planned % LIVE_WINDOW_MS
