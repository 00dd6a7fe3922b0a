"""Raw Duo telephony records read from a local file or from every object under a gs:// prefix.

Each file or object may be plain or gzip (recognised by its magic bytes, whatever its name) and
holds either NDJSON (one JSON object per line, blank lines skipped) or one pretty-printed JSON
document (its first non-blank line is a lone ``{``), such as a saved Duo API response body.
A JSON object with a ``stat`` key is a Duo API response body, wherever it appears: its
``response.items`` are the records. NDJSON is streamed line by line; only a pretty-printed
document is parsed whole.

Nothing is raised for bad content: a line that cannot be read becomes a :class:`SourceLine`
with an ``error``, and reading goes on with the next line.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

_GZIP_MAGIC = b"\x1f\x8b"
# Bounded memory per gs:// object instead of the client's 40 MiB default.
_GCS_CHUNK_BYTES = 1024 * 1024
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


@dataclass(frozen=True)
class SourceLine:
    """One record read from a source, or the reason why a line gave none."""

    origin: str  # the local path or gs://bucket/object
    line_no: int  # 1-based line in the (decompressed) content: where the JSON starts, or the error
    record: dict[str, Any] | None = None
    error: str | None = None
    item_no: int | None = None  # 1-based position in response.items, for a response body
    # Bytes of the raw NDJSON line as read (decompressed, terminator included), what the feed's
    # line limit applies to; None for a value of a multi-line document. Not part of equality:
    # a line is identified by where it is and what it holds.
    line_bytes: int | None = field(default=None, compare=False)

    @property
    def location(self) -> str:
        """Where the line is, for messages: ``origin:line`` and the item, if any."""
        where = f"{self.origin}:{self.line_no}"
        return where if self.item_no is None else f"{where} item {self.item_no}"


class SourceError(Exception):
    """The source itself cannot be read: a malformed gs:// URI, no object, a Cloud error."""


def read_records(
    source: str,
    *,
    storage_client: Any = None,
    on_object: Callable[[str, int], None] | None = None,
) -> Iterator[SourceLine]:
    """Every record of a local file or of all objects under ``gs://bucket/prefix``, in order.

    Objects are read one at a time, sorted by name. ``storage_client`` is a
    ``google.cloud.storage.Client``; one is made (for the emulator when
    ``STORAGE_EMULATOR_HOST`` is set) if a gs:// source is read without it.
    ``on_object(origin, stored size in bytes)`` is called as each file or object is opened,
    before its lines: it also tells of objects that hold no record.
    """
    if source.startswith("gs://"):
        yield from _read_gcs(source, storage_client, on_object)
    else:
        with open(source, "rb") as stream:
            if on_object is not None:
                on_object(source, os.fstat(stream.fileno()).st_size)
            yield from parse_stream(source, stream)


def parse_stream(origin: str, stream: IO[bytes]) -> Iterator[SourceLine]:
    """The records of one binary stream (plain or gzip); ``origin`` names it in the results."""
    # A BufferedReader gives a stream without peek (a gs:// BlobReader) peek and a fast readline.
    buffered: Any = stream
    if not hasattr(buffered, "peek"):
        buffered = io.BufferedReader(buffered)
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        buffered = gzip.GzipFile(fileobj=buffered, mode="rb")
    lines = enumerate(buffered, start=1)
    line_no, first = 0, True
    try:
        for line_no, raw in lines:
            if not raw.strip():
                continue
            if first and raw.strip() == b"{":
                document = raw + b"".join(rest for _, rest in lines)
                yield from _parse_value(origin, line_no, document)
                return
            first = False
            for parsed in _parse_value(origin, line_no, raw):
                yield replace(parsed, line_bytes=len(raw))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # A truncated or corrupt .gz loses its tail only; the caller goes on with other sources.
        yield SourceLine(origin, line_no + 1, error=f"unreadable gzip data ({exc})")


def _parse_value(origin: str, line_no: int, raw: bytes) -> Iterator[SourceLine]:
    try:
        # Without the trailing newline, an error at the end of the text points at its last line.
        value = json.loads(raw.rstrip().decode("utf-8"))
    except UnicodeDecodeError as exc:
        yield SourceLine(
            origin, line_no, error=f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        )
        return
    except json.JSONDecodeError as exc:
        # For a multi-line document, point at the line where the JSON goes wrong.
        at_line = line_no + exc.lineno - 1
        yield SourceLine(origin, at_line, error=f"not valid JSON ({exc.msg} at column {exc.colno})")
        return
    if not isinstance(value, dict):
        yield SourceLine(origin, line_no, error=f"a JSON {_JSON_TYPES[type(value)]}, not an object")
    elif "stat" in value:
        yield from _response_items(origin, line_no, value)
    else:
        yield SourceLine(origin, line_no, record=value)


def _response_items(origin: str, line_no: int, body: dict[str, Any]) -> Iterator[SourceLine]:
    if body["stat"] != "OK":
        detail = " ".join(
            str(body[key]) for key in ("code", "message", "message_detail") if key in body
        )
        yield SourceLine(origin, line_no, error=f"a Duo error response: {detail or body['stat']}")
        return
    response = body.get("response")
    items = response.get("items") if isinstance(response, dict) else None
    if not isinstance(items, list):
        yield SourceLine(origin, line_no, error="a Duo response without a response.items list")
        return
    for item_no, item in enumerate(items, start=1):
        if isinstance(item, dict):
            yield SourceLine(origin, line_no, record=item, item_no=item_no)
        else:
            error = f"a JSON {_JSON_TYPES[type(item)]}, not an object"
            yield SourceLine(origin, line_no, error=error, item_no=item_no)


def _read_gcs(
    uri: str, client: Any, on_object: Callable[[str, int], None] | None
) -> Iterator[SourceLine]:
    # Imported here: reading local files must not need (or load) the Cloud libraries.
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    if not bucket_name:
        raise SourceError(f"no bucket in {uri!r}: expected gs://bucket/prefix")
    try:
        client = client or _storage_client()
        blobs = sorted(client.list_blobs(bucket_name, prefix=prefix or None), key=lambda b: b.name)
        if not blobs:
            raise SourceError(f"no objects under {uri}")
        for blob in blobs:
            origin = f"gs://{bucket_name}/{blob.name}"
            if on_object is not None:
                on_object(origin, blob.size or 0)
            # raw_download: the stored bytes, not a server-side gunzip of a gzip-encoded
            # object; parse_stream recognises gzip itself.
            with blob.open("rb", chunk_size=_GCS_CHUNK_BYTES, raw_download=True) as stream:
                yield from parse_stream(origin, stream)
    except (GoogleAPIError, GoogleAuthError) as exc:
        raise SourceError(str(exc)) from exc


def _storage_client() -> Any:
    from shared.gcp.clients import storage_client

    return storage_client(os.environ.get("GOOGLE_CLOUD_PROJECT", "local-emulator"))
