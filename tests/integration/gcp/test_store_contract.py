"""One contract, two implementations: each test runs against the unit suite's FakeCursorStore
and FakeWindowStore and against CursorStore and WindowStore on the Firestore emulator, so a
fake cannot drift from the store it stands for. The contract: the watermark's advance over
half-open windows, which window documents expire, which windows are checked for late
records, which landed ids a re-read page leaves out, the tokens of landed batches, which
batches a re-read has superseded, what the sweep does with the batches
a bucket lookup finds (or with a bucket it cannot search), the quarantined windows it counts,
and planning after an outage longer than Duo keeps logs.

Time is a FakeClock: nothing sleeps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core.exceptions import Forbidden

from shared.clock import now_ms
from shared.duo.paging import DuoTotal
from shared.gcp import window_store
from shared.gcp.window_store import BUCKET_PERMISSION
from shared.pipeline.messages import RecordBatch, WindowTask
from shared.pipeline.planning import retention_gap
from shared.pipeline.repair import CHECK_LEVELS, CHECK_RESEND_MS, Checks, Span, checked
from shared.pipeline.windows import (
    DONE,
    FETCHED,
    LANDING_TIMEOUT_MS,
    MAX_REREADS,
    PLANNED,
    QUARANTINED,
    PageOffsets,
    gap,
    gap_times_us,
    read_unclaimed,
)
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeCursorStore, FakeWindowStore, telephony_item

pytestmark = pytest.mark.integration

SOURCE = "acme"
HOUR_MS = 3_600_000
MIN_MS = 60_000
CHECKS = (15 * MIN_MS, 24 * HOUR_MS)
EMPTY = DuoTotal(0)  # Duo's count of a window without records


@dataclass
class Stores:
    cursors: Any
    windows: Any
    clock: FakeClock
    doc: Callable[[WindowTask], dict[str, Any]]
    cursor: Callable[[], dict[str, Any]]  # the source's


def _fake(clock: FakeClock) -> Iterator[Stores]:
    windows = FakeWindowStore(clock, [])
    cursors = FakeCursorStore(windows, clock)
    yield Stores(
        cursors, windows, clock, lambda t: dict(windows.doc(t)), lambda: cursors.cursors[SOURCE]
    )


def _firestore(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Stores]:
    from shared.gcp.cursor_store import CursorStore
    from shared.gcp.window_store import WindowStore

    db = request.getfixturevalue("firestore_db")
    windows = WindowStore(db, clock)

    def doc(task: WindowTask) -> dict[str, Any]:
        return windows.window(task.source, task.window_id).get().to_dict()

    cursors = CursorStore(db, windows, clock)
    yield Stores(cursors, windows, clock, doc, lambda: cursors.cursor(SOURCE).get().to_dict())


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
    """One window, done and passed by the watermark by a run whose late-record checks are
    ``checks``."""
    (task,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _finish(stores, task, checks=checks)
    stores.cursors.step(SOURCE, HOUR_MS, 1, checks=Checks(checks))
    assert stores.cursor()["watermark_ms"] == task.maxtime
    return task


def _reopen(stores: Stores, task: WindowTask, level: int) -> bool:
    """Duo counted otherwise at check ``level``: read again."""
    read = stores.windows.read(SOURCE, task.window_id)
    return stores.windows.reopen(SOURCE, task.window_id, level, read)


def _expiry(stores: Stores, days: int = 30) -> datetime:
    return datetime.fromtimestamp(now_ms(stores.clock) / 1000 + days * 86_400, UTC)


def test_the_watermark_moves_over_contiguous_done_windows_and_stops_at_a_quarantined_one(
    stores: Stores,
) -> None:
    w1, w2, w3 = stores.cursors.step(SOURCE, lookback_ms=4 * HOUR_MS, parallelism=3).tasks
    assert w2.mintime == w1.maxtime and w3.mintime == w2.maxtime  # half-open
    _finish(stores, w1, w3)
    _quarantine_by_rereads(stores, w2)

    assert stores.cursors.advance(SOURCE) == w1.maxtime
    assert stores.cursors.advance(SOURCE) == w1.maxtime
    # The watermark did not pass the quarantined window: it is not given an expiry.
    assert stores.doc(w1)["expire_at"] == _expiry(stores)
    assert stores.doc(w2).get("expire_at") is None
    assert stores.doc(w3).get("expire_at") is None


def test_a_passed_window_expires_thirty_days_after_its_last_check(stores: Stores) -> None:
    task = _passed(stores, CHECKS)
    # Its checks are kept on the cursor: the document only has to outlive the last.
    assert stores.doc(task)["expire_at"] == _expiry(stores, days=31)


def test_a_late_record_reread_behind_the_watermark_that_is_quarantined_does_not_expire(
    stores: Stores,
) -> None:
    task = _passed(stores, CHECKS)
    stores.clock.advance(24 * 3600)
    # Duo counts otherwise at the last check: the window is read again, behind the watermark.
    assert _reopen(stores, task, 1) is True
    assert (stores.doc(task)["state"], stores.doc(task)["expire_at"]) == (PLANNED, None)
    assert stores.doc(task)["repairs"] == 1

    _quarantine_by_rereads(stores, task)
    assert stores.doc(task)["expire_at"] is None
    assert stores.cursors.advance(SOURCE) == task.maxtime


def test_a_reread_behind_the_watermark_expires_again_once_done(stores: Stores) -> None:
    task = _passed(stores, CHECKS[:1])
    stores.clock.advance(3600)
    assert _reopen(stores, task, 0) is True
    assert stores.doc(task)["expire_at"] is None
    # Being read again already: a second delivery of the check reopens nothing.
    assert _reopen(stores, task, 0) is False

    stores.clock.advance(60)
    _finish(stores, task, checks=CHECKS[:1])
    assert stores.doc(task)["state"] == DONE
    assert stores.doc(task)["expire_at"] == _expiry(stores, days=30) + timedelta(minutes=15)


def test_a_check_reads_the_windows_starting_in_its_span_by_mintime_up_to_its_size(
    stores: Stores,
) -> None:
    first, second, third = stores.cursors.step(SOURCE, lookback_ms=4 * HOUR_MS, parallelism=3).tasks
    span = Span(0, first.mintime, third.mintime)  # the third starts where the span ends
    found = stores.windows.span_windows(SOURCE, span, limit=10)
    assert [window_id for window_id, _ in found] == [first.window_id, second.window_id]
    assert [read.doc["mintime"] for _, read in found] == [first.mintime, second.mintime]
    assert [w for w, _ in stores.windows.span_windows(SOURCE, span, limit=1)] == [first.window_id]
    assert stores.windows.span_windows(SOURCE, Span(0, 0, first.mintime), limit=10) == []


def test_a_reread_page_leaves_out_the_ids_of_landed_batches_its_time_span_overlaps(
    stores: Stores,
) -> None:
    (task,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    at = task.mintime
    # Page 0 holds records at +1 s and +2 s, page 1 at +5 s, page 2 none; another window too.
    landed = {0: [("a", at + 1000), ("b", at + 2000)], 1: [("c", at + 5000)], 2: []}
    for page, records in landed.items():
        items = [telephony_item(telephony_id, ms) for telephony_id, ms in records]
        stores.windows.record_batch(RecordBatch(SOURCE, task.window_id, page, items), ["obj"])
    other = RecordBatch(SOURCE, "other-window", 0, [telephony_item("z", at + 2000)])
    stores.windows.record_batch(other, ["obj"])

    spans = stores.windows.landed_spans(SOURCE, task.window_id)

    def us(ms: int) -> int:
        return (at + ms) * 1000

    assert spans.ids(us(2000), us(5000)) == {"a", "b", "c"}  # both ends count
    assert spans.ids(us(2000) + 1, us(5000) - 1) == set()  # between the batches' spans
    assert spans.ids(us(0), us(1000) - 1) == set()  # before the first record
    assert spans.ids(us(1500), us(1500)) == {"a", "b"}  # inside a batch's span
    assert spans.ids(us(5000) + 1, us(9000)) == set()


@dataclass(frozen=True)
class InBucket:
    """An object the bucket lookup finds under a batch's name, as UnmarkedBatches' FoundBatch."""

    page: int
    name: str
    offsets: PageOffsets | None
    items: list[dict[str, Any]]

    def records(self) -> list[dict[str, Any]]:
        return self.items


def _landing_timed_out(stores: Stores) -> WindowTask:
    """One window read in one page whose batch has not landed by the landing timeout."""
    (task,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    _fetch(stores, task)
    stores.clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    return task


def test_a_batch_found_in_the_bucket_without_its_marker_is_marked_and_its_window_done(
    stores: Stores,
) -> None:
    task = _landing_timed_out(stores)
    doc = stores.doc(task)
    asked = []

    def unmarked(source: str, window_id: str, pages: Any, first_us: int, last_us: int) -> Any:
        asked.append((source, window_id, set(pages), (first_us, last_us)))
        # Its tokens are its page's: the read's first page, which ended it.
        return [InBucket(0, "obj", (None, None), [telephony_item("a", task.mintime + 1000)])]

    swept = stores.windows.sweep(SOURCE, unmarked=unmarked)

    assert asked == [(SOURCE, task.window_id, {0}, gap_times_us(doc, gap(doc, {})))]
    assert (swept.completed, swept.rereads, swept.bucket_waits, swept.republish) == (1, 0, 0, [])
    assert stores.doc(task)["state"] == DONE
    assert stores.windows.landed_records(SOURCE, task.window_id) == 1
    assert stores.windows.landed_spans(SOURCE, task.window_id).ids(0, 2**62) == {"a"}


def test_an_object_in_the_bucket_whose_tokens_are_not_its_pages_is_left_and_the_page_read_again(
    stores: Stores,
) -> None:
    task = _landing_timed_out(stores)

    def unmarked(source: str, window_id: str, pages: Any, first_us: int, last_us: int) -> Any:
        return [InBucket(0, "obj", ("1,x", "2,y"), [telephony_item("a", task.mintime + 1000)])]

    swept = stores.windows.sweep(SOURCE, unmarked=unmarked)

    assert (swept.completed, swept.rereads, swept.republish) == (0, 1, [task])
    assert stores.doc(task)["state"] == PLANNED
    assert stores.windows.landed_records(SOURCE, task.window_id) == 0


def test_a_bucket_that_cannot_be_searched_counts_a_wait_and_the_window_waits(
    stores: Stores,
) -> None:
    task = _landing_timed_out(stores)

    def refused(source: str, window_id: str, pages: Any, first_us: int, last_us: int) -> Any:
        raise Forbidden("storage.objects.list denied")

    for waits in (1, 2):
        swept = stores.windows.sweep(SOURCE, unmarked=refused)
        assert (swept.bucket_waits, swept.completed, swept.rereads) == (1, 0, 0)
        doc = stores.doc(task)
        assert (doc["state"], doc["bucket_waits"]) == (FETCHED, waits)
        assert "storage.objects.list denied" in doc["error"] and BUCKET_PERMISSION in doc["error"]

    # Searched at last and nothing there: the page is read again, and the wait is over.
    swept = stores.windows.sweep(SOURCE, unmarked=lambda *_: [])
    assert (swept.bucket_waits, swept.rereads) == (0, 1)
    assert stores.doc(task)["bucket_waits"] == 0


def test_after_an_outage_longer_than_duos_retention_planning_goes_on_from_what_duo_still_has(
    stores: Stores,
) -> None:
    (before,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    stores.clock.advance(200 * 86_400)
    gap = retention_gap(before.maxtime, now_ms(stores.clock))
    assert gap is not None and gap[0] == before.maxtime

    (after,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks

    assert after.mintime == gap[1] + 1
    cursor = stores.cursor()
    assert cursor["gap_ms"] == list(gap)
    assert "180-day retention" in cursor["last_error"]
    # The watermark goes on past what Duo no longer has, to the first window it still has.
    assert cursor["watermark_ms"] == after.mintime
    assert stores.cursors.advance(SOURCE) == after.mintime


def test_landed_offsets_give_each_landed_batchs_tokens_or_none_when_its_marker_has_none(
    stores: Stores,
) -> None:
    (task,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    wid = task.window_id
    stores.windows.record_batch(RecordBatch(SOURCE, wid, 0, [], (None, "1,a")), ["o0"])
    stores.windows.record_batch(RecordBatch(SOURCE, wid, 1, []), ["o1"])  # a version 1 batch
    stores.windows.record_batch(RecordBatch(SOURCE, wid, 2, [], ("2,b", None)), ["o2"])

    assert stores.windows.landed_offsets(SOURCE, wid) == {
        0: (None, "1,a"),
        1: None,
        2: ("2,b", None),
    }
    assert stores.windows.landed_offsets(SOURCE, wid, 2) == {2: ("2,b", None)}


def test_a_batch_of_a_read_a_reread_replaced_is_superseded_the_rereads_own_are_not(
    stores: Stores,
) -> None:
    task = _landing_timed_out(stores)
    first = RecordBatch(SOURCE, task.window_id, 0, [])
    assert not stores.windows.superseded(first)

    assert stores.windows.sweep(SOURCE).rereads == 1  # its batch never landed: read again

    assert stores.doc(task)["reread_from"] == 1
    assert stores.windows.superseded(first)
    assert not stores.windows.superseded(RecordBatch(SOURCE, task.window_id, 1, []))
    assert not stores.windows.superseded(RecordBatch(SOURCE, "1799996400000-1799996460000", 0, []))


def test_an_empty_read_is_done_at_its_checkpoint_checked_and_passed_and_a_quiet_source_waits(
    stores: Stores,
) -> None:
    (task,) = stores.cursors.step(SOURCE, lookback_ms=HOUR_MS, parallelism=1).tasks
    claim = stores.windows.claim(task.source, task.window_id, 3600)
    assert claim is not None
    assert stores.windows.checkpoint(claim, None, 0, 3600, checks=CHECKS) is not None
    doc = stores.doc(task)
    assert (doc["state"], doc["pages"]) == (DONE, 0)
    assert stores.cursors.advance(SOURCE) == task.maxtime  # no batch, no sweep needed
    # No window held a record since the cursor was made, over an hour ago: a window waits for
    # five minutes of span.
    stores.clock.advance(2 * 3600)

    def plan() -> list[WindowTask]:
        return stores.cursors.step(SOURCE, HOUR_MS, 1, quiet_every_ms=5 * MIN_MS).tasks

    (behind,) = plan()  # the two hours since: read first, a source catching up is not quiet
    claim = stores.windows.claim(behind.source, behind.window_id, 3600)
    assert claim is not None
    assert stores.windows.checkpoint(claim, None, 0, 3600, checks=CHECKS) is not None
    assert stores.cursors.advance(SOURCE) == behind.maxtime
    stores.clock.advance(60)
    assert plan() == []
    stores.clock.advance(4 * 60)
    assert [t.maxtime - t.mintime for t in plan()] == [5 * MIN_MS]


def test_the_sweep_counts_the_windows_it_leaves_open_and_the_step_returns_the_cursor(
    stores: Stores,
) -> None:
    # What the planner decides whether a source may sleep by (shared.pipeline.wake).
    assert stores.cursors.advance(SOURCE) == 0  # no cursor yet, and none made
    first, second = stores.cursors.step(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=2).tasks
    _fetch(stores, first)
    _land(stores, first)
    swept = stores.windows.sweep(SOURCE)
    assert (swept.completed, swept.open_windows) == (1, 1)  # the second never read
    _finish(stores, second)
    assert stores.windows.sweep(SOURCE).open_windows == 0
    step = stores.cursors.step(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=2)
    assert step.tasks == []  # the next minute is not available yet
    for cursor in (step.cursor, stores.cursor()):  # as the step left it, and as stored
        assert cursor["watermark_ms"] == cursor["planned_until_ms"] == second.maxtime


def test_the_sweep_counts_the_quarantined_windows_and_leaves_them_as_they_are(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner logs the count every run, and an alert fires on it (deploy/monitoring).
    tasks = stores.cursors.step(SOURCE, lookback_ms=6 * HOUR_MS, parallelism=6).tasks
    stopped, waiting = tasks[:3], tasks[3:]
    for task in stopped:
        _quarantine_by_rereads(stores, task)
    before = [stores.doc(task) for task in stopped]
    swept = stores.windows.sweep(SOURCE)
    assert (swept.quarantined, swept.open_windows) == (len(stopped), len(waiting))
    assert [stores.doc(task) for task in stopped] == before  # not swept
    # More of them than a page of the store's query: all counted, every open window swept.
    monkeypatch.setattr(window_store, "SWEEP_PAGE", 2)
    swept = stores.windows.sweep(SOURCE)
    assert (swept.quarantined, swept.open_windows) == (len(stopped), len(waiting))


def test_a_window_read_before_any_claim_is_done_or_claimed_on_that_read_only_if_unwritten_since(
    stores: Stores,
) -> None:
    # The fetch of a window never claimed: its first page read unclaimed, then one write made
    # on what was read (shared.pipeline.windows.read_unclaimed).
    quiet, busy = stores.cursors.step(SOURCE, lookback_ms=3 * HOUR_MS, parallelism=2).tasks
    read = stores.windows.read(SOURCE, quiet.window_id)
    assert read is not None and read_unclaimed(read.doc)
    assert stores.windows.done_unread(SOURCE, quiet.window_id, read, total=EMPTY, checks=CHECKS)
    doc = stores.doc(quiet)
    assert (doc["state"], doc["attempts"], doc["lease_owner"], doc["pages"]) == (DONE, 1, None, 0)
    # Its read's progress, as a claim and a checkpoint of the page left it: Duo counted none.
    assert (doc["read_records"], doc["duo_total"], doc["duo_total_exact"]) == (0, 0, True)
    assert stores.windows.read(SOURCE, quiet.window_id).doc == doc
    # Done once: a second fetch's write on the same read fails, and so does its claim.
    assert not stores.windows.done_unread(SOURCE, quiet.window_id, read, checks=CHECKS)
    assert stores.windows.claim(SOURCE, quiet.window_id, 3600, read) is None
    assert stores.doc(quiet) == doc

    read = stores.windows.read(SOURCE, busy.window_id)
    first = stores.windows.claim(SOURCE, busy.window_id, 3600, read)
    assert first is not None and stores.doc(busy)["lease_owner"] == first.owner
    # Claimed by another fetch since: neither a claim nor a done on that read takes it.
    assert stores.windows.claim(SOURCE, busy.window_id, 3600, read) is None
    assert not stores.windows.done_unread(SOURCE, busy.window_id, read)
    assert stores.doc(busy)["lease_owner"] == first.owner
    assert stores.windows.read(SOURCE, "no-such-window") is None


def test_a_check_moves_its_level_on_from_its_read_or_as_it_is_now_when_written_since(
    stores: Stores,
) -> None:
    (task,) = stores.cursors.step(SOURCE, HOUR_MS, 1, checks=Checks(CHECKS)).tasks
    assert stores.windows.check_levels("no-such-source") is None
    read = stores.windows.check_levels(SOURCE)
    assert read is not None
    span = Span(0, task.mintime, task.maxtime)
    done = functools.partial(checked, span=span, until=task.maxtime)
    # A planner run writes the cursor between the check's read and its write: moved on all
    # the same, from the cursor as it is now.
    _finish(stores, task)
    stores.cursors.advance(SOURCE)
    assert stores.windows.move_level(SOURCE, done, read) is True
    levels = stores.cursor()[CHECK_LEVELS]
    assert levels[0] == {"until_ms": task.maxtime, "spans": 1}
    assert levels[1] == {"until_ms": task.mintime}
    assert stores.cursor()["watermark_ms"] == task.maxtime  # the planner's write kept
    # A second delivery of that check, on the same read, changes nothing.
    assert stores.windows.move_level(SOURCE, done, read) is False
    assert stores.cursor()[CHECK_LEVELS] == levels


def test_a_run_sends_each_due_span_once_in_its_cursor_write_and_again_only_after_its_resend(
    stores: Stores,
) -> None:
    def sent() -> list[Span]:
        step = stores.cursors.step(SOURCE, HOUR_MS, 1, checks=Checks(CHECKS[:1]))
        _finish(stores, *step.tasks)
        return step.checks

    (first,) = stores.cursors.step(SOURCE, HOUR_MS, 1, checks=Checks(CHECKS[:1])).tasks
    _finish(stores, first)
    stores.clock.advance(60)
    # Its first part waited the batch past its check (an hour's backfill): what is due goes.
    assert sent() == [Span(0, first.mintime, now_ms(stores.clock) - CHECKS[0])]
    again_at = now_ms(stores.clock) + CHECK_RESEND_MS
    assert stores.cursor()[CHECK_LEVELS][0] == {"until_ms": first.mintime, "again_at_ms": again_at}
    stores.clock.advance(CHECK_RESEND_MS / 1000 - 60)
    assert sent() == []  # in flight
    stores.clock.advance(60)
    assert [span.mintime for span in sent()] == [first.mintime]  # never came back: again
