"""The writer's create-only upload when Cloud Storage answers 403 rather than 412 over an
existing object (a principal without storage.objects.delete): whether it does is not
documented, so a 403 is read back, and only a missing object makes it a permission error."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from google.api_core.exceptions import Forbidden, NotFound

from shared.gcp.bucket_writer import StoragePermissionError, write_batch
from shared.pipeline.messages import RecordBatch

WINDOW = "1709622000000-1709636400000"
RECORD = {"telephony_id": "a", "ts": "2024-03-05T07:10:00.000001+00:00", "type": "sms"}
BATCH = RecordBatch("acme", WINDOW, 7, [RECORD])
OTHER = RecordBatch("acme", WINDOW, 7, [RECORD | {"telephony_id": "b"}])
NAME = f"duo/2024/03/05/07/20240305T071000000001Z_acme_{WINDOW}_p00007.ndjson"


class CreatorOnlyBucket:
    """A bucket as a principal with storage.objects.create and get but not delete sees it:
    a create-only upload over an existing object is answered 403. ``can_create`` False: no
    storage.objects.create either; ``can_read`` False: no storage.objects.get."""

    name = "acme-logs"

    def __init__(self, *, can_create: bool = True, can_read: bool = True) -> None:
        self.objects: dict[str, bytes] = {}
        self.can_create = can_create
        self.can_read = can_read

    def blob(self, name: str) -> CreatorOnlyBlob:
        return CreatorOnlyBlob(self, name)


class CreatorOnlyBlob:
    def __init__(self, bucket: CreatorOnlyBucket, name: str) -> None:
        self.bucket, self.name = bucket, name
        self.metadata: dict[str, str] | None = None
        self.md5_hash: str | None = None
        self.generation: int | None = None

    def upload_from_string(self, data: bytes, *, if_generation_match: int, **_: Any) -> None:
        assert if_generation_match == 0
        if not self.bucket.can_create or self.name in self.bucket.objects:
            raise Forbidden(f"does not have storage.objects.delete access to {self.name}")
        self.bucket.objects[self.name] = data

    def _readable(self) -> None:
        if not self.bucket.can_read:
            raise Forbidden(f"does not have storage.objects.get access to {self.name}")

    def exists(self) -> bool:
        self._readable()
        return self.name in self.bucket.objects

    def reload(self) -> None:
        self._readable()
        if self.name not in self.bucket.objects:
            raise NotFound(self.name)
        data = self.bucket.objects[self.name]
        self.md5_hash = base64.b64encode(hashlib.md5(data).digest()).decode()
        self.generation = 1


def test_a_403_over_an_object_holding_the_batch_is_taken_as_landed_like_a_412():
    bucket = CreatorOnlyBucket()
    write_batch(bucket, BATCH, prefix="duo", gzip=False)  # landed; its marker was then lost

    again = write_batch(bucket, BATCH, prefix="duo", gzip=False)

    assert (again.already_present, again.conflicting, again.records_written) == (1, 0, 0)
    assert again.object_names == (NAME,)


def test_a_403_over_an_object_holding_other_records_is_a_conflict_like_a_412():
    bucket = CreatorOnlyBucket()
    write_batch(bucket, OTHER, prefix="duo", gzip=False)
    before = dict(bucket.objects)

    result = write_batch(bucket, BATCH, prefix="duo", gzip=False)

    assert (result.already_present, result.conflicting) == (0, 1)
    assert bucket.objects == before


def test_a_403_with_no_object_there_is_a_permission_error_naming_the_permission():
    bucket = CreatorOnlyBucket(can_create=False)
    with pytest.raises(StoragePermissionError, match=r"needs storage\.objects\.create") as raised:
        write_batch(bucket, BATCH, prefix="duo", gzip=False)
    assert NAME in str(raised.value) and "acme-logs" in str(raised.value)


def test_a_403_that_cannot_be_read_back_names_the_read_permission():
    bucket = CreatorOnlyBucket(can_read=False)
    write_batch(bucket, BATCH, prefix="duo", gzip=False)
    with pytest.raises(StoragePermissionError, match=r"needs storage\.objects\.get"):
        write_batch(bucket, BATCH, prefix="duo", gzip=False)
