"""The fleet demo refuses options it cannot run before it starts anything, naming the flag."""

from __future__ import annotations

import pytest

from harness import demo
from services.cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--msp-children", "-3"], "--accounts/--msp-children: the numbers must be 0 or more"),
        (["--msp-children", "5", "--refused-share", "1.5"], "--refused-share: 1.5 must be"),
        (["--accounts", "5", "--refused-share", "0.5"], "--refused-share needs --msp-children"),
        (["--accounts", "5", "--days", "0"], "--days"),
        (["--accounts", "5", "--records", "-1"], "--records"),
        (["--accounts", "5", "--live", "-1"], "--live"),
        (["--accounts", "5", "--rate-limit", "0"], "--rate-limit"),
    ],
)
def test_a_bad_fleet_option_is_named_and_nothing_starts(argv, named, monkeypatch, capsys):
    def must_not_start(*_args, **_kwargs):
        raise AssertionError("the fleet demo started with options it should refuse")

    monkeypatch.setattr(demo, "fleet_stack", must_not_start)
    assert main(["demo", *argv]) == 2
    assert named in capsys.readouterr().err
