"""The fleet's check against the ground truth: every readable account with none missing and
none twice, and a child Duo refuses shown as refused, not counted as a failure."""

from __future__ import annotations

from harness.fleet import AccountCheck, FleetCheck, format_check
from shared.pipeline.sources import ACTIVE, REFUSED


def account(name: str, **fields) -> AccountCheck:
    defaults = {"state": ACTIVE, "refused": False, "expected": 10, "landed": 10}
    return AccountCheck(account_id=name.upper(), source=name, **(defaults | fields))


def test_a_refused_child_shown_as_refused_is_not_a_failure() -> None:
    check = FleetCheck([account("a"), account("b", state=REFUSED, refused=True, expected=0)])
    assert check.ok
    assert check.totals()["refused"] == 1 and check.totals()["failed"] == 0
    assert "refused B" in format_check(check)


def test_a_refused_child_shown_as_active_fails() -> None:
    check = FleetCheck([account("b", state=ACTIVE, refused=True, expected=0)])
    assert not check.ok


def test_a_missing_or_duplicated_record_or_an_unregistered_account_fails() -> None:
    for broken in (
        account("a", missing=1, landed=9),
        account("a", duplicated=1, landed=11),
        account("a", state="unregistered", landed=0),
    ):
        check = FleetCheck([account("b"), broken])
        assert not check.ok
        assert check.totals()["failed"] == 1
        assert "FAILED A" in format_check(check)
