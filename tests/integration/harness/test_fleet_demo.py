"""The fleet demo end to end, small: an MSP parent's children discovered, every readable
child's records landed once each against its ground truth, the refused child shown as refused
and not as a failure, and the fleet's status printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.cli import main

pytestmark = pytest.mark.integration


def test_the_fleet_demo_checks_every_child_and_shows_the_refused_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--msp-children", "4", "--refused-share", "0.25", "--records", "900"]
    code = main([*argv, "--days", "0.5", "--timeout", "300", "--log-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    # The fleet's status; the emulators are the test session's, so a source an earlier test
    # configured in the same project is gone here.
    assert re.search(r"registry +active 3, gone \d+, refused 1, broken 0", out), out[-2000:]
    assert "accounts 4: 3 checked against the ground truth, 1 refused by Duo" in out
    assert ", 0 failed" in out and "missing 0, duplicated 0" in out
    assert "refused DASIM" in out and "40301" in out
