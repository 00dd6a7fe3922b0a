"""The fleet demo end to end, small: an MSP parent's children discovered, every readable
child's records landed once each against its ground truth, the refused child shown as refused
and not as a failure, and the fleet's status printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.catchup import DEMO_PROJECT
from harness.emulators import ENV_VARS, FIRESTORE
from harness.fleet import registry_entries, watermarks
from services.cli import main

pytestmark = pytest.mark.integration


def earlier_sources() -> set[str]:
    """The sources (with a cursor, as status lists them) an earlier test left in the demo's
    project, in emulators that outlive the demo (the test session's); none when the demo starts
    its own, which begin empty."""
    if ENV_VARS[FIRESTORE] not in os.environ:
        return set()
    return set(watermarks(DEMO_PROJECT))


def ours() -> set[str]:
    """The demo's accounts: the registry's sources it did not mark gone."""
    if ENV_VARS[FIRESTORE] not in os.environ:
        return set()
    entries = registry_entries(DEMO_PROJECT)
    return {source for source, entry in entries.items() if entry["state"] != "gone"}


def test_the_fleet_demo_checks_every_child_and_shows_the_refused_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = earlier_sources()
    argv = ["demo", "--msp-children", "4", "--refused-share", "0.25", "--records", "900"]
    code = main([*argv, "--days", "0.5", "--timeout", "300", "--log-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    # The fleet's status, exact. A source an earlier test left in the demo's project (shared
    # emulators) is not in this demo's fleet: gone, each counted.
    gone = len(before - ours())
    assert f"  registry    active 3, gone {gone}, refused 1, broken 0\n" in out, out[-2000:]
    assert "accounts 4: 3 checked against the ground truth, 1 refused by Duo" in out
    assert ", 0 failed" in out and "missing 0, duplicated 0" in out
    assert "refused DASIM" in out and "40301" in out
