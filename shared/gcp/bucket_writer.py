"""Writes one RecordBatch to Cloud Storage as NDJSON objects, exactly once, never overwriting.

The SecOps feed re-ingests an object whole whenever its content changes, so every object is
created in one create-only upload (``if_generation_match=0``) and never touched again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.api_core.exceptions import Forbidden, NotFound, PreconditionFailed
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY_IF_GENERATION_SPECIFIED

from shared.gcp.operations import OPERATIONS, STORAGE_READS, STORAGE_WRITES
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import GZIP_CONTENT_TYPE, EncodedObject, encode_batch

_log = logging.getLogger(__name__)


class StoragePermissionError(PermissionError):
    """Cloud Storage refused to create an object that does not exist: a missing permission."""


@dataclass(frozen=True)
class WriteResult:
    """What one batch gave. ``object_names`` lists all of the batch's objects, written or not.

    An upload whose response was lost and that was retried finds its own object: it counts as
    ``already_present`` and its records and bytes are not counted as written.
    """

    object_names: tuple[str, ...]
    records_written: int
    bytes_written: int
    already_present: int
    conflicting: int


def write_batch(
    bucket: storage.Bucket, batch: RecordBatch, *, prefix: str, gzip: bool
) -> WriteResult:
    """Creates the batch's objects that do not exist yet; existing ones are never rewritten.

    An existing object with other content is logged at warning level and counted as
    ``conflicting``. Transient Storage errors are retried by the client library; other errors
    propagate (the objects created so far stay, and a redelivery completes the rest).
    """
    objects = encode_batch(batch, prefix, gzip)
    records = size = present = conflicting = 0
    for obj in objects:
        if _create(bucket, obj):
            records += obj.record_count
            size += len(obj.data)
        elif _same_content(bucket, obj):
            present += 1
        else:
            conflicting += 1
    return WriteResult(
        object_names=tuple(obj.name for obj in objects),
        records_written=records,
        bytes_written=size,
        already_present=present,
        conflicting=conflicting,
    )


def _create(bucket: storage.Bucket, obj: EncodedObject) -> bool:
    """Uploads ``obj`` if no object has its name; False if one has.

    Up to 8 MiB (any Duo page) the library sends one multipart request; a larger object would
    take a resumable upload, which is still finalised once and create-only.
    """
    blob = bucket.blob(obj.name)
    blob.metadata = obj.metadata
    OPERATIONS.add(STORAGE_WRITES)
    try:
        blob.upload_from_string(
            obj.data,
            content_type=obj.content_type,
            if_generation_match=0,
            # The sent MD5 lets Cloud Storage refuse a body damaged on the way.
            checksum="md5",
            # Retrying an upload is safe only because it is create-only: this policy retries
            # only while the request carries the generation precondition.
            retry=DEFAULT_RETRY_IF_GENERATION_SPECIFIED,
        )
    except PreconditionFailed:
        return False
    except Forbidden as error:
        # A principal without storage.objects.delete (roles/storage.objectCreator) may be
        # answered 403 rather than 412 for a create-only upload over an existing object: the
        # object is read back, and one that exists is what a 412 would have said.
        OPERATIONS.add(STORAGE_READS)
        try:
            exists = blob.exists()
        except Forbidden:
            raise StoragePermissionError(
                f"Cloud Storage refused to create {obj.name} in bucket {bucket.name}, and to "
                "read it back: the writer's service account needs storage.objects.get on the "
                "bucket to tell an existing object from a missing permission"
            ) from error
        if exists:
            return False
        raise StoragePermissionError(
            f"Cloud Storage refused to create {obj.name} in bucket {bucket.name} and no "
            "object has that name: the writer's service account needs storage.objects.create "
            f"on the bucket (roles/storage.objectCreator); Storage said: {error.message}"
        ) from error
    return True


def _same_content(bucket: storage.Bucket, obj: EncodedObject) -> bool:
    """Whether the object already under ``obj.name`` holds ``obj``'s records."""
    existing = bucket.blob(obj.name)
    OPERATIONS.add(STORAGE_READS)
    try:
        existing.reload()
    except NotFound:
        # It existed a moment ago: most likely the feed deleted it after transferring it.
        # Writing it again would make SecOps ingest its records twice.
        _log.warning(
            "object %s existed but is gone now; not written again",
            obj.name,
            extra={"json_fields": {"event": "object_vanished", "object": obj.name}},
        )
        return True
    if existing.md5_hash == obj.md5_base64:
        return True
    existing_ndjson_md5 = (existing.metadata or {}).get("ndjson_md5")
    if obj.content_type == GZIP_CONTENT_TYPE and existing_ndjson_md5 == obj.metadata["ndjson_md5"]:
        return True
    _log.warning(
        "object %s already exists with other content; left as it is, %d records not written",
        obj.name,
        obj.record_count,
        extra={
            "json_fields": {
                "event": "object_conflict",
                "bucket": bucket.name,
                "object": obj.name,
                "generation": existing.generation,
                "existing_md5": existing.md5_hash,
                "expected_md5": obj.md5_base64,
                "source": obj.metadata["source"],
                "window_id": obj.metadata["window_id"],
                "page": int(obj.metadata["page"]),
                "records_not_written": obj.record_count,
            }
        },
    )
    return False
