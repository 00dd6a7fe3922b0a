"""Batches in the bucket whose marker was never written: the writer uploaded the object, then
could not reach Firestore through every redelivery, and Pub/Sub dead-lettered the batch. The
planner looks for them before reading a gap again, and marks those that are the batches
(``shared.pipeline.found_batches``), so a re-read does not land those records a second time.

Names sort by their earliest record's time (folders included), so one listing bounded by the
gap's paging tokens finds them; the listing gives each one's paging tokens, and only an object
taken as its batch is read back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from google.cloud import storage

from shared.gcp.operations import OPERATIONS, STORAGE_READS
from shared.pipeline.objects import decode_offsets, decode_records, name_floor, parse_object_name
from shared.pipeline.windows import PageOffsets


@dataclass(frozen=True)
class FoundBatch:
    """An object in the bucket under one of a window's batches' names, not read yet."""

    page: int
    name: str
    offsets: PageOffsets | None
    gzip: bool
    _blob: storage.Blob

    def records(self) -> list[dict[str, Any]]:
        """The object's records, read back."""
        OPERATIONS.add(STORAGE_READS)
        return decode_records(self._blob.download_as_bytes(), self.gzip)


class BatchFinder(Protocol):
    """What the planner's sweep looks for unmarked batches with: UnmarkedBatches under one
    bucket and prefix, or Destinations under each source's own."""

    def find(
        self, source: str, window_id: str, pages: Collection[int], first_us: int, last_us: int
    ) -> Iterator[FoundBatch]: ...


class UnmarkedBatches:
    def __init__(self, bucket: storage.Bucket, prefix: str) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")

    def find(
        self,
        source: str,
        window_id: str,
        pages: Collection[int],
        first_us: int,
        last_us: int,
    ) -> Iterator[FoundBatch]:
        """The objects named for the window's ``pages`` whose earliest record lies in
        ``[first_us, last_us]``."""
        OPERATIONS.add(STORAGE_READS)
        listing = self._bucket.list_blobs(
            prefix=f"{self._prefix}/" if self._prefix else None,
            start_offset=name_floor(self._prefix, first_us),
            end_offset=name_floor(self._prefix, last_us + 1),
        )
        for blob in listing:
            try:
                name = parse_object_name(blob.name, self._prefix)
            except ValueError:
                continue  # not one of ours
            if (name.source, name.window_id) != (source, window_id) or name.page not in pages:
                continue
            offsets = decode_offsets(blob.metadata or {})
            yield FoundBatch(name.page, blob.name, offsets, name.gzip, blob)
