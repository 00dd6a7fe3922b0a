"""Each source's destination in Cloud Storage: its own bucket and prefix from its registry
entry (so a provider points one SecOps feed at each customer's objects), or the deployment's
``GCS_BUCKET`` and ``GCS_PREFIX``. The writer lands a batch there, and the planner looks there
for a batch that landed without its marker.

The destination is resolved from the registry here rather than carried in each batch message:
the registry is the one place that says where a source's objects go, the planner's search and
the writer read it alike, and the messages (and any in flight) stay as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator

from google.cloud import storage

from shared.clock import Clock
from shared.gcp.bucket_writer import WriteResult, write_batch
from shared.gcp.source_registry import CachedEntries, SourceRegistry
from shared.gcp.unmarked_batches import FoundBatch, UnmarkedBatches
from shared.pipeline.messages import RecordBatch
from shared.pipeline.sources import destination_of


class Destinations:
    def __init__(
        self,
        registry: SourceRegistry,
        clock: Clock,
        client: storage.Client,
        bucket: str,
        prefix: str,
        ttl_seconds: float = 60.0,
    ) -> None:
        self._entries = CachedEntries(registry, clock, ttl_seconds)
        self._client = client
        self._default = (bucket, prefix)
        self._lock = threading.Lock()
        self._buckets: dict[str, storage.Bucket] = {}

    def of(self, source: str) -> tuple[storage.Bucket, str]:
        """The source's bucket and prefix."""
        name, prefix = destination_of(self._entries.entry(source), *self._default)
        with self._lock:
            if name not in self._buckets:
                self._buckets[name] = self._client.bucket(name)
            return self._buckets[name], prefix

    def write(self, batch: RecordBatch, *, gzip: bool) -> WriteResult:
        """Lands the batch under its source's destination."""
        bucket, prefix = self.of(batch.source)
        return write_batch(bucket, batch, prefix=prefix, gzip=gzip)

    def find(
        self, source: str, window_id: str, pages: Collection[int], first_us: int, last_us: int
    ) -> Iterator[FoundBatch]:
        """The planner's search for batches landed without their marker, in the source's
        destination."""
        bucket, prefix = self.of(source)
        return UnmarkedBatches(bucket, prefix).find(source, window_id, pages, first_us, last_us)
