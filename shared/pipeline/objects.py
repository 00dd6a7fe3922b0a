"""Writes one RecordBatch to Cloud Storage as NDJSON objects, exactly once, never overwriting.

The SecOps feed re-ingests an object whole whenever its content changes, so every object is
created in one create-only upload (``if_generation_match=0``) and never touched again. Names and
bytes are deterministic for a (source, window, page), so a redelivered or re-fetched batch maps
onto the objects it already wrote and is recognised by their MD5.

Layout: ``<prefix>/YYYY/MM/DD/HH/<first ts>_<source>_<window_id>_p<page>.ndjson[.gz]``, one
object per (batch, UTC hour of the records' ``ts``); ``<first ts>`` is the earliest record time
of the object as ``YYYYMMDDTHHMMSSffffffZ``, so names sort by time within and across folders.
"""

from __future__ import annotations

import base64
import gzip as gzip_module
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY_IF_GENERATION_SPECIFIED

from shared.duo.records import record_time_us
from shared.pipeline.messages import RecordBatch

# The feed drops longer lines; "MB" read as 10**6 bytes, the stricter reading.
MAX_LINE_BYTES = 4_000_000
NDJSON_CONTENT_TYPE = "application/x-ndjson"
GZIP_CONTENT_TYPE = "application/gzip"

_log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US = 3_600_000_000
_TS_FORMAT = "%Y%m%dT%H%M%S%fZ"
_SOURCE = r"[a-z0-9][a-z0-9-]{0,62}"
_WINDOW_ID = r"[0-9]{13}-[0-9]{13}"
_FILE_NAME = re.compile(
    rf"^(?P<ts>[0-9]{{8}}T[0-9]{{12}}Z)_(?P<source>{_SOURCE})_(?P<window_id>{_WINDOW_ID})"
    r"_p(?P<page>[0-9]{5})\.ndjson(?P<gz>\.gz)?$"
)


class LineTooLongError(ValueError):
    """A record whose NDJSON line exceeds what the SecOps feed accepts."""


