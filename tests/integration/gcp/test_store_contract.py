"""One contract, two implementations: each test runs against the unit suite's FakeCursorStore
and FakeWindowStore and against CursorStore and WindowStore on the Firestore emulator, so a
fake cannot drift from the store it stands for. The contract: the watermark's advance over
half-open windows, which window documents expire, and which windows are checked for late
records.

Time is a FakeClock: nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.clock import now_ms
from shared.pipeline.messages import RecordBatch, WindowTask
from shared.pipeline.windows import DONE, LANDING_TIMEOUT_MS, MAX_REREADS, PLANNED, QUARANTINED
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeCursorStore, FakeWindowStore

pytestmark = pytest.mark.integration

SOURCE = "acme"
HOUR_MS = 3_600_000
MIN_MS = 60_000
CHECKS = (15 * MIN_MS, 24 * HOUR_MS)


@dataclass
class Stores:
    cursors: Any
    windows: Any
    clock: FakeClock
    doc: Callable[[WindowTask], dict[str, Any]]


def _fake(clock: FakeClock) -> Iterator[Stores]:
    windows = FakeWindowStore(clock, [])
    yield Stores(FakeCursorStore(windows, clock), windows, clock, lambda t: dict(windows.doc(t)))


def _firestore(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Stores]:
    from shared.gcp.cursor_store import CursorStore
    from shared.gcp.window_store import WindowStore

    db = request.getfixturevalue("firestore_db")
    windows = WindowStore(db, clock)

    def doc(task: WindowTask) -> dict[str, Any]:
        return windows.window(task.source, task.window_id).get().to_dict()

    yield Stores(CursorStore(db, windows, clock), windows, clock, doc)


@pytest.fixture(params=["fake", "firestore"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    clock = FakeClock()
    if request.param == "fake":
        yield from _fake(clock)
    else:
        yield from _firestore(clock, request)


def _fetch(stores: Stores, task: WindowTask) -> None:
    """Claimed and read to its end in one page (its batch not landed yet)."""
    claim = stores.windows.claim(task.source, task.window_id, 3600)
    assert claim is not None
    assert stores.windows.checkpoint(claim, None, 1, 3600) is not None


def _land(stores: Stores, task: WindowTask) -> None:
    """The batch of the window's last read lands."""
    page = stores.doc(task)["pages"] - 1
    stores.windows.record_batch(RecordBatch(task.source, task.window_id, page, []), ["obj"])


def _finish(stores: Stores, *tasks: WindowTask, checks: tuple[int, ...] = ()) -> None:
    for task in tasks:
        _fetch(stores, task)
        _land(stores, task)
    assert stores.windows.sweep(SOURCE, checks).completed == len(tasks)


def _quarantine_by_rereads(stores: Stores, task: WindowTask) -> None:
    """Read again and again, its batches never landing, until it is quarantined."""
    for _ in range(MAX_REREADS + 1):
        _fetch(stores, task)
        stores.clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
        stores.windows.sweep(SOURCE)
    assert stores.doc(task)["state"] == QUARANTINED


def _passed(stores: Stores, checks: tuple[int, ...]) -> WindowTask:
    """One window, done (its late-record checks ``checks``) and passed by the watermark."""
    (task,) = stores.cursors.plan(SOURCE, lookback_ms=HOUR_MS, parallelism=1)
    _finish(stores, task, checks=checks)
    assert stores.cursors.advance(SOURCE) == task.maxtime
    return task


def _expiry(stores: Stores, days: int = 30) -> datetime:
    return datetime.fromtimestamp(now_ms(stores.clock) / 1000 + days * 86_400, UTC)


def test_the_watermark_moves_over_contiguous_done_windows_and_stops_at_a_quarantined_one(
    stores: Stores,
) -> None:
    w1, w2, w3 = stores.cursors.plan(SOURCE, lookback_ms=4 * HOUR_MS, parallelism=3)
    assert w2.mintime == w1.maxtime and w3.mintime == w2.maxtime  # half-open
    _finish(stores, w1, w3)
    _quarantine_by_rereads(stores, w2)

    assert stores.cursors.advance(SOURCE) == w1.maxtime
    assert stores.cursors.advance(SOURCE) == w1.maxtime
    # The watermark did not pass the quarantined window: it is not given an expiry.
    assert stores.doc(w1)["expire_at"] == _expiry(stores)
    assert stores.doc(w2).get("expire_at") is None
    assert stores.doc(w3).get("expire_at") is None


