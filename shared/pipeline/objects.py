"""The object a RecordBatch becomes: its name and its bytes, deterministic for a
(source, window, page), so a redelivered batch maps onto the object it already wrote and is
recognised by its MD5 (the writer uploads it create-only).

Layout: ``<prefix>/YYYY/MM/DD/HH/<first ts>_<source>_<window_id>_p<page>.ndjson[.gz]``, one
object per batch (a page of at most 1,000 records), in the folder of the UTC hour of its
earliest record; ``<first ts>`` is that record's time as ``YYYYMMDDTHHMMSSffffffZ``, so names
sort by time within and across folders. One object per batch keeps a batch's landing to one
upload whatever span its records cover (a sparse page may cover days).
"""

from __future__ import annotations

import base64
import gzip as gzip_module
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.clock import utc_from_us
from shared.duo.records import record_time_us
from shared.pipeline.ids import MAX_PAGE, SOURCE_ID_PATTERN, WINDOW_ID_PATTERN
from shared.pipeline.messages import RecordBatch

# The feed drops longer lines; "MB" read as 10**6 bytes, the stricter reading.
MAX_LINE_BYTES = 4_000_000
NDJSON_CONTENT_TYPE = "application/x-ndjson"
GZIP_CONTENT_TYPE = "application/gzip"

_TS_FORMAT = "%Y%m%dT%H%M%S%fZ"
_FILE_NAME = re.compile(
    rf"^(?P<ts>[0-9]{{8}}T[0-9]{{12}}Z)_(?P<source>{SOURCE_ID_PATTERN})"
    rf"_(?P<window_id>{WINDOW_ID_PATTERN})"
    r"_p(?P<page>[0-9]{5})\.ndjson(?P<gz>\.gz)?$"
)


class LineTooLongError(ValueError):
    """A record whose NDJSON line exceeds what the SecOps feed accepts."""


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
        if not re.fullmatch(SOURCE_ID_PATTERN, self.source):
            raise ValueError(f"source {self.source!r} is not a source id")
        if not re.fullmatch(WINDOW_ID_PATTERN, self.window_id):
            raise ValueError(f"window_id {self.window_id!r} is not <mintime>-<maxtime>")
        if not 0 <= self.page <= MAX_PAGE:
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
    """The batch's object: one for the whole batch (none for an empty one), in the folder of
    its earliest record's UTC hour, so landing a batch is one create-only upload however many
    hours its records span.

    Raises RecordError for a record without a valid ``ts`` and LineTooLongError for a record
    the feed would drop: such a batch can never be written as it is.
    """
    group = [(record_time_us(record), record) for record in batch.records]
    objects = []
    if group:
        first, last = min(us for us, _ in group), max(us for us, _ in group)
        body = b"".join(encode_line(record) for _, record in group)
        # mtime=0: the same batch must give the same bytes, or a redelivery looks like a conflict.
        data = gzip_module.compress(body, mtime=0) if gzip else body
        name = ObjectName(
            prefix=prefix.strip("/"),
            first_ts=utc_from_us(first),
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
                    "first_ts": utc_from_us(first).isoformat(),
                    "last_ts": utc_from_us(last).isoformat(),
                    # MD5 of the uncompressed NDJSON: recognises the same content gzipped by
                    # another zlib build, whose bytes may differ.
                    "ndjson_md5": _md5_base64(body),
                    # The paging tokens the page lay between: a batch whose marker was never
                    # written gets it back from here, tokens included.
                    **({} if batch.offsets is None else {"offsets": json.dumps(batch.offsets)}),
                },
                record_count=len(group),
                md5_base64=_md5_base64(data),
            )
        )
    return objects


def decode_records(data: bytes, gzip: bool) -> list[dict[str, Any]]:
    """The records of an object ``encode_batch`` made, read back from its stored bytes."""
    body = gzip_module.decompress(data) if gzip else data
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def decode_offsets(metadata: dict[str, str]) -> tuple[str | None, str | None] | None:
    """The paging tokens an object's metadata keeps (None: written without them)."""
    raw = metadata.get("offsets")
    if raw is None:
        return None
    offset, next_offset = json.loads(raw)
    return offset, next_offset


def name_floor(prefix: str, us: int) -> str:
    """The least name an object whose earliest record is at ``us`` or later can have: names
    sort by that time, folders included, so a listing from here on skips everything older."""
    first_ts = utc_from_us(us)
    folder = _hour_folder(prefix.strip("/"), first_ts.replace(minute=0, second=0, microsecond=0))
    return f"{folder}/{first_ts.strftime(_TS_FORMAT)}"
