"""An MSP parent's Duo rate limit: per child account, or one budget the children share.

Whether Duo counts a child's reads made with the parent's keys against the child or against
the parent is not documented. ``account``: each child has its own budget (its own limiter, as
a configured account has). ``parent``: every child draws from one limiter keyed by the
parent, at ``DUO_RATE_LIMIT_PER_MINUTE`` (a number, or ``auto``: found from Duo's 429s).
``auto``: one shared limiter whose rate is always found from the 429s, whatever
``DUO_RATE_LIMIT_PER_MINUTE`` says: a shared budget is safe under either way of counting, so
``parent`` is the default (per account, it only reads more slowly than Duo would allow).

A shared budget of R requests a minute is divided fairly by planning: with N children each
child's live window spans ceil(N / R) minutes (``read_every_ms``), planned in the child's own
minute of that period (``shared_wait_ms``), so the children's live windows ask for at most
about R a minute together and every child is read at least once per ceil(N / R) minutes.
The shared limiter gives live windows' requests first and what is left to the backfill in
arrival order, one page at a time, so one child's backlog starves no other.
"""

from __future__ import annotations

import math

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


def shared_wait_ms(every_ms: int, position: int, now_ms: int) -> int:
    """The span the child at ``position`` (in a stable order of the children) waits for now
    (``plan_windows``): none in its own minute of each ``every_ms`` period, the whole period
    in the others. The children's own minutes are spread evenly over the period, so each
    minute plans about N / ceil(N / R) <= R live windows, not all N in one minute (whose
    requests would then queue for minutes); a period without its own minute planned (a run
    missed) still ends after ``every_ms``."""
    minutes = every_ms // LIVE_WINDOW_MS
    return 0 if (now_ms // LIVE_WINDOW_MS) % minutes == position % minutes else every_ms