def test_a_done_window_with_checks_to_come_expires_only_after_its_last_check(
    stores: Stores,
) -> None:
    task = _passed(stores, CHECKS)
    # A check is still to come: the document must outlive it.
    assert stores.doc(task)["expire_at"] is None
    stores.clock.advance(24 * 3600)
    assert stores.windows.apply_check(SOURCE, task.window_id, 0, True, CHECKS) is False
    assert stores.doc(task)["expire_at"] is None  # the day-after check is still to come
    assert stores.windows.apply_check(SOURCE, task.window_id, 1, True, CHECKS) is False
    assert stores.doc(task)["expire_at"] == _expiry(stores)  # done for good


def test_a_late_record_reread_behind_the_watermark_that_is_quarantined_does_not_expire(
    stores: Stores,
) -> None:
    task = _passed(stores, CHECKS)
    stores.clock.advance(24 * 3600)
    assert stores.windows.apply_check(SOURCE, task.window_id, 0, True, CHECKS) is False
    # Duo counts otherwise at the last check: the window is read again, behind the watermark.
    assert stores.windows.apply_check(SOURCE, task.window_id, 1, False, CHECKS) is True
    assert (stores.doc(task)["state"], stores.doc(task)["expire_at"]) == (PLANNED, None)

    _quarantine_by_rereads(stores, task)
    assert stores.doc(task)["expire_at"] is None
    assert stores.cursors.advance(SOURCE) == task.maxtime


def test_a_reread_behind_the_watermark_expires_again_once_done(stores: Stores) -> None:
    task = _passed(stores, CHECKS[:1])
    stores.clock.advance(3600)
    assert stores.windows.apply_check(SOURCE, task.window_id, 0, False, CHECKS[:1]) is True
    assert stores.doc(task)["expire_at"] is None

    stores.clock.advance(60)
    _finish(stores, task, checks=CHECKS[:1])
    assert stores.doc(task)["state"] == DONE
    assert stores.doc(task)["expire_at"] == _expiry(stores)


def test_windows_stuck_with_a_past_check_time_do_not_starve_the_checks(stores: Stores) -> None:
    stuck = stores.cursors.plan(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=3)
    _finish(stores, *stuck, checks=CHECKS)
    stores.clock.advance(3600)
    for task in stuck:  # Duo counted otherwise: read again, and quarantined there
        assert stores.windows.apply_check(SOURCE, task.window_id, 0, False, CHECKS) is True
        _quarantine_by_rereads(stores, task)
    stores.clock.advance(24 * 3600)  # their second check time has passed
    (recent,) = stores.cursors.plan(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=1)
    _finish(stores, recent, checks=CHECKS)
    stores.clock.advance(20 * 60)  # its first check is due, later than theirs

    found = stores.windows.due_checks(SOURCE, limit=2)

    assert [window_id for window_id, _ in found] == [recent.window_id]


def test_an_empty_read_is_done_at_its_checkpoint_checked_and_passed_and_a_quiet_source_waits(
    stores: Stores,
) -> None:
    (task,) = stores.cursors.plan(SOURCE, lookback_ms=HOUR_MS, parallelism=1)
    claim = stores.windows.claim(task.source, task.window_id, 3600)
    assert claim is not None
    assert stores.windows.checkpoint(claim, None, 0, 3600, checks=CHECKS) is not None
    doc = stores.doc(task)
    assert (doc["state"], doc["pages"], doc["next_check_at_ms"]) == (
        DONE,
        0,
        task.maxtime + MIN_MS * 15,
    )
    assert stores.cursors.advance(SOURCE) == task.maxtime  # no batch, no sweep needed
    # No window held a record since the cursor was made, over an hour ago: a window waits for
    # five minutes of span.
    stores.clock.advance(2 * 3600)

    def plan() -> list[WindowTask]:
        return stores.cursors.plan(SOURCE, HOUR_MS, 1, quiet_every_ms=5 * MIN_MS)

    assert len(plan()) == 1  # the two hours since
    stores.clock.advance(60)
    assert plan() == []
    stores.clock.advance(4 * 60)
    assert [t.maxtime - t.mintime for t in plan()] == [5 * MIN_MS]
