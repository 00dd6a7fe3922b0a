"""The object writer against fake-gcs-server: one create-only upload per batch, redeliveries,
conflicts."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import storage

from harness.emulators import ENV_VARS, STORAGE, LocalCloud
from harness.storage_gate import StorageGate
from shared.gcp.bucket_writer import WriteResult, write_batch
from shared.gcp.clients import storage_client
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import encode_batch

pytestmark = pytest.mark.integration

PREFIX = "duo/telephony"
WINDOW = "1709622000000-1709636400000"


def record(ts: str, telephony_id: str) -> dict[str, Any]:
    # Duo's key order, which is not alphabetical here, must survive the round trip.
    return {
        "telephony_id": telephony_id,
        "ts": ts,
        "type": "sms",
        "context": "authentication",
        "phone": "+33 6 12 34 56 78 ☎",
        "credits": 1,
    }


BATCH = RecordBatch(
    "acme",
    WINDOW,
    7,
    [
        record("2024-03-05T07:10:00.000001+00:00", "a"),
        record("2024-03-05T07:59:59.999999+00:00", "b"),
        record("2024-03-05T08:00:00.000000+00:00", "c"),
        record("2024-03-05T10:30:00.250000+00:00", "d"),
        record("2024-03-05T10:45:00.000000+00:00", "e"),
    ],
)
# One object for the batch, in the hour folder of its earliest record.
NAME = f"{PREFIX}/2024/03/05/07/20240305T071000000001Z_acme_{WINDOW}_p00007.ndjson"


def ndjson_line(telephony_id: str, ts: str) -> bytes:
    """``record(ts, telephony_id)`` as the feed must read it, written out by hand: Duo's key
    order, compact, ☎ as its three UTF-8 bytes. 145 bytes (counted with ``wc -c``)."""
    return (
        b'{"telephony_id":"' + telephony_id.encode() + b'","ts":"' + ts.encode() + b'",'
        b'"type":"sms","context":"authentication","phone":"+33 6 12 34 56 78 \xe2\x98\x8e",'
        b'"credits":1}\n'
    )


# The object holds the batch's records, in the batch's order.
CONTENT = (
    ndjson_line("a", "2024-03-05T07:10:00.000001+00:00")
    + ndjson_line("b", "2024-03-05T07:59:59.999999+00:00")
    + ndjson_line("c", "2024-03-05T08:00:00.000000+00:00")
    + ndjson_line("d", "2024-03-05T10:30:00.250000+00:00")
    + ndjson_line("e", "2024-03-05T10:45:00.000000+00:00")
)


def stored(bucket: storage.Bucket) -> dict[str, tuple[int, bytes]]:
    """Every object's generation and bytes."""
    return {
        blob.name: (blob.generation, blob.download_as_bytes())
        for blob in bucket.client.list_blobs(bucket)
    }


@pytest.mark.parametrize("use_gzip", [False, True])
def test_a_batch_becomes_one_object_holding_exactly_its_records(
    gcs_bucket: storage.Bucket, use_gzip: bool
) -> None:
    name = NAME + (".gz" if use_gzip else "")
    result = write_batch(gcs_bucket, BATCH, prefix=PREFIX, gzip=use_gzip)

    objects = stored(gcs_bucket)
    assert sorted(objects) == [name]
    content = objects[name][1]
    assert (gzip.decompress(content) if use_gzip else content) == CONTENT
    # The bytes written are the bytes stored: 5 lines of 145 bytes when not compressed.
    assert result == WriteResult((name,), 5, len(content), 0, 0)
    if not use_gzip:
        assert result.bytes_written == 725
    blob = gcs_bucket.get_blob(name)
    assert blob is not None
    assert blob.content_type == ("application/gzip" if use_gzip else "application/x-ndjson")
    assert blob.content_encoding is None
    assert blob.metadata is not None
    assert {key: blob.metadata[key] for key in ("source", "window_id", "page", "records")} == {
        "source": "acme",
        "window_id": WINDOW,
        "page": "7",
        "records": "5",
    }
    assert (blob.metadata["first_ts"], blob.metadata["last_ts"]) == (
        "2024-03-05T07:10:00.000001+00:00",
        "2024-03-05T10:45:00+00:00",
    )


@pytest.mark.parametrize("use_gzip", [False, True])
@pytest.mark.parametrize("refused_with", [412, 403])
def test_writing_the_same_batch_again_writes_nothing(
    gcs_bucket: storage.Bucket, use_gzip: bool, refused_with: int, request: pytest.FixtureRequest
) -> None:
    # 403: as Cloud Storage may refuse the upload over an existing object to the writer,
    # which has no delete rights (the Storage gate turns the emulator's 412 into it).
    writer = request.getfixturevalue("creator_only_bucket") if refused_with == 403 else gcs_bucket
    first = write_batch(writer, BATCH, prefix=PREFIX, gzip=use_gzip)
    before = stored(gcs_bucket)

    again = write_batch(writer, BATCH, prefix=PREFIX, gzip=use_gzip)

    assert again == WriteResult(first.object_names, 0, 0, 1, 0)
    assert stored(gcs_bucket) == before


