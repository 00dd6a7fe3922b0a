"""WindowStore against the Firestore emulator: leases, checkpoints, release and batch markers.

Time is a FakeClock: a lease "expires" because the clock is advanced, never by sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from shared.clock import now_ms
from shared.gcp.operations import FIRESTORE_READS, OPERATIONS
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import window_id
from shared.pipeline.messages import RecordBatch
from shared.pipeline.windows import (
    FAILED,
    FETCHED,
    FETCHING,
    MARKER_RETENTION_MS,
    MAX_FAILURES,
    PLANNED,
    QUARANTINED,
    Claim,
    new_window,
)
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

SOURCE = "acme"
LEASE_S = 60.0
MINTIME = 1_799_990_000_000
MAXTIME = 1_799_993_599_999
WID = window_id(MINTIME, MAXTIME)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(firestore_db: firestore.Client, clock: FakeClock) -> WindowStore:
    """A store with one planned window, ``WID``, for SOURCE."""
    windows = WindowStore(firestore_db, clock)
    windows.window(SOURCE, WID).create(new_window(MINTIME, MAXTIME, now_ms(clock)))
    return windows


def _batch(page: int, *seconds: int) -> RecordBatch:
    """A batch of the window whose records are ``seconds`` after MINTIME, id ``r<second>``."""
    records = [
        {
            "telephony_id": f"r{s}",
            "ts": datetime.fromtimestamp(MINTIME / 1000 + s, UTC).isoformat(
                timespec="microseconds"
            ),
        }
        for s in seconds
    ]
    return RecordBatch(SOURCE, WID, page, records)


def _doc(store: WindowStore, wid: str = WID) -> dict[str, Any]:
    snapshot = store.window(SOURCE, wid).get()
    assert snapshot.exists
    return snapshot.to_dict()


def test_claim_of_a_planned_window_takes_the_lease(store: WindowStore, clock: FakeClock) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)

    assert claim == Claim(
        SOURCE, WID, claim.owner, MINTIME, MAXTIME, next_offset=None, pages=0, records=0, attempts=1
    )
    doc = _doc(store)
    assert doc["state"] == FETCHING
    assert doc["lease_owner"] == claim.owner
    assert doc["lease_until_ms"] == now_ms(clock) + int(LEASE_S * 1000)
    assert doc["attempts"] == 1


def test_second_claim_while_the_lease_holds_gets_none(store: WindowStore, clock: FakeClock) -> None:
    first = store.claim(SOURCE, WID, LEASE_S)
    assert first is not None
    clock.advance(LEASE_S - 1)

    assert store.claim(SOURCE, WID, LEASE_S) is None
    assert _doc(store)["lease_owner"] == first.owner
    assert _doc(store)["attempts"] == 1


def test_after_the_lease_expires_another_claim_wins_and_the_first_owner_is_refused(
    store: WindowStore, clock: FakeClock
) -> None:
    first = store.claim(SOURCE, WID, LEASE_S)
    assert first is not None
    clock.advance(LEASE_S + 1)

    second = store.claim(SOURCE, WID, LEASE_S)
    assert second is not None
    assert second.owner != first.owner
    assert second.attempts == 2
    taken = _doc(store)

    # The first owner comes back from a pause: it may neither save progress, renew nor give
    # back.
    assert store.checkpoint(first, "offset-1", 10, LEASE_S) is None
    assert store.renew(first, LEASE_S) is False
    store.release(first)
    store.release(first, error="boom")
    assert _doc(store) == taken
    assert taken["state"] == FETCHING
    assert taken["lease_owner"] == second.owner
    assert taken["pages"] == 0
    assert taken["next_offset"] is None
    # Its lease ran out without a page saved: that fetcher died, a real failure.
    assert taken["failures"] == 1


def test_checkpoint_saves_progress_and_renews_the_lease(
    store: WindowStore, clock: FakeClock
) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None
    clock.advance(LEASE_S - 10)

    saved = store.checkpoint(claim, "offset-1", 1000, LEASE_S)
    assert saved is not None
    assert (saved.next_offset, saved.pages, saved.records) == ("offset-1", 1, 1000)
    saved = store.checkpoint(saved, "offset-2", 250, LEASE_S)
    assert saved is not None
    assert (saved.next_offset, saved.pages, saved.records) == ("offset-2", 2, 1250)
    assert saved.owner == claim.owner

    doc = _doc(store)
    assert doc["state"] == FETCHING
    assert (doc["next_offset"], doc["pages"], doc["records"]) == ("offset-2", 2, 1250)
    assert doc["lease_until_ms"] == now_ms(clock) + int(LEASE_S * 1000)
    # Past the first lease's end, but within the renewed one: nobody else can take it.
    clock.advance(20)
    assert store.claim(SOURCE, WID, LEASE_S) is None


def test_final_checkpoint_marks_the_window_fetched_and_it_is_never_claimed_again(
    store: WindowStore, clock: FakeClock
) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None
    claim = store.checkpoint(claim, "offset-1", 1000, LEASE_S)
    assert claim is not None

    final = store.checkpoint(claim, None, 7, LEASE_S)

    assert final is not None
    assert (final.next_offset, final.pages, final.records) == (None, 2, 1007)
    doc = _doc(store)
    assert doc["state"] == FETCHED
    assert doc["fetched_at_ms"] == now_ms(clock)
    assert doc["lease_owner"] is None
    assert (doc["pages"], doc["records"]) == (2, 1007)
    assert store.claim(SOURCE, WID, LEASE_S) is None
    clock.advance(10 * LEASE_S)
    assert store.claim(SOURCE, WID, LEASE_S) is None
    assert _doc(store)["state"] == FETCHED


def test_release_without_error_hands_the_window_on(store: WindowStore, clock: FakeClock) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None
    claim = store.checkpoint(claim, "offset-1", 1000, LEASE_S)
    assert claim is not None

    store.release(claim)

    doc = _doc(store)
    assert doc["state"] == PLANNED
    assert doc["lease_owner"] is None
    assert doc["lease_until_ms"] == 0
    assert doc["error"] is None
    # The next fetcher takes it at once and resumes where the first one stopped.
    resumed = store.claim(SOURCE, WID, LEASE_S)
    assert resumed is not None
    assert (resumed.next_offset, resumed.pages, resumed.records) == ("offset-1", 1, 1000)
    assert resumed.attempts == 2


def test_release_with_error_marks_the_window_failed(store: WindowStore, clock: FakeClock) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None

    store.release(claim, error="DuoError: 503 from Duo", own=False)

    doc = _doc(store)
    assert doc["state"] == FAILED
    assert doc["error"] == "DuoError: 503 from Duo"
    assert doc["retry_at_ms"] == now_ms(clock) + 60_000  # the first failure waits a minute
    assert (doc["failures"], doc["shared_failures"]) == (0, 1)  # Duo's 5xx is not the window's
    assert doc["lease_owner"] is None
    assert doc["lease_until_ms"] == 0
    # Not before it is due, then claimable again.
    assert store.claim(SOURCE, WID, LEASE_S) is None
    clock.advance(60)
    again = store.claim(SOURCE, WID, LEASE_S)
    assert again is not None
    assert again.attempts == 2


def test_a_renewed_lease_outlasts_its_first_term(store: WindowStore, clock: FakeClock) -> None:
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None
    for _ in range(5):
        clock.advance(LEASE_S / 3)
        assert store.renew(claim, LEASE_S) is True
    # Well past the first lease: still held, because its fetcher is alive and renewing.
    assert store.claim(SOURCE, WID, LEASE_S) is None
    assert _doc(store)["lease_until_ms"] == now_ms(clock) + int(LEASE_S * 1000)


def test_hand_offs_are_not_failures(store: WindowStore, clock: FakeClock) -> None:
    # Issue 8, case 5: a long window is handed on every few minutes; that is routine.
    for page in range(MAX_FAILURES + 2):
        claim = store.claim(SOURCE, WID, LEASE_S)
        assert claim is not None
        claim = store.checkpoint(claim, f"offset-{page + 1}", 1000, LEASE_S)
        assert claim is not None
        store.release(claim)
    doc = _doc(store)
    assert (doc["state"], doc["failures"], doc["attempts"]) == (PLANNED, 0, MAX_FAILURES + 2)
    # Its first real failure then waits a minute, not an hour.
    claim = store.claim(SOURCE, WID, LEASE_S)
    assert claim is not None
    store.release(claim, error="DuoError: 503", own=False)
    assert _doc(store)["retry_at_ms"] == now_ms(clock) + 60_000


def test_a_window_failing_for_its_own_reasons_is_quarantined_then_put_back(
    store: WindowStore, clock: FakeClock
) -> None:
    # Issue 8, case 7: a poison window ends instead of being retried for ever.
    for _ in range(MAX_FAILURES):
        clock.advance(3600)
        claim = store.claim(SOURCE, WID, LEASE_S)
        assert claim is not None
        store.release(claim, error="DuoProtocolError: an item without an id")
    doc = _doc(store)
    assert (doc["state"], doc["failures"]) == (QUARANTINED, MAX_FAILURES)
    assert doc["error"] == "DuoProtocolError: an item without an id"
    clock.advance(10 * 3600)
    assert store.claim(SOURCE, WID, LEASE_S) is None  # nobody takes it up again...

    assert store.requeue(SOURCE, WID) is True  # ...until an operator puts it back
    doc = _doc(store)
    assert (doc["state"], doc["failures"], doc["updated_at_ms"]) == (PLANNED, 0, 0)
    assert store.claim(SOURCE, WID, LEASE_S) is not None
    assert store.requeue(SOURCE, WID) is False  # only a stopped window is put back


def test_account_wide_trouble_only_backs_off(store: WindowStore, clock: FakeClock) -> None:
    for _ in range(MAX_FAILURES + 2):
        clock.advance(3600)
        claim = store.claim(SOURCE, WID, LEASE_S)
        assert claim is not None
        store.release(claim, error="DuoRateLimitedError: 429", own=False)
    assert _doc(store)["state"] == FAILED


def test_a_fetcher_dying_on_the_same_page_again_and_again_quarantines_the_window(
    store: WindowStore, clock: FakeClock
) -> None:
    for _ in range(MAX_FAILURES):
        assert store.claim(SOURCE, WID, LEASE_S) is not None
        clock.advance(LEASE_S + 1)  # it died: the lease runs out
    assert store.claim(SOURCE, WID, LEASE_S) is None
    assert _doc(store)["state"] == QUARANTINED


def test_unknown_window_is_never_claimed(store: WindowStore) -> None:
    unknown = window_id(MINTIME - 3_600_000, MINTIME - 1)

    assert store.claim(SOURCE, unknown, LEASE_S) is None
    assert store.claim("other-source", WID, LEASE_S) is None
    assert not store.window(SOURCE, unknown).get().exists
    ghost = Claim(SOURCE, unknown, "someone", MINTIME - 3_600_000, MINTIME - 1, None, 0, 0, 1)
    assert store.checkpoint(ghost, "offset-1", 5, LEASE_S) is None
    store.release(ghost, error="boom")
    assert store.renew(ghost, LEASE_S) is False
    assert store.requeue(SOURCE, unknown) is False
    assert not store.window(SOURCE, unknown).get().exists


def test_record_batch_is_idempotent(store: WindowStore, clock: FakeClock) -> None:
    assert store.landed_batches(SOURCE, WID) == 0
    assert not store.batch_landed(SOURCE, WID, 0)

    store.record_batch(_batch(0, 1, 2), ["a/0.ndjson"])
    first_written_at = now_ms(clock)
    clock.advance(5)
    store.record_batch(_batch(0, 3), ["other.ndjson"])

    assert store.landed_batches(SOURCE, WID) == 1
    markers = list(store.window(SOURCE, WID).collection("batches").stream())
    assert [m.id for m in markers] == ["00000"]
    assert markers[0].to_dict() == {
        "page": 0,
        "records": 2,
        "objects": ["a/0.ndjson"],
        "ids": ["r1", "r2"],
        "first_us": (MINTIME + 1000) * 1000,
        "last_us": (MINTIME + 2000) * 1000,
        "written_at_ms": first_written_at,
        # Markers expire like finished windows (a Firestore TTL policy on expire_at).
        "expire_at": datetime.fromtimestamp((first_written_at + MARKER_RETENTION_MS) / 1000, UTC),
    }

    store.record_batch(_batch(1, 4), ["a/1.ndjson", "b/1.ndjson"])
    assert store.landed_batches(SOURCE, WID) == 2
    assert store.landed_batches(SOURCE, WID, from_page=1) == 1


def test_landed_ids_come_from_overlapping_batches_their_spans_read_once(
    store: WindowStore,
) -> None:
    store.record_batch(_batch(0, 1, 2, 3), [])
    store.record_batch(_batch(1, 10, 11), [])
    store.record_batch(_batch(2), [])  # an empty batch has no span
    second = lambda s: (MINTIME + 1000 * s) * 1000  # noqa: E731

    def reads_of(step: Any) -> tuple[Any, int]:
        before = OPERATIONS.snapshot().get(FIRESTORE_READS, 0)
        done = step()
        return done, OPERATIONS.snapshot().get(FIRESTORE_READS, 0) - before

    landed, reads = reads_of(lambda: store.landed_spans(SOURCE, WID))
    assert reads == 3  # one per marker, once for the whole re-read
    # The empty batch holds no ids: its marker is never read again.
    assert reads_of(lambda: landed.ids(0, second(3600))) == (
        {"r1", "r2", "r3", "r10", "r11"},
        2,
    )
    # Each page then reads only the markers its records' span overlaps.
    assert reads_of(lambda: landed.ids(second(3), second(10))) == (
        {"r1", "r2", "r3", "r10", "r11"},
        2,
    )
    none, reads = reads_of(lambda: landed.ids(second(4), second(9)))
    assert (none, reads) == (set(), 0)  # no marker overlaps: nothing read
    assert reads_of(lambda: landed.ids(second(11), second(50))) == ({"r10", "r11"}, 1)


def test_batch_landed_reports_each_page(store: WindowStore) -> None:
    store.record_batch(_batch(3, 1), ["a/3.ndjson"])

    assert store.batch_landed(SOURCE, WID, 3)
    assert not store.batch_landed(SOURCE, WID, 2)
    assert not store.batch_landed(SOURCE, WID, 4)
    other = window_id(MAXTIME + 1, MAXTIME + 3_600_000)
    assert not store.batch_landed(SOURCE, other, 3)
