"""A batch whose object landed but whose marker was never written (Firestore down through
every redelivery, then dead-lettered): the planner's sweep finds it in the bucket and marks
it, instead of reading its records again and landing them twice. Against the Firestore
emulator and fake-gcs-server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import Forbidden
from google.cloud import firestore, storage

from shared.clock import now_ms, utc_from_us
from shared.gcp.bucket_writer import write_batch
from shared.gcp.cursor_store import CursorStore
from shared.gcp.unmarked_batches import UnmarkedBatches
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import window_id
from shared.pipeline.messages import RecordBatch
from shared.pipeline.windows import (
    BUCKET_WAITS_ALERT,
    DONE,
    FETCHED,
    LANDING_TIMEOUT_MS,
    PLANNED,
    new_window,
)
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

SOURCE = "acme"
PREFIX = "duo-telephony"
NOW = now_ms(FakeClock())
MINTIME = NOW - 7_200_000
MAXTIME = NOW - 3_600_000
WID = window_id(MINTIME, MAXTIME)
TOKENS = [None, "t-1", "t-2", None]


def _batch(page: int, window: str = WID, mintime: int = MINTIME) -> RecordBatch:
    """Page ``page`` of a window read in three pages of two records each, an hour apart
    within the window's hours (so the pages' objects sit in different folders)."""
    records = [
        {
            "telephony_id": f"{window[-4:]}-r{page}{n}",
            "ts": datetime.fromtimestamp(
                (mintime + page * 1_200_000 + n * 1000) / 1000, UTC
            ).isoformat(timespec="microseconds"),
        }
        for n in range(2)
    ]
    return RecordBatch(SOURCE, window, page, records, (TOKENS[page], TOKENS[page + 1]))


@pytest.fixture
def store(firestore_db: firestore.Client) -> WindowStore:
    """A window read in three pages (fetched), whose batches have not been landed yet."""
    clock = FakeClock()
    windows = WindowStore(firestore_db, clock)
    windows.window(SOURCE, WID).create(new_window(MINTIME, MAXTIME, NOW))
    claim = windows.claim(SOURCE, WID, 3600)
    for page in range(3):
        assert claim is not None
        claim = windows.checkpoint(claim, TOKENS[page + 1], 2, 3600)
    return windows


def _land(
    store: WindowStore, bucket: storage.Bucket, batch: RecordBatch, *, marked: bool, gzip: bool
) -> None:
    result = write_batch(bucket, batch, prefix=PREFIX, gzip=gzip)
    if marked:
        store.record_batch(batch, list(result.object_names))


def _sweep(store: WindowStore, bucket: storage.Bucket):
    store._clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    return store.sweep(SOURCE, unmarked=UnmarkedBatches(bucket, PREFIX).find)


@pytest.mark.parametrize("gzip", [False, True])
def test_a_batch_in_the_bucket_without_its_marker_is_marked_and_not_read_again(
    store: WindowStore, gcs_bucket: storage.Bucket, gzip: bool
) -> None:
    _land(store, gcs_bucket, _batch(0), marked=True, gzip=gzip)
    _land(store, gcs_bucket, _batch(1), marked=False, gzip=gzip)  # Firestore was down
    _land(store, gcs_bucket, _batch(2), marked=True, gzip=gzip)
    # Another window's page 1 in the same hours, and another source's: not this batch.
    other = window_id(MINTIME - 1, MAXTIME)
    _land(store, gcs_bucket, _batch(1, other, MINTIME + 1), marked=False, gzip=gzip)

    result = _sweep(store, gcs_bucket)

    assert (result.completed, result.rereads, result.republish) == (1, 0, [])
    doc = store.window(SOURCE, WID).get().to_dict()
    assert doc["state"] == DONE
    marker = store._marker(SOURCE, WID, 1).get().to_dict()
    assert marker["ids"] == [r["telephony_id"] for r in _batch(1).records]
    assert (marker["offset"], marker["next_offset"], marker["found_in_bucket"]) == (
        "t-1",
        "t-2",
        True,
    )
    assert marker["objects"][0].endswith(f"_{SOURCE}_{WID}_p00001.ndjson" + (".gz" if gzip else ""))


def test_a_batch_that_is_not_in_the_bucket_either_is_read_again_over_its_gap(
    store: WindowStore, gcs_bucket: storage.Bucket
) -> None:
    _land(store, gcs_bucket, _batch(0), marked=True, gzip=False)
    _land(store, gcs_bucket, _batch(2), marked=True, gzip=False)

    result = _sweep(store, gcs_bucket)

    assert (result.completed, result.rereads) == (0, 1)
    doc = store.window(SOURCE, WID).get().to_dict()
    assert (doc["state"], doc["next_offset"], doc["read_until"]) == (PLANNED, "t-1", "t-2")
    assert not store._marker(SOURCE, WID, 1).get().exists


@pytest.mark.parametrize("tokens", [("old-1", "old-2"), None])
def test_an_object_holding_other_records_under_a_batch_name_is_left_and_the_gap_read_again(
    store: WindowStore, gcs_bucket: storage.Bucket, tokens: tuple[str, str] | None
) -> None:
    # Issue 16, item 3: the writer refused to mark batch 1 (its name held other records, read
    # between other tokens or written without them); marking that object would lose batch 1.
    _land(store, gcs_bucket, _batch(0), marked=True, gzip=False)
    _land(store, gcs_bucket, _batch(2), marked=True, gzip=False)
    mine = _batch(1)
    other = RecordBatch(SOURCE, WID, 1, [mine.records[0] | {"telephony_id": "other"}], tokens)
    _land(store, gcs_bucket, other, marked=False, gzip=False)
    assert write_batch(gcs_bucket, mine, prefix=PREFIX, gzip=False).conflicting == 1

    result = _sweep(store, gcs_bucket)

    assert (result.completed, result.rereads) == (0, 1)
    doc = store.window(SOURCE, WID).get().to_dict()
    assert (doc["state"], doc["reread_from"]) == (PLANNED, 3)  # read again under page 3 on
    assert (doc["next_offset"], doc["read_until"]) == ("t-1", "t-2")
    assert not store._marker(SOURCE, WID, 1).get().exists


def test_a_batch_whose_first_record_is_on_the_gaps_last_microsecond_is_found(
    firestore_db: firestore.Client, gcs_bucket: storage.Bucket
) -> None:
    # Duo's tokens name the millisecond of a page's last record: the gap ends with the last
    # microsecond of the next landed batch's start token's millisecond.
    store = WindowStore(firestore_db, FakeClock())
    ms = [MINTIME + 1_000, MINTIME + 2_000, MINTIME + 3_000]
    tokens = [None, f"{ms[0]},r0", f"{ms[1]},r1", None]
    batches = [
        RecordBatch(
            SOURCE,
            WID,
            page,
            [{"telephony_id": f"r{page}", "ts": utc_from_us(ms[page] * 1000 + 999).isoformat()}],
            (tokens[page], tokens[page + 1]),
        )
        for page in range(3)
    ]
    store.window(SOURCE, WID).create(new_window(MINTIME, MAXTIME, NOW))
    claim = store.claim(SOURCE, WID, 3600)
    for page in range(3):
        assert claim is not None
        claim = store.checkpoint(claim, tokens[page + 1], 1, 3600)
    for page in range(3):
        _land(store, gcs_bucket, batches[page], marked=page != 1, gzip=False)

    result = _sweep(store, gcs_bucket)

    assert (result.completed, result.rereads) == (1, 0)
    assert store._marker(SOURCE, WID, 1).get().to_dict()["found_in_bucket"]


def test_a_bucket_that_cannot_be_searched_leaves_the_window_for_the_next_run_and_sweeps_on(
    store: WindowStore, gcs_bucket: storage.Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    # Say the planner lacks its bucket role: reading the gap again could land twice what the
    # writer did land, so the window waits; the source's other windows are swept all the same.
    _land(store, gcs_bucket, _batch(0), marked=True, gzip=False)
    _land(store, gcs_bucket, _batch(2), marked=True, gzip=False)
    other = window_id(MAXTIME, MAXTIME + 60_000)
    store.window(SOURCE, other).create(new_window(MAXTIME, MAXTIME + 60_000, NOW))
    claim = store.claim(SOURCE, other, 3600)
    assert claim is not None and store.checkpoint(claim, None, 1, 3600) is not None
    store.record_batch(RecordBatch(SOURCE, other, 0, [], (None, None)), [])

    def refused(*_args: object) -> Iterator[object]:
        raise Forbidden("the planner may not list the bucket")
        yield

    store._clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    result = store.sweep(SOURCE, unmarked=refused)

    assert (result.completed, result.rereads) == (1, 0)
    assert store.window(SOURCE, WID).get().to_dict()["state"] == FETCHED
    assert store.window(SOURCE, other).get().to_dict()["state"] == DONE
    assert "may not list the bucket" in caplog.text and "[1]" in caplog.text


def test_a_window_that_waits_run_after_run_for_the_bucket_is_counted_and_shown_by_status(
    store: WindowStore, gcs_bucket: storage.Bucket
) -> None:
    # A waiting window is not done, so the watermark stops: without a count, status stayed
    # green while it stalled for ever.
    _land(store, gcs_bucket, _batch(0), marked=True, gzip=False)
    _land(store, gcs_bucket, _batch(2), marked=True, gzip=False)
    status = CursorStore(store._db, store, store._clock).status

    def refused(*_args: object) -> Iterator[object]:
        raise Forbidden("403 GET storage.googleapis.com: no storage.objects.list access")
        yield

    for _ in range(BUCKET_WAITS_ALERT):
        store._clock.advance(60)
        assert status(SOURCE)["stalled"] == []
        store._clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
        assert store.sweep(SOURCE, unmarked=refused).bucket_waits == 1
    doc = store.window(SOURCE, WID).get().to_dict()
    assert (doc["state"], doc["bucket_waits"]) == (FETCHED, BUCKET_WAITS_ALERT)
    (stalled,) = status(SOURCE)["stalled"]
    assert (stalled["window_id"], stalled["bucket_waits"]) == (WID, BUCKET_WAITS_ALERT)
    assert "roles/storage.objectViewer" in stalled["error"]
    assert "storage.objects.list and storage.objects.get" in stalled["error"]

    # The role granted: the window moves on, and no longer shows.
    result = _sweep(store, gcs_bucket)
    assert (result.rereads, result.bucket_waits) == (1, 0)
    assert status(SOURCE)["stalled"] == []
