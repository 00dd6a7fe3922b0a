"""Landing a batch whose object name already holds other records, on fake-gcs-server and the
Firestore emulator: the object is left as it is and the batch is not marked landed (issue 8,
case 4), so its window cannot be called done with records missing from the bucket."""

from __future__ import annotations

import functools

import pytest
from google.cloud import firestore, storage

from services.writer.landing import BatchConflictError, land_batch
from shared.gcp.bucket_writer import write_batch
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import encode_batch
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

BATCH = RecordBatch(
    "acme",
    "1709622000000-1709636400000",
    4,
    [{"telephony_id": "a", "ts": "2024-03-05T07:10:00.000001+00:00", "type": "sms"}],
)


def test_a_conflicting_object_is_kept_and_its_batch_left_unlanded(
    gcs_bucket: storage.Bucket, firestore_db: firestore.Client
) -> None:
    (obj,) = encode_batch(BATCH, "p", False)
    gcs_bucket.blob(obj.name).upload_from_string(
        b'{"telephony_id":"other"}\n', if_generation_match=0
    )
    before = gcs_bucket.get_blob(obj.name)
    store = WindowStore(firestore_db, FakeClock())
    write = functools.partial(write_batch, gcs_bucket, prefix="p", gzip=False)

    with pytest.raises(BatchConflictError):
        land_batch(BATCH, write, store)

    after = gcs_bucket.get_blob(obj.name)
    assert (after.generation, after.md5_hash) == (before.generation, before.md5_hash)
    assert not store.batch_landed(BATCH.source, BATCH.window_id, BATCH.page)
    assert store.landed_batches(BATCH.source, BATCH.window_id) == 0
