"""CursorStore against the Firestore emulator: planning (also by two planners at once), the
watermark, the sweep, Duo's retention and status.

Time is a FakeClock (each racing planner has its own): nothing sleeps for time to pass.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from harness.emulators import LocalCloud
from shared.clock import now_ms
from shared.duo.paging import AVAILABILITY_DELAY_MS, RETENTION_MS
from shared.gcp import cursor_store
from shared.gcp.clients import firestore_client
from shared.gcp.cursor_store import CursorStore
from shared.gcp.window_store import WindowStore
from shared.pipeline import windows as window_rules
from shared.pipeline.ids import window_id
from shared.pipeline.messages import RecordBatch, WindowTask
from shared.pipeline.planning import retention_gap
from shared.pipeline.windows import (
    DONE,
    DONE_RETENTION_MS,
    FAILED,
    FETCHED,
    FETCHING,
    LANDING_TIMEOUT_MS,
    MAX_REREADS,
    PLANNED,
    QUARANTINED,
    RESEND_AFTER_MS,
    Claim,
)
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

SOURCE = "acme"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LEASE_S = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def windows(firestore_db: firestore.Client, clock: FakeClock) -> WindowStore:
    return WindowStore(firestore_db, clock)


@pytest.fixture
def cursors(firestore_db: firestore.Client, windows: WindowStore, clock: FakeClock) -> CursorStore:
    return CursorStore(firestore_db, windows, clock)


def _cursor(cursors: CursorStore, source: str = SOURCE) -> dict[str, Any]:
    snapshot = cursors.cursor(source).get()
    assert snapshot.exists
    return snapshot.to_dict()


def _stored_windows(windows: WindowStore, source: str = SOURCE) -> list[dict[str, Any]]:
    """Every window document of ``source``, by mintime, with its id under ``"id"``."""
    docs = [s.to_dict() | {"id": s.id} for s in windows.windows(source).stream()]
    return sorted(docs, key=lambda d: d["mintime"])


def _doc(windows: WindowStore, task: WindowTask) -> dict[str, Any]:
    snapshot = windows.window(task.source, task.window_id).get()
    assert snapshot.exists
    return snapshot.to_dict()


def _assert_contiguous(spans: list[tuple[int, int]]) -> None:
    assert all(mintime < maxtime for mintime, maxtime in spans)
    for (_, previous_max), (mintime, _) in itertools.pairwise(spans):
        assert mintime == previous_max, f"gap or overlap at {previous_max} -> {mintime}"


def _claim(windows: WindowStore, task: WindowTask, lease_s: float = LEASE_S) -> Claim:
    claim = windows.claim(task.source, task.window_id, lease_s)
    assert claim is not None
    return claim


def _fetch_all(windows: WindowStore, task: WindowTask, pages: int = 1) -> Claim:
    """Claims the window and checkpoints ``pages`` pages, the last one final: state fetched."""
    claim = _claim(windows, task, 3600)
    for page in range(pages):
        last = page == pages - 1
        saved = windows.checkpoint(claim, None if last else f"offset-{page + 1}", 10, 3600)
        assert saved is not None
        claim = saved
    return claim


def _finish(windows: WindowStore, task: WindowTask, pages: int = 1) -> None:
    """Fetched with every batch marker written: the next sweep makes it done."""
    _fetch_all(windows, task, pages)
    for page in range(pages):
        _land(windows, task, page)


def _land(windows: WindowStore, task: WindowTask, page: int) -> None:
    windows.record_batch(RecordBatch(task.source, task.window_id, page, []), [f"obj-{page}"])


def _fail(windows: WindowStore, task: WindowTask, error: str) -> None:
    """A failure of Duo's own (it backs off: a minute for a first failure)."""
    windows.release(_claim(windows, task), error=error, own=False)


# --- planning ----------------------------------------------------------------------------


