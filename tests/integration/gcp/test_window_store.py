"""WindowStore against the Firestore emulator: leases, checkpoints, release and batch markers.

Time is a FakeClock: a lease "expires" because the clock is advanced, never by sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from shared.clock import now_ms
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import window_id
from shared.pipeline.windows import (
    DONE_RETENTION_MS,
    FAILED,
    FETCHED,
    FETCHING,
    PLANNED,
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

    # The first owner comes back from a pause: it may neither save progress nor give back.
    assert store.checkpoint(first, "offset-1", 10, LEASE_S) is None
    store.release(first)
    store.release(first, error="boom", retry_at_ms=now_ms(clock) + 5_000)
    assert _doc(store) == taken
    assert taken["state"] == FETCHING
    assert taken["lease_owner"] == second.owner
    assert taken["pages"] == 0
    assert taken["next_offset"] is None


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
    retry_at = now_ms(clock) + 30_000

    store.release(claim, error="DuoError: 503 from Duo", retry_at_ms=retry_at)

    doc = _doc(store)
    assert doc["state"] == FAILED
    assert doc["error"] == "DuoError: 503 from Duo"
    assert doc["retry_at_ms"] == retry_at
    assert doc["lease_owner"] is None
    assert doc["lease_until_ms"] == 0
    # A failed window can be claimed again (the sweep decides when to send it).
    again = store.claim(SOURCE, WID, LEASE_S)
    assert again is not None
    assert again.attempts == 2


def test_unknown_window_is_never_claimed(store: WindowStore) -> None:
    unknown = window_id(MINTIME - 3_600_000, MINTIME - 1)

    assert store.claim(SOURCE, unknown, LEASE_S) is None
    assert store.claim("other-source", WID, LEASE_S) is None
    assert not store.window(SOURCE, unknown).get().exists
    ghost = Claim(SOURCE, unknown, "someone", MINTIME - 3_600_000, MINTIME - 1, None, 0, 0, 1)
    assert store.checkpoint(ghost, "offset-1", 5, LEASE_S) is None
    store.release(ghost, error="boom")
    assert not store.window(SOURCE, unknown).get().exists


def test_record_batch_is_idempotent(store: WindowStore, clock: FakeClock) -> None:
    assert store.written_batches(SOURCE, WID) == 0
    assert not store.batch_landed(SOURCE, WID, 0)

    store.record_batch(SOURCE, WID, 0, 1000, ["a/0.ndjson"])
    first_written_at = now_ms(clock)
    clock.advance(5)
    store.record_batch(SOURCE, WID, 0, 999, ["other.ndjson"])

    assert store.written_batches(SOURCE, WID) == 1
    markers = list(store.window(SOURCE, WID).collection("batches").stream())
    assert [m.id for m in markers] == ["00000"]
    assert markers[0].to_dict() == {
        "records": 1000,
        "objects": ["a/0.ndjson"],
        "written_at_ms": first_written_at,
        # Markers expire like finished windows (a Firestore TTL policy on expire_at).
        "expire_at": datetime.fromtimestamp((first_written_at + DONE_RETENTION_MS) / 1000, UTC),
    }

    store.record_batch(SOURCE, WID, 1, 17, ["a/1.ndjson", "b/1.ndjson"])
    assert store.written_batches(SOURCE, WID) == 2


def test_batch_landed_reports_each_page(store: WindowStore) -> None:
    store.record_batch(SOURCE, WID, 3, 10, ["a/3.ndjson"])

    assert store.batch_landed(SOURCE, WID, 3)
    assert not store.batch_landed(SOURCE, WID, 2)
    assert not store.batch_landed(SOURCE, WID, 4)
    other = window_id(MAXTIME + 1, MAXTIME + 3_600_000)
    assert not store.batch_landed(SOURCE, other, 3)
