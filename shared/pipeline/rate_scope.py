"""``rate_limit: auto``: whether Duo counts an MSP parent's children per account or against the
parent, found from what Duo accepts and refuses (rate_share says what each way means).

Each child's reads draw from two budgets whose rates are both found from Duo's 429s
(adaptive_rate): the child's own and the parent's shared one. The two ways of counting predict
different 429s: against the parent, Duo refuses when the fleet's requests in the last minute
reach one limit, whichever child sends, so no 429 ever comes while the fleet has made fewer
requests in the minute than it was served in another; per account, Duo refuses a child when its
own requests reach its limit, whatever the fleet makes.

- The evidence: the most requests Duo accepted from the fleet in a minute (a minute without a
  429, counted each planner run, or the minute before a 429, whose refused requests are not
  counted) and the fewest the fleet had made in the minute before a 429 (with the refused
  child's own), each over the last ``RECENT_SECONDS``. Served ``PROMOTE_MARGIN`` times (and
  ``PROMOTE_SLACK`` requests) more than it was refused at, the count cannot be the parent's:
  it is decided per account (``decide``).
- A 429 is blamed on one budget (``blame``), which alone is paused and cut. While the count is
  taken to be the parent's (the start: safe either way), on the child's own when it made at
  least half the fleet's requests in the minute before (it may have met its own limit, and
  the others need not wait), else on the shared one. While taken to be per account, on the
  child's own when it was at about the per-account limit seen (or its own limit found, give or
  take ``COUNT_SLACK``), else
  on the shared one, which takes the decision back to the parent's at once (``after_429``),
  its evidence starting over.

Neither check ever stops, so a change on Duo's side is found the same way; deciding costs no
429 beyond the limit searches' own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.duo.adaptive_rate import AutoPolicy
from shared.pipeline.rate_share import ACCOUNT, PARENT

# Served this much above what it was refused at: a steady per-parent limit never lets the
# fleet through above it.
PROMOTE_MARGIN = 1.25
# Our count of a minute is Duo's give or take a request or two (a second partly inside the
# minute counts whole, a slot is counted before its request arrives): what small limits need.
COUNT_SLACK = 2
# A minute is counted as served only when no 429 came in it: Duo counts a minute.
QUIET_SECONDS = 60.0
# Evidence older than this is dropped: Duo may change how it counts.
RECENT_SECONDS = 3600.0
# A child refused at this share of the per-account limit seen was at it: the limit search
# keeps each budget's rate between this and its limit.
AT_LIMIT = AutoPolicy().back_off


@dataclass(frozen=True)
class ScopeDecision:
    """How Duo counts a parent's children's reads, as decided so far, and the evidence (times
    in epoch seconds)."""

    scope: str = PARENT
    since: float = 0.0  # 0: the start, nothing decided yet
    evidence: str = "the start: a shared budget is safe whichever way Duo counts"
    # The most requests the fleet was served in a minute without a 429, and when.
    served: float = 0.0
    served_at: float = 0.0
    # The fewest requests the fleet had made in the minute before a 429, the refused child's
    # own, and when.
    refused_fleet: float = 0.0
    refused_own: float = 0.0
    refused_at: float = 0.0
    last_429_at: float = 0.0  # any 429
    # Per account: the refused child's own requests that showed it, the limit seen.
    account_limit: float = 0.0


def blame(decision: ScopeDecision, own: float, own_found: float, fleet: float) -> str:
    """The budget whose limit a 429 to a child met (ACCOUNT: the child's own; PARENT: the
    shared one), given the child's own requests and the fleet's in the minute before it and the
    child's own limit found so far (0: none)."""
    if decision.scope == ACCOUNT:
        limits = [limit for limit in (decision.account_limit, own_found) if limit > 0]
        if limits:
            return ACCOUNT if own >= AT_LIMIT * min(limits) - COUNT_SLACK else PARENT
    return ACCOUNT if 2 * own >= fleet else PARENT


def after_429(
    decision: ScopeDecision, blamed: str, own: float, fleet: float, now: float
) -> ScopeDecision:
    """The decision after a 429 to a child, blamed on ``blamed``, that had made ``own`` of
    the fleet's ``fleet`` requests in the minute before."""
    recorded = replace(_served(decision, fleet, now), last_429_at=now)
    if not _recent(decision.refused_at, decision.refused_fleet, now) or (
        fleet < decision.refused_fleet
    ):
        recorded = replace(recorded, refused_fleet=fleet, refused_own=own, refused_at=now)
    if decision.scope == ACCOUNT and blamed == PARENT:
        return replace(
            recorded,
            scope=PARENT,
            since=now,
            evidence=(
                f"a child was refused at {own:g} requests a minute, below the "
                f"{decision.account_limit:g} one account was served at, with the fleet at "
                f"{fleet:g}: Duo counts against the parent"
            ),
            # What was served under the other way of counting proves nothing now.
            served=fleet,
            served_at=now,
            refused_fleet=fleet,
            refused_own=own,
            refused_at=now,
        )
    return decide(recorded, now)


def after_minute(decision: ScopeDecision, served: float, now: float) -> ScopeDecision:
    """The decision after the fleet made ``served`` requests in the minute to ``now``."""
    if now - decision.last_429_at < QUIET_SECONDS:
        return decision  # Duo may have refused some of them
    return decide(_served(decision, served, now), now)


def decide(decision: ScopeDecision, now: float) -> ScopeDecision:
    """Per account once the fleet was served well above what it was refused at (both
    recent); else as it was."""
    if (
        decision.scope != PARENT
        or not _recent(decision.served_at, decision.served, now)
        or not _recent(decision.refused_at, decision.refused_fleet, now)
        or decision.served < PROMOTE_MARGIN * decision.refused_fleet + COUNT_SLACK
    ):
        return decision
    return replace(
        decision,
        scope=ACCOUNT,
        since=now,
        account_limit=decision.refused_own,
        evidence=(
            f"Duo accepted {decision.served:g} of the fleet's requests in a minute, and "
            f"refused it at {decision.refused_fleet:g} (a child at {decision.refused_own:g} of "
            "them): Duo counts per account"
        ),
    )


def _served(decision: ScopeDecision, served: float, now: float) -> ScopeDecision:
    """The evidence with a minute in which Duo accepted ``served`` of the fleet's requests."""
    if _recent(decision.served_at, decision.served, now) and served <= decision.served:
        return decision
    return replace(decision, served=served, served_at=now)


def _recent(at: float, value: float, now: float) -> bool:
    return value > 0 and now - at <= RECENT_SECONDS