def test_an_existing_object_with_other_content_is_left_alone_and_reported(
    gcs_bucket: storage.Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    other = gcs_bucket.blob(NAME)
    other.upload_from_string(b'{"telephony_id":"other"}\n', if_generation_match=0)
    before = stored(gcs_bucket)

    with caplog.at_level(logging.WARNING, logger="shared.gcp.bucket_writer"):
        result = write_batch(gcs_bucket, BATCH, prefix=PREFIX, gzip=False)

    assert result == WriteResult((NAME,), 0, 0, 0, 1)
    assert stored(gcs_bucket) == before
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert NAME in warning.getMessage()
    fields = warning.json_fields  # type: ignore[attr-defined]
    assert (fields["event"], fields["object"], fields["generation"]) == (
        "object_conflict",
        NAME,
        before[NAME][0],
    )
    assert fields["records_not_written"] == 5


def test_the_same_records_gzipped_by_another_zlib_count_as_present(
    gcs_bucket: storage.Bucket,
) -> None:
    (obj,) = encode_batch(BATCH, PREFIX, True)
    body = gzip.decompress(obj.data)
    # Other compressed bytes for the same NDJSON, as another zlib build could give.
    recompressed = gzip.compress(body, compresslevel=1, mtime=1)
    assert recompressed != obj.data
    existing = gcs_bucket.blob(obj.name)
    existing.metadata = obj.metadata
    existing.upload_from_string(recompressed, if_generation_match=0)

    result = write_batch(gcs_bucket, BATCH, prefix=PREFIX, gzip=True)

    assert (result.records_written, result.already_present, result.conflicting) == (0, 1, 0)
    assert stored(gcs_bucket)[obj.name][1] == recompressed


def test_an_object_deleted_after_the_refused_upload_is_not_written_again(
    gcs_bucket: storage.Bucket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gcs_bucket.blob(NAME).upload_from_string(b"transferred\n", if_generation_match=0)
    reload = storage.Blob.reload

    def deleted_meanwhile(blob: storage.Blob, *args: Any, **kwargs: Any) -> None:
        # As the feed's delete-after-transfer would, between the 412 and the check.
        if blob.name == NAME:
            blob.delete()
        reload(blob, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "reload", deleted_meanwhile)
    with caplog.at_level(logging.WARNING, logger="shared.gcp.bucket_writer"):
        result = write_batch(gcs_bucket, BATCH, prefix=PREFIX, gzip=False)

    assert (result.records_written, result.already_present, result.conflicting) == (0, 1, 0)
    assert stored(gcs_bucket) == {}
    events = [getattr(r, "json_fields", {}).get("event") for r in caplog.records]
    assert events == ["object_vanished"]


def test_a_sparse_page_over_a_thousand_hours_is_one_upload(gcs_bucket: storage.Bucket) -> None:
    # Issue 8, case 8: one object per hour made this page 1,000 sequential uploads in one
    # writer request, past the ack deadline. It is one object, in its first record's folder.
    records = [
        record(f"2024-01-{1 + n // 24:02d}T{n % 24:02d}:05:00.000000+00:00", f"r{n}")
        for n in range(0, 744)
    ]
    result = write_batch(
        gcs_bucket, RecordBatch("acme", WINDOW, 0, records), prefix=PREFIX, gzip=False
    )
    assert result.records_written == 744
    (name,) = stored(gcs_bucket)
    assert name.startswith(f"{PREFIX}/2024/01/01/00/20240101T000500000000Z_acme_")


def test_an_empty_batch_writes_nothing(gcs_bucket: storage.Bucket) -> None:
    result = write_batch(gcs_bucket, RecordBatch("acme", WINDOW, 0, []), prefix=PREFIX, gzip=True)

    assert result == WriteResult((), 0, 0, 0, 0)
    assert stored(gcs_bucket) == {}


@pytest.fixture
def creator_only_bucket(
    local_cloud: LocalCloud, gcs_bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> Iterator[storage.Bucket]:
    """The bucket through the Storage gate answering 403 where the emulator answers 412, as
    Cloud Storage may answer a principal without storage.objects.delete."""
    with StorageGate(local_cloud.env[ENV_VARS[STORAGE]]) as gate:
        gate.forbid_overwrites()
        monkeypatch.setenv(ENV_VARS[STORAGE], gate.url)
        yield storage_client(local_cloud.project).bucket(gcs_bucket.name)


def test_a_403_over_an_object_with_other_records_is_a_conflict(
    gcs_bucket: storage.Bucket, creator_only_bucket: storage.Bucket
) -> None:
    gcs_bucket.blob(NAME).upload_from_string(b'{"telephony_id":"other"}\n')
    before = stored(gcs_bucket)

    result = write_batch(creator_only_bucket, BATCH, prefix=PREFIX, gzip=False)

    assert result == WriteResult((NAME,), 0, 0, 0, 1)
    assert stored(gcs_bucket) == before
