"""``rate_limit: auto``: which budget a 429 is blamed on, and when the decision that Duo counts
an MSP parent's children per account is made and taken back, on fixed vectors."""

from __future__ import annotations

import dataclasses

import pytest

from shared.pipeline.rate_scope import ScopeDecision, after_429, after_minute, blame
from shared.pipeline.rate_share import ACCOUNT, PARENT

START = ScopeDecision()
PER_ACCOUNT = ScopeDecision(scope=ACCOUNT, since=50.0, account_limit=6)


@pytest.mark.parametrize(
    ("decision", "own", "own_found", "fleet", "blamed"),
    [
        # Taken to be the parent's: the child's own limit only when it made half the requests.
        (START, 6, 0, 8, ACCOUNT),
        (START, 6, 0, 12, ACCOUNT),
        (START, 5, 0, 12, PARENT),
        (START, 3, 6, 12, PARENT),  # its own limit found does not matter yet
        # Taken to be per account: the child's own when it was at the per-account limit seen.
        (PER_ACCOUNT, 6, 0, 40, ACCOUNT),
        (PER_ACCOUNT, 4, 0, 40, ACCOUNT),  # 93 % of the limit, less a count's 2 requests
        (PER_ACCOUNT, 3.5, 0, 40, PARENT),
        (PER_ACCOUNT, 2, 0, 40, PARENT),
        (dataclasses.replace(PER_ACCOUNT, account_limit=60), 53.9, 0, 400, ACCOUNT),
        (dataclasses.replace(PER_ACCOUNT, account_limit=60), 53.7, 0, 400, PARENT),
        (PER_ACCOUNT, 1, 3, 40, ACCOUNT),  # a child whose own limit, found, is lower
        (dataclasses.replace(PER_ACCOUNT, account_limit=0), 2, 0, 40, PARENT),
        (dataclasses.replace(PER_ACCOUNT, account_limit=0), 20, 0, 40, ACCOUNT),
    ],
)
def test_a_429_is_blamed_on_the_budget_whose_limit_the_counts_show_was_met(
    decision, own, own_found, fleet, blamed
):
    assert blame(decision, own, own_found, fleet) == blamed


def test_per_account_counting_is_decided_when_the_fleet_is_refused_below_what_it_was_served():
    # Duo counting per account (6 each): four children were served 20 in a quiet minute;
    # later the busiest, alone, is refused at its own 6, the fleet at 8.
    decision = after_minute(START, served=20, now=100.0)
    assert (decision.scope, decision.served) == (PARENT, 20)
    decision = after_429(decision, ACCOUNT, own=6, fleet=8, now=300.0)
    assert (decision.scope, decision.since, decision.account_limit) == (ACCOUNT, 300.0, 6)
    assert decision.evidence == (
        "Duo accepted 20 of the fleet's requests in a minute, and refused it at 8 (a child "
        "at 6 of them): Duo counts per account"
    )


def test_the_minute_before_a_429_counts_as_served_what_duo_accepted_in_it():
    # Per account (6 each): four children refused at 6 each with the fleet at 17, then the
    # busiest alone at its 6 with the fleet at 8: Duo accepted 17 in a minute, refused at 8.
    decision = after_429(START, PARENT, own=5, fleet=17, now=100.0)
    assert (decision.scope, decision.served, decision.refused_fleet) == (PARENT, 17, 17)
    assert after_429(decision, ACCOUNT, own=6, fleet=8, now=130.0).scope == ACCOUNT
    # Against the parent (6): the refusals after the first come with a count a request short.
    straggled = after_429(START, PARENT, own=2, fleet=6, now=100.0)
    assert after_429(straggled, PARENT, own=1, fleet=5, now=101.0).scope == PARENT


def test_per_account_counting_is_decided_when_the_fleet_is_served_past_what_it_was_refused_at():
    decision = after_429(START, ACCOUNT, own=6, fleet=9, now=100.0)
    assert after_minute(decision, served=14, now=159.0) == decision  # a 429 in the minute
    assert after_minute(decision, served=13, now=170.0).scope == PARENT  # under 1.25 x 9 + 2
    assert after_minute(decision, served=14, now=160.0).scope == ACCOUNT  # (100, 160]: no 429
    decided = after_minute(decision, served=14, now=170.0)
    assert (decided.scope, decided.since, decided.account_limit) == (ACCOUNT, 170.0, 6)
    assert after_minute(decided, served=100, now=900.0).scope == ACCOUNT


def test_against_the_parent_the_fleet_is_never_served_past_its_refusals_and_nothing_changes():
    # Duo counting against the parent (12 a minute): whoever is refused, the fleet had 12,
    # and no quiet minute serves more.
    decision = START
    for now, own, served in ((100.0, 7, 11), (400.0, 2, 12), (700.0, 12, 12), (1_000.0, 4, 10)):
        decision = after_429(decision, blame(decision, own, 0, 12), own=own, fleet=12, now=now)
        decision = after_minute(decision, served=served, now=now + 120)
    assert (decision.scope, decision.since, decision.served, decision.refused_fleet) == (
        PARENT,
        0.0,
        12,
        12,
    )


def test_evidence_an_hour_old_is_dropped():
    served = after_minute(START, served=20, now=100.0)
    assert after_429(served, ACCOUNT, own=6, fleet=8, now=3_700.0).scope == ACCOUNT  # an hour
    assert after_429(served, ACCOUNT, own=6, fleet=8, now=3_701.0).scope == PARENT
    refused = after_429(START, ACCOUNT, own=6, fleet=8, now=100.0)
    later = after_429(refused, PARENT, own=4, fleet=16, now=3_701.0)
    assert (later.refused_fleet, later.refused_at) == (16, 3_701.0)  # the old 8 is gone
    assert after_minute(later, served=12, now=3_800.0).scope == PARENT


def test_a_child_refused_below_the_per_account_limit_takes_the_decision_back_to_the_parent():
    # Decided on a fleet refused at 8 (a child at its own 6), served 60 since.
    decided = dataclasses.replace(
        PER_ACCOUNT, served=60, served_at=400.0, refused_fleet=8, refused_own=6, refused_at=40.0
    )
    blamed = blame(decided, own=2, own_found=0, fleet=30)
    back = after_429(decided, blamed, own=2, fleet=30, now=500.0)
    assert (back.scope, back.since, back.refused_fleet, back.served) == (PARENT, 500.0, 30, 30)
    assert back.evidence == (
        "a child was refused at 2 requests a minute, below the 6 one account was served at, "
        "with the fleet at 30: Duo counts against the parent"
    )
    # The evidence starts over (the refusal at 8 with it): served past 1.25 x 30 + 2 in a
    # quiet minute (Duo changed back), it is per account once more.
    assert after_minute(back, served=39, now=600.0).scope == PARENT
    again = after_minute(back, served=40, now=600.0)
    assert (again.scope, again.account_limit) == (ACCOUNT, 2)  # the child refused last


def test_a_child_refused_at_its_own_limit_keeps_the_per_account_decision():
    kept = after_429(PER_ACCOUNT, ACCOUNT, own=6, fleet=40, now=500.0)
    assert (kept.scope, kept.since, kept.account_limit) == (ACCOUNT, 50.0, 6)
