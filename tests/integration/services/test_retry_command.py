"""``duo-telephony retry``: an operator puts a quarantined window back, on the Firestore
emulator, and status stops naming it."""

from __future__ import annotations

import pytest
from google.cloud import firestore

from services.cli import main
from shared.clock import SystemClock, now_ms
from shared.gcp.cursor_store import CursorStore
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import window_id
from shared.pipeline.sources import ENV, SourceSpec
from shared.pipeline.wake import due
from shared.pipeline.windows import MAX_FAILURES, new_window

pytestmark = pytest.mark.integration

SOURCE = "acme"


def test_a_quarantined_window_is_put_back_by_the_command_status_prints(
    local_cloud, firestore_db: firestore.Client, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", local_cloud.project)
    clock = SystemClock()
    windows = WindowStore(firestore_db, clock)
    mintime = now_ms(clock) - 7_200_000
    wid = window_id(mintime, mintime + 3_600_000)
    windows.window(SOURCE, wid).create(new_window(mintime, mintime + 3_600_000, now_ms(clock)))
    for _ in range(MAX_FAILURES):
        windows.window(SOURCE, wid).update({"retry_at_ms": 0})  # due at once, for the test
        claim = windows.claim(SOURCE, wid, 60)
        assert claim is not None
        windows.release(claim, error="DuoProtocolError: an item without an id")
    status = CursorStore(firestore_db, windows, clock).status(SOURCE)
    assert [w["window_id"] for w in status["quarantined"]] == [wid]
    # A window behind the watermark, quarantined when a check had it read again: the planner
    # skips the source, idle otherwise, until its wake.
    registry = SourceRegistry(firestore_db, clock)
    registry.sync([SourceSpec(SOURCE, ENV)], None)
    registry.wake(SOURCE, now_ms(clock) + 300_000)

    assert main(["retry", SOURCE, wid]) == 0
    assert due(registry.entry(SOURCE), now_ms(clock))  # the next planner run sends it
    assert f"window {wid} of {SOURCE} is planned again" in capsys.readouterr().out
    status = CursorStore(firestore_db, windows, clock).status(SOURCE)
    assert status["quarantined"] == [] and status["windows"]["planned"] == 1
    # Run again, or for a window that is not stopped: refused, exit 1.
    assert main(["retry", SOURCE, wid]) == 1
    assert "no quarantined or failed window" in capsys.readouterr().err
    assert main(["retry", SOURCE, "not-a-window"]) == 2
