"""The writer's work on one batch: objects first, then the marker that lets the planner call
the window finished; a batch already landed is not written again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from services.settings import DEFAULT_PREFIX
from services.writer.landing import BatchConflictError, land_batch
from shared.clock import utc_from_us
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import encode_line, parse_object_name
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeWindowStore, FakeWrite

BATCH = RecordBatch(
    "eu-prod",
    "1799992800000-1799996399999",
    3,
    [
        {"telephony_id": "t-1", "ts": "2027-01-15T06:00:01.000000+00:00"},
        {"telephony_id": "t-2", "ts": "2027-01-15T06:00:02.500000+00:00"},
    ],
)
# 2027-01-15T06:00:01Z and 06:00:02.5Z in microseconds since the epoch.
FIRST_US, LAST_US = 1_799_992_801_000_000, 1_799_992_802_500_000


FIELDS = (
    "component",
    "source",
    "window_id",
    "page",
    "records",
    "records_written",
    "bytes_written",
    "objects",
    "already_present",
    "conflicting",
)


def make_store(events: list[tuple[Any, ...]]) -> FakeWindowStore:
    return FakeWindowStore(FakeClock(), events)


def test_a_batch_is_written_then_marked_with_its_objects():
    events: list[tuple[Any, ...]] = []
    store = make_store(events)
    result = land_batch(BATCH, FakeWrite(events), store)
    assert events == [("write", 3), ("marker", 3)]
    marker = store.markers[BATCH.source, BATCH.window_id, 3]
    # What a re-read of the window needs to land only what is missing: the ids and their span.
    assert {key: marker[key] for key in ("page", "records", "objects", "ids", "first_us")} == {
        "page": 3,
        "records": 2,
        "objects": list(result.object_names),
        "ids": ["t-1", "t-2"],
        "first_us": FIRST_US,
    }
    assert marker["last_us"] == LAST_US
    # The object the batch's records are in, named by the writer's layout.
    [name] = marker["objects"]
    found = parse_object_name(name, DEFAULT_PREFIX)
    assert (found.source, found.window_id, found.page) == (BATCH.source, BATCH.window_id, 3)
    assert found.first_ts == utc_from_us(FIRST_US)


def test_a_batch_whose_marker_exists_is_not_written_again():
    # The feed may have deleted the objects after transferring them: writing them again
    # would make SecOps ingest the records twice.
    events: list[tuple[Any, ...]] = []
    store = make_store(events)
    store.record_batch(BATCH, ["already/there.ndjson"])
    write = FakeWrite(events)
    assert land_batch(BATCH, write, store) is None
    assert write.written == []


def test_a_marker_of_another_page_does_not_stop_the_write():
    events: list[tuple[Any, ...]] = []
    store = make_store(events)
    store.record_batch(replace(BATCH, page=BATCH.page - 1), ["p2.ndjson"])
    write = FakeWrite(events)
    land_batch(BATCH, write, store)
    assert write.written == [BATCH]


def test_a_write_that_fails_leaves_no_marker_so_pubsub_redelivers():
    events: list[tuple[Any, ...]] = []
    store = make_store(events)
    with pytest.raises(ConnectionError):
        land_batch(BATCH, FakeWrite(events, error=ConnectionError("Storage timed out")), store)
    assert store.markers == {}
    assert not store.batch_landed(BATCH.source, BATCH.window_id, BATCH.page)


def test_the_landed_line_carries_the_batch_and_what_was_written(logs_of):
    read = logs_of("writer")
    land_batch(BATCH, FakeWrite([]), make_store([]))
    [line] = read()
    assert line["severity"] == "INFO"
    assert line["message"] == f"batch {BATCH.batch_id} landed"
    assert {key: line[key] for key in FIELDS} == {
        "component": "writer",
        "source": "eu-prod",
        "window_id": BATCH.window_id,
        "page": 3,
        "records": 2,
        "records_written": 2,
        "bytes_written": sum(len(encode_line(record)) for record in BATCH.records),
        "objects": 1,
        "already_present": 0,
        "conflicting": 0,
    }


def test_a_conflicting_object_leaves_the_batch_unlanded():
    # Issue 8, case 4: an object of the batch's name holding other records means some of the
    # batch's records are not in the bucket; marking it landed would finish the window.
    store = make_store([])
    with pytest.raises(BatchConflictError, match="not marked landed"):
        land_batch(BATCH, FakeWrite([], conflicting=1), store)
    assert not store.batch_landed(BATCH.source, BATCH.window_id, BATCH.page)


def test_a_batch_already_landed_says_so(logs_of):
    read = logs_of("writer")
    store = make_store([])
    store.record_batch(BATCH, [])
    land_batch(BATCH, FakeWrite([]), store)
    [line] = read()
    assert line["message"] == f"batch {BATCH.batch_id} already landed"
    assert line["source"] == "eu-prod"


def test_a_batch_of_a_read_a_re_read_replaced_is_not_landed():
    # Its window is being read again because this batch did not land in time; the re-read
    # lands what is missing, so landing it now could land records twice.
    store = make_store([])
    store.docs[BATCH.source, BATCH.window_id] = {"reread_from": BATCH.page + 1}
    write = FakeWrite([])
    assert land_batch(BATCH, write, store) is None
    assert write.written == []
    store.docs[BATCH.source, BATCH.window_id] = {"reread_from": BATCH.page}
    land_batch(BATCH, write, store)
    assert write.written == [BATCH]
