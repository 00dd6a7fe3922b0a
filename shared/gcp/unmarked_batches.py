"""Batches in the bucket whose marker was never written: the writer uploaded the object, then
could not reach Firestore through every redelivery, and Pub/Sub dead-lettered the batch. The
planner looks for them before reading a gap again, and marks what it finds, so a re-read does
not land those records a second time.

Names sort by their earliest record's time (folders included), so one listing bounded by the
gap's paging tokens finds them; each is read back and handed on as it is found.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from google.cloud import storage

from shared.gcp.operations import OPERATIONS, STORAGE_READS
from shared.pipeline.objects import decode_offsets, decode_records, name_floor, parse_object_name
from shared.pipeline.windows import PageOffsets


@dataclass(frozen=True)
class FoundBatch:
    """A batch's object found in the bucket, read back."""

    page: int
    name: str
    records: list[dict[str, Any]]
    offsets: PageOffsets | None


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
        """The objects of the window's ``pages`` whose earliest record lies in
        ``[first_us, last_us]``, with their records, one at a time."""
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
            OPERATIONS.add(STORAGE_READS)
            data = blob.download_as_bytes()
            records = decode_records(data, name.gzip)
            offsets = decode_offsets(blob.metadata or {})
            yield FoundBatch(name.page, blob.name, records, offsets)