def _utc(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _hour_folder(prefix: str, hour: datetime) -> str:
    folder = hour.strftime("%Y/%m/%d/%H")
    return f"{prefix}/{folder}" if prefix else folder


@dataclass(frozen=True)
class ObjectName:
    """The parts of an object name; ``name`` builds it, :func:`parse_object_name` reads it."""

    prefix: str
    first_ts: datetime  # UTC, the earliest record time in the object
    source: str
    window_id: str
    page: int
    gzip: bool

    def __post_init__(self) -> None:
        # Checked here so that every name built can be parsed back.
        if self.prefix != self.prefix.strip("/") or "//" in self.prefix:
            raise ValueError(f"prefix {self.prefix!r} must not start or end with / or hold //")
        if self.first_ts.utcoffset() != timedelta(0):
            raise ValueError(f"first_ts {self.first_ts!r} must be a UTC datetime")
        if not re.fullmatch(_SOURCE, self.source):
            raise ValueError(f"source {self.source!r} is not a source id")
        if not re.fullmatch(_WINDOW_ID, self.window_id):
            raise ValueError(f"window_id {self.window_id!r} is not <mintime>-<maxtime>")
        if not 0 <= self.page <= 99_999:
            raise ValueError(f"page {self.page} is outside 0..99999 (five digits keep the order)")

    @property
    def hour(self) -> datetime:
        """Start of the UTC hour whose folder holds the object."""
        return self.first_ts.replace(minute=0, second=0, microsecond=0)

    @property
    def name(self) -> str:
        suffix = ".ndjson.gz" if self.gzip else ".ndjson"
        file_name = (
            f"{self.first_ts.strftime(_TS_FORMAT)}_{self.source}_{self.window_id}"
            f"_p{self.page:05d}{suffix}"
        )
        return f"{_hour_folder(self.prefix, self.hour)}/{file_name}"


def parse_object_name(name: str, prefix: str | None = None) -> ObjectName:
    """Reads an object name of the layout back; ValueError if it does not follow it (or does
    not start with ``prefix``/, when a prefix is given)."""
    parts = name.split("/")
    if len(parts) < 5:
        raise ValueError(f"object {name!r} is not <prefix>/YYYY/MM/DD/HH/<file>")
    match = _FILE_NAME.match(parts[-1])
    if match is None:
        raise ValueError(f"object {name!r} does not follow the writer's naming layout")
    found_prefix = "/".join(parts[:-5])
    if prefix is not None and found_prefix != prefix.strip("/"):
        raise ValueError(f"object {name!r} is not under the prefix {prefix!r}")
    try:
        first_ts = datetime.strptime(match["ts"], _TS_FORMAT).replace(tzinfo=UTC)
        parsed = ObjectName(
            prefix=found_prefix,
            first_ts=first_ts,
            source=match["source"],
            window_id=match["window_id"],
            page=int(match["page"]),
            gzip=match["gz"] is not None,
        )
    except ValueError as error:
        raise ValueError(f"object {name!r} does not follow the naming layout: {error}") from None
    # Rebuilding checks the folders: they must be the file's own UTC hour.
    if parsed.name != name:
        raise ValueError(f"object {name!r} is not in its hour folder (expected {parsed.name!r})")
    return parsed


def encode_line(record: dict[str, Any]) -> bytes:
    """One NDJSON line: the record as Duo gave it (key order, unicode kept), compact."""
    line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    if len(line) > MAX_LINE_BYTES:
        raise LineTooLongError(
            f"record {record.get('telephony_id')!r} encodes to {len(line)} bytes; "
            f"the SecOps feed accepts lines of at most {MAX_LINE_BYTES}"
        )
    return line


def _md5_base64(data: bytes) -> str:
    # The form of the Storage API's md5Hash.
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclass(frozen=True)
class EncodedObject:
    """One object ready to upload: its name, stored bytes and properties."""

    name: str
    data: bytes
    content_type: str
    metadata: dict[str, str]
    record_count: int
    md5_base64: str


def encode_batch(batch: RecordBatch, prefix: str, gzip: bool) -> list[EncodedObject]:
    """The batch's objects, one per UTC hour of its records, in name (time) order.

    Raises RecordError for a record without a valid ``ts`` and LineTooLongError for a record
    the feed would drop: such a batch can never be written as it is.
    """
    groups: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for record in batch.records:
        us = record_time_us(record)
        groups.setdefault(us // _HOUR_US, []).append((us, record))
    objects = []
    for group in groups.values():
        first, last = min(us for us, _ in group), max(us for us, _ in group)
        body = b"".join(encode_line(record) for _, record in group)
        # mtime=0: the same batch must give the same bytes, or a redelivery looks like a conflict.
        data = gzip_module.compress(body, mtime=0) if gzip else body
        name = ObjectName(
            prefix=prefix.strip("/"),
            first_ts=_utc(first),
            source=batch.source,
            window_id=batch.window_id,
            page=batch.page,
            gzip=gzip,
        ).name
        objects.append(
            EncodedObject(
                name=name,
                data=data,
                # A gzip object is stored as a .gz file, without Content-Encoding: gzip. With
                # that header GCS transcodes on download and clients (this library too) unzip
                # silently, so the bytes read would not be the bytes (and MD5) stored. The
                # feed unpacks .gz files itself.
                content_type=GZIP_CONTENT_TYPE if gzip else NDJSON_CONTENT_TYPE,
                metadata={
                    "source": batch.source,
                    "window_id": batch.window_id,
                    "page": str(batch.page),
                    "records": str(len(group)),
                    "first_ts": _utc(first).isoformat(),
                    "last_ts": _utc(last).isoformat(),
                    # MD5 of the uncompressed NDJSON: recognises the same content gzipped by
                    # another zlib build, whose bytes may differ.
                    "ndjson_md5": _md5_base64(body),
                },
                record_count=len(group),
                md5_base64=_md5_base64(data),
            )
        )
    return sorted(objects, key=lambda obj: obj.name)


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
    return True


def _same_content(bucket: storage.Bucket, obj: EncodedObject) -> bool:
    """Whether the object already under ``obj.name`` holds ``obj``'s records."""
    existing = bucket.blob(obj.name)
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