def test_plan_on_a_new_source_covers_the_lookback_in_parallel_windows(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    now = now_ms(clock)
    lookback = 6 * HOUR_MS

    tasks = cursors.step(SOURCE, lookback_ms=lookback, parallelism=4).tasks

    assert len(tasks) == 4
    assert all(t.source == SOURCE for t in tasks)
    spans = [(t.mintime, t.maxtime) for t in tasks]
    # Everything up to now - lookback - 1 counts as done; Duo serves up to now - 2 min.
    assert spans[0][0] == now - lookback
    assert spans[-1][1] == now - AVAILABILITY_DELAY_MS
    _assert_contiguous(spans)
    stored = _stored_windows(windows)
    assert [(d["mintime"], d["maxtime"]) for d in stored] == spans
    assert [d["id"] for d in stored] == [t.window_id for t in tasks]
    assert {d["state"] for d in stored} == {PLANNED}
    assert all(d["planned_at_ms"] == now and d["attempts"] == 0 for d in stored)
    cursor = _cursor(cursors)
    assert cursor["planned_until_ms"] == now - AVAILABILITY_DELAY_MS
    assert cursor["watermark_ms"] == now - lookback
    assert "last_error" not in cursor


def test_plan_right_after_plans_nothing_and_later_plans_one_window_onwards(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    first = cursors.step(SOURCE, lookback_ms=6 * HOUR_MS, parallelism=4).tasks
    planned_until = _cursor(cursors)["planned_until_ms"]

    assert cursors.step(SOURCE, lookback_ms=6 * HOUR_MS, parallelism=4).tasks == []
    assert _cursor(cursors)["planned_until_ms"] == planned_until
    assert len(_stored_windows(windows)) == len(first)

    clock.advance(90)
    later = cursors.step(SOURCE, lookback_ms=6 * HOUR_MS, parallelism=4).tasks

    # The whole minute published since; the half minute after it waits for the next run.
    assert later == [WindowTask(SOURCE, planned_until, planned_until + 60_000)]
    assert _cursor(cursors)["planned_until_ms"] == later[0].maxtime
    stored = _stored_windows(windows)
    assert len(stored) == len(first) + 1
    _assert_contiguous([(d["mintime"], d["maxtime"]) for d in stored])


class HeldAfterRead:
    """Wraps ``retention_gap``, which ``CursorStore.step`` calls on every attempt right after
    reading the cursor and before writing anything. Counts each planner thread's
    attempts, and holds the first attempt of each until both have read the cursor: so both
    plan from the same cursor and one commit must conflict."""

    def __init__(self, planners: int) -> None:
        self._both_read = threading.Barrier(planners)
        self._lock = threading.Lock()
        self.attempts: dict[str, int] = {}

    def __call__(self, planned_until: int, now: int) -> tuple[int, int] | None:
        name = threading.current_thread().name
        with self._lock:
            self.attempts[name] = self.attempts.get(name, 0) + 1
            first = self.attempts[name] == 1
        if first:
            self._both_read.wait(timeout=30)
        return retention_gap(planned_until, now)


def test_two_planners_racing_never_plan_overlapping_windows(
    local_cloud: LocalCloud, firestore_db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two planner instances (each its own client and clock: the second a minute later, as a
    scheduler retry over a slow run) plan the same source from the same cursor.

    Without the write's condition on the cursor they would plan overlapping windows. With it
    one commit conflicts and is retried: the retry re-reads the moved cursor and plans only
    what is left.
    """
    start = FakeClock()
    windows = WindowStore(firestore_db, start)
    cursors = CursorStore(firestore_db, windows, start)
    cursors.step(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=3)
    planned_until = _cursor(cursors)["planned_until_ms"]
    held = HeldAfterRead(planners=2)
    monkeypatch.setattr(cursor_store, "retention_gap", held)
    clocks = {"planner-0": FakeClock(start.now() + 600), "planner-1": FakeClock(start.now() + 660)}
    returned: dict[str, list[WindowTask]] = {}
    errors: list[BaseException] = []

    def planner(clock: FakeClock) -> None:
        client = firestore_client(local_cloud.project)  # its own client, like another instance
        try:
            store = CursorStore(client, WindowStore(client, clock), clock)
            returned[threading.current_thread().name] = store.step(
                SOURCE, lookback_ms=3 * HOUR_MS, parallelism=3
            ).tasks
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [
        threading.Thread(target=planner, args=(clock,), name=name, daemon=True)
        for name, clock in clocks.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a planner hung"
    assert errors == [], [repr(e) for e in errors]
    # Both were held after their read, so at least one commit conflicted and was retried.
    assert set(held.attempts) == set(clocks)
    assert sum(held.attempts.values()) > len(clocks), f"no commit conflicted: {held.attempts}"
    assert set(returned) == set(clocks)

    stored = _stored_windows(windows)
    spans = [(d["mintime"], d["maxtime"]) for d in stored]
    assert [d["id"] for d in stored] == [window_id(*span) for span in spans]
    cursor = _cursor(cursors)
    assert spans[0][0] == cursor["watermark_ms"]  # from where the source began
    _assert_contiguous(spans)
    # Up to the later planner's now - 2 min, whichever of them committed first.
    end = now_ms(clocks["planner-1"]) - AVAILABILITY_DELAY_MS
    assert cursor["planned_until_ms"] == end
    raced = [(t.mintime, t.maxtime) for tasks in returned.values() for t in tasks]
    assert all(t.source == SOURCE for tasks in returned.values() for t in tasks)
    # What the planners were told to publish is exactly what was committed, each window once.
    assert sorted(raced) == [span for span in spans if span[0] >= planned_until]
    assert min(raced)[0] == planned_until and max(raced)[1] == end


# --- the watermark -----------------------------------------------------------------------


def _three_windows(cursors: CursorStore) -> list[WindowTask]:
    tasks = cursors.step(SOURCE, lookback_ms=4 * HOUR_MS, parallelism=3).tasks
    assert len(tasks) == 3
    return tasks


def test_watermark_moves_only_over_contiguous_done_windows(
    cursors: CursorStore, windows: WindowStore
) -> None:
    w1, w2, w3 = _three_windows(cursors)
    start = _cursor(cursors)["watermark_ms"]
    assert start == w1.mintime
    assert cursors.advance(SOURCE) == start

    _finish(windows, w2)
    _finish(windows, w3, pages=2)
    assert windows.sweep(SOURCE).completed == 2
    assert _doc(windows, w2)["state"] == DONE
    assert cursors.advance(SOURCE) == start
    assert _cursor(cursors)["watermark_ms"] == start

    _finish(windows, w1)
    assert windows.sweep(SOURCE).completed == 1

    assert cursors.advance(SOURCE) == w3.maxtime
    assert _cursor(cursors)["watermark_ms"] == w3.maxtime


def test_a_failed_window_in_the_middle_stops_the_watermark(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    w1, w2, w3 = _three_windows(cursors)
    _finish(windows, w1)
    _fail(windows, w2, "DuoError: 500")
    _finish(windows, w3)
    assert windows.sweep(SOURCE).completed == 2

    assert cursors.advance(SOURCE) == w1.maxtime
    assert _cursor(cursors)["watermark_ms"] == w1.maxtime

    # Once the failed window is retried (when due) and written, the watermark catches up.
    clock.advance(60)
    _finish(windows, w2)
    assert windows.sweep(SOURCE).completed == 1
    assert cursors.advance(SOURCE) == w3.maxtime


CHECKS = (15 * 60_000, DAY_MS)


def test_a_window_quarantined_behind_the_watermark_is_kept_and_named_by_status(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # Its check found records Duo published late; their re-read never lands and is
    # quarantined. TTL must not delete it: status would go green and the records never land.
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _finish(windows, task)
    assert windows.sweep(SOURCE, CHECKS).completed == 1
    assert cursors.advance(SOURCE) == task.maxtime
    clock.advance(3600)
    assert windows.reopen(SOURCE, task.window_id, 0, windows.read(SOURCE, task.window_id))
    for _ in range(MAX_REREADS + 1):
        _fetch_all(windows, task)
        clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
        windows.sweep(SOURCE, CHECKS)

    doc = _doc(windows, task)
    assert (doc["state"], doc["expire_at"]) == (QUARANTINED, None)
    status = cursors.status(SOURCE)
    assert status["watermark_ms"] == task.maxtime  # behind the watermark
    assert status["windows"][QUARANTINED] == 1
    assert [w["window_id"] for w in status["quarantined"]] == [task.window_id]


def test_a_window_reopened_while_the_watermark_passes_it_is_not_passed(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock, monkeypatch
) -> None:
    # The advance reads the windows before its write; one is reopened in between (a check of
    # a version that checked windows ahead of the watermark). The watermark must not pass it
    # then, nor give it an expiry (the advance reads again).
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _finish(windows, task)
    assert windows.sweep(SOURCE, CHECKS[-1:]).completed == 1
    start = _cursor(cursors)["watermark_ms"]
    clock.advance(DAY_MS / 1000)
    run = cursor_store.watermark_run
    reopened = []

    def reopened_meanwhile(watermark, docs):
        found = run(watermark, docs)
        if not reopened:
            read = windows.read(SOURCE, task.window_id)
            reopened.append(windows.reopen(SOURCE, task.window_id, 0, read))
        return found

    monkeypatch.setattr(cursor_store, "watermark_run", reopened_meanwhile)
    assert cursors.advance(SOURCE) == start
    assert reopened == [True]
    doc = _doc(windows, task)
    assert (doc["state"], doc.get("expire_at"), doc.get("passed_at_ms")) == (PLANNED, None, None)
    assert _cursor(cursors)["watermark_ms"] == start


# --- the sweep ---------------------------------------------------------------------------


def test_sweep_republishes_a_planned_window_nobody_picked_up(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    assert windows.sweep(SOURCE).republish == []

    clock.advance(RESEND_AFTER_MS / 1000 + 1)
    result = windows.sweep(SOURCE)

    assert result.republish == [task]
    assert (result.completed, result.rereads) == (0, 0)
    assert _doc(windows, task)["updated_at_ms"] == now_ms(clock)
    assert _doc(windows, task)["state"] == PLANNED
    # Touched: not sent again on the next sweep, only after another while.
    assert windows.sweep(SOURCE).republish == []
    clock.advance(RESEND_AFTER_MS / 1000 + 1)
    assert windows.sweep(SOURCE).republish == [task]


def test_sweep_republishes_a_fetching_window_whose_lease_expired(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # Issue 8, case 6: with a one-minute lease, a dead fetcher's window is sent again by the
    # first planner run after the minute, not ten minutes later.
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    claim = _claim(windows, task, lease_s=LEASE_S)
    claim = windows.checkpoint(claim, "offset-1", 10, LEASE_S)
    assert claim is not None

    clock.advance(LEASE_S - 1)
    assert windows.sweep(SOURCE).republish == []

    clock.advance(2)
    assert windows.sweep(SOURCE).republish == [task]
    doc = _doc(windows, task)
    assert doc["state"] == FETCHING  # the next fetcher's claim takes it over
    resumed = _claim(windows, task)
    assert (resumed.next_offset, resumed.pages, resumed.attempts) == ("offset-1", 1, 2)


def test_sweep_republishes_a_failed_window_once_its_retry_is_due(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _fail(windows, task, "DuoError: 429")  # a first failure: due in a minute

    assert windows.sweep(SOURCE).republish == []
    clock.advance(59)
    assert windows.sweep(SOURCE).republish == []

    clock.advance(1)
    assert windows.sweep(SOURCE).republish == [task]
    doc = _doc(windows, task)
    assert doc["state"] == PLANNED  # due: claimable again
    assert windows.sweep(SOURCE).republish == []
    assert _claim(windows, task).attempts == 2


def test_sweep_completes_a_fetched_window_once_every_batch_is_written(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _fetch_all(windows, task, pages=2)
    _land(windows, task, 0)

    result = windows.sweep(SOURCE)
    assert (result.completed, result.rereads, result.republish) == (0, 0, [])
    assert _doc(windows, task)["state"] == FETCHED

    _land(windows, task, 1)
    clock.advance(5)
    result = windows.sweep(SOURCE)

    assert (result.completed, result.rereads, result.republish) == (1, 0, [])
    doc = _doc(windows, task)
    assert doc["state"] == DONE
    assert doc["done_at_ms"] == now_ms(clock)
    assert windows.sweep(SOURCE).completed == 0


def test_a_done_window_expires_only_once_the_watermark_has_passed_it(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # Issue 8, case 9: a window deleted by TTL ahead of the watermark would leave a hole the
    # watermark could never cross.
    w1, w2, w3 = _three_windows(cursors)
    _finish(windows, w2)
    assert windows.sweep(SOURCE).completed == 1
    assert _doc(windows, w2)["expire_at"] is None  # w1 is still open: the watermark waits

    _finish(windows, w1)
    windows.sweep(SOURCE)
    clock.advance(5)
    assert cursors.advance(SOURCE) == w2.maxtime
    expected = datetime.fromtimestamp((now_ms(clock) + DONE_RETENTION_MS) / 1000, UTC)
    assert _doc(windows, w1)["expire_at"] == _doc(windows, w2)["expire_at"] == expected
    assert _doc(windows, w3).get("expire_at") is None


def test_a_reread_after_the_landing_timeout_numbers_on_and_counts_only_its_own_batches(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # Issue 8, case 3: page 1 never landed (dead-lettered). The window is read again from its
    # start, its pages numbered from 2 on, so no batch id, and no object name, is reused.
    stale, recent = cursors.step(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=2).tasks
    _fetch_all(windows, stale, pages=2)
    _land(windows, stale, 0)
    clock.advance(LANDING_TIMEOUT_MS / 1000 - 100)
    _fetch_all(windows, recent, pages=1)  # its batch is still on its way
    clock.advance(101)

    result = windows.sweep(SOURCE)

    assert (result.republish, result.rereads, result.completed) == ([stale], 1, 0)
    doc = _doc(windows, stale)
    assert doc["state"] == PLANNED
    assert (doc["next_offset"], doc["pages"], doc["reread_from"], doc["rereads"]) == (
        None,
        2,
        2,
        1,
    )
    assert "missing" in doc["error"]
    left = _doc(windows, recent)
    assert (left["state"], left["pages"]) == (FETCHED, 1)
    again = _claim(windows, stale)
    assert (again.next_offset, again.pages, again.reread_from) == (None, 2, 2)

    # The re-read's one page lands: done, though page 1 of the first read never will.
    again = windows.checkpoint(again, None, 10, LEASE_S)
    assert again is not None
    _land(windows, stale, 2)
    assert windows.sweep(SOURCE).completed == 1
    assert _doc(windows, stale)["state"] == DONE


def test_a_batch_that_never_landed_is_read_again_from_its_neighbours_tokens(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # A fetcher died between page 1's checkpoint and its publish: only that gap is read
    # again, from the token page 0 ended with up to the token page 2 was read from.
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _fetch_all(windows, task, pages=3)
    tokens = [None, "offset-1", "offset-2", None]
    for page in (0, 2):
        batch = RecordBatch(SOURCE, task.window_id, page, [], (tokens[page], tokens[page + 1]))
        windows.record_batch(batch, [f"obj-{page}"])
    assert windows.landed_offsets(SOURCE, task.window_id) == {
        0: (None, "offset-1"),
        2: ("offset-2", None),
    }
    clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)

    assert windows.sweep(SOURCE).rereads == 1

    doc = _doc(windows, task)
    assert "batches 1-1 missing" in doc["error"]
    again = _claim(windows, task)
    assert (again.next_offset, again.read_until, again.pages, again.reread_from) == (
        "offset-1",
        "offset-2",
        3,
        3,
    )


def test_batches_that_never_land_quarantine_the_window_after_a_few_rereads(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    # Issue 8, case 7: not a re-read of the whole window every lease period for ever.
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    for _ in range(MAX_REREADS):
        _fetch_all(windows, task, pages=1)  # its batch never lands
        clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
        assert windows.sweep(SOURCE).rereads == 1
    _fetch_all(windows, task, pages=1)
    clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    result = windows.sweep(SOURCE)
    assert (result.rereads, result.republish) == (0, [])
    doc = _doc(windows, task)
    assert doc["state"] == QUARANTINED
    assert "did not land" in doc["error"]
    assert cursors.status(SOURCE)["quarantined"][0]["window_id"] == task.window_id


# --- Duo's retention ---------------------------------------------------------------------


def test_a_cursor_older_than_duos_retention_records_the_gap_and_plans_inside_it(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1)
    old_planned_until = _cursor(cursors)["planned_until_ms"]
    clock.advance(200 * DAY_MS / 1000)  # the planner was down for 200 days
    now = now_ms(clock)
    assert old_planned_until < now - 199 * DAY_MS

    tasks = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=4).tasks

    cursor = _cursor(cursors)
    gap = cursor["gap_ms"]
    assert gap[0] == old_planned_until
    assert now - RETENTION_MS < gap[1] < now - RETENTION_MS + 2 * HOUR_MS
    assert str(gap[0]) in cursor["last_error"]
    assert str(gap[1]) in cursor["last_error"]
    assert "retention" in cursor["last_error"]
    assert cursor["last_error_at_ms"] == now
    assert cursor["watermark_ms"] == gap[1] + 1
    assert len(tasks) == 4
    assert tasks[0].mintime == gap[1] + 1
    assert tasks[-1].maxtime == now - AVAILABILITY_DELAY_MS == cursor["planned_until_ms"]
    _assert_contiguous([(t.mintime, t.maxtime) for t in tasks])
    new = [d for d in _stored_windows(windows) if d["planned_at_ms"] == now]
    assert len(new) == 4
    assert min(d["mintime"] for d in new) >= now - RETENTION_MS
    assert cursors.status(SOURCE)["gap_ms"] == gap


# --- status ------------------------------------------------------------------------------


def test_status_counts_windows_by_state_and_names_the_newest_failure(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    tasks = cursors.step(SOURCE, lookback_ms=7 * HOUR_MS, parallelism=6).tasks
    assert len(tasks) == 6
    done, fetched, fetching, failed_a, failed_b, _planned = tasks
    _finish(windows, done)
    assert windows.sweep(SOURCE).completed == 1
    _fetch_all(windows, fetched)
    _claim(windows, fetching)
    _fail(windows, failed_a, "first failure")
    clock.advance(10)
    _fail(windows, failed_b, "second failure")

    status = cursors.status(SOURCE)

    assert status["windows"] == {
        PLANNED: 1,
        FETCHING: 1,
        FETCHED: 1,
        DONE: 1,
        FAILED: 2,
        QUARANTINED: 0,
    }
    assert status["exists"] is True
    assert status["source"] == SOURCE
    cursor = _cursor(cursors)
    assert status["planned_until_ms"] == cursor["planned_until_ms"] == tasks[-1].maxtime
    assert status["watermark_ms"] == cursor["watermark_ms"]
    assert status["last_error"] == (
        f"window {failed_b.mintime:013d}-{failed_b.maxtime}: second failure"
    )

    # The earlier window fails again, later: now it is the newest error.
    clock.advance(HOUR_MS / 1000)
    _fail(windows, failed_a, "third failure")
    assert cursors.status(SOURCE)["last_error"] == (
        f"window {failed_a.mintime}-{failed_a.maxtime}: third failure"
    )


def test_status_of_an_unknown_source(cursors: CursorStore) -> None:
    status = cursors.status("nobody")

    assert status["exists"] is False
    assert status["windows"] == {
        PLANNED: 0,
        FETCHING: 0,
        FETCHED: 0,
        DONE: 0,
        FAILED: 0,
        QUARANTINED: 0,
    }
    assert status["last_error"] is None
    assert status["watermark_ms"] is None


def test_the_sweep_leaves_alone_a_window_a_fetcher_moved_on_after_the_sweep_read_it(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock, monkeypatch
) -> None:
    # A failed window falls due; while the sweep holds its old snapshot, a fetcher claims it
    # and fetches it to the end. The sweep's "due again: planned" must not undo that (the
    # window would be read from its start again, landing every record twice).
    (task,) = cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _fail(windows, task, "DuoError: 503")
    clock.advance(60)
    decide = window_rules.sweep_step

    def fetched_meanwhile(doc, now, *args):
        _fetch_all(windows, task, pages=1)
        return decide(doc, now, *args)

    monkeypatch.setattr(window_rules, "sweep_step", fetched_meanwhile)
    assert windows.sweep(SOURCE).republish == []
    assert _doc(windows, task)["state"] == FETCHED


def test_a_quiet_source_waits_for_five_minutes_of_span_until_the_watermark_passes_a_record(
    cursors: CursorStore, windows: WindowStore, clock: FakeClock
) -> None:
    def plan() -> list[WindowTask]:
        return cursors.step(SOURCE, 0, 1, quiet_every_ms=300_000).tasks

    plan()  # the source's cursor made: quiet counts from here
    clock.advance(2 * 3600)
    (quiet,) = plan()
    empty = windows.checkpoint(_claim(windows, quiet), None, 0, LEASE_S)  # done at once
    assert empty is not None and cursors.advance(SOURCE) == quiet.maxtime
    # Where planning started: an empty window does not move it.
    assert _cursor(cursors)[cursor_store.LAST_RECORDS] == quiet.mintime
    lengths = []
    for _ in range(5):
        clock.advance(60)
        lengths += [task.maxtime - task.mintime for task in plan()]
    assert lengths == [300_000]
    held = WindowTask(SOURCE, quiet.maxtime, quiet.maxtime + 300_000)
    _finish(windows, held)
    windows.sweep(SOURCE)
    cursors.advance(SOURCE)
    assert _cursor(cursors)[cursor_store.LAST_RECORDS] == held.maxtime
    clock.advance(60)
    assert [task.maxtime - task.mintime for task in plan()] == [60_000]


@pytest.mark.parametrize(("backfill_records", "live_minutes"), [(0, []), (10, [60_000] * 3)])
def test_a_new_source_whose_backfill_holds_no_record_is_quiet_from_the_start(
    cursors: CursorStore,
    windows: WindowStore,
    clock: FakeClock,
    backfill_records: int,
    live_minutes: list[int],
) -> None:
    """A fleet's accounts are mostly quiet: one added with nothing in its LOOKBACK is read every
    QUIET_READ_EVERY at once, not every minute for its first hour; one with records is busy."""

    def plan() -> list[WindowTask]:
        return cursors.step(SOURCE, 24 * 3600 * 1000, 1, quiet_every_ms=300_000).tasks

    (backfill,) = plan()
    claim = _claim(windows, backfill, 3600)
    assert windows.checkpoint(claim, None, backfill_records, 3600) is not None
    if backfill_records:
        _land(windows, backfill, 0)
    windows.sweep(SOURCE)
    assert cursors.advance(SOURCE) == backfill.maxtime
    lengths = []
    for _ in range(3):
        clock.advance(60)
        lengths += [task.maxtime - task.mintime for task in plan()]
    assert lengths == live_minutes


def test_a_new_source_is_read_every_minute_while_its_backfill_is_read(
    cursors: CursorStore, clock: FakeClock
) -> None:
    """Whether a new account is quiet is known once its backfill is read: until then its live
    windows stay a minute long, to go before the backfill's requests (a backlog of records, read
    at a low rate, takes many minutes)."""

    def plan() -> list[WindowTask]:
        return cursors.step(SOURCE, 24 * 3600 * 1000, 1, quiet_every_ms=300_000).tasks

    (backfill,) = plan()
    assert backfill.maxtime - backfill.mintime > 3_600_000
    lengths = []
    for _ in range(3):
        clock.advance(60)
        lengths += [task.maxtime - task.mintime for task in plan()]
    assert lengths == [60_000] * 3
