"""The billable Google Cloud operations this process performs, counted where they happen.

Google bills Firestore per document read, written and deleted, Pub/Sub per byte published and
delivered, and Cloud Storage per operation, so the pipeline's cost follows from these counts;
the benchmark adds them up across the services to give the operations per 1,000 records.
Counting is a lock and a dict update per call: nothing is sent anywhere, and nothing a
service does changes.

Firestore is counted at its API client (the GAPIC client inside ``firestore.Client``), so
every read and write is seen whichever store makes it, transactions and the rate limiter's
document included, with Firestore's billing rules: a document returned or looked up is a read
(one that does not exist too: counted as read, the conservative side), a query or an
aggregation that returns nothing is still one read, a commit's writes are writes or deletes.
An aggregation counts one read, which holds up to 1,000 index entries matched.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

FIRESTORE_READS = "firestore_reads"
FIRESTORE_WRITES = "firestore_writes"
FIRESTORE_DELETES = "firestore_deletes"
PUBSUB_MESSAGES = "pubsub_messages"
PUBSUB_BYTES = "pubsub_bytes"
STORAGE_WRITES = "storage_writes"
STORAGE_READS = "storage_reads"
# Counted around each request by whatever serves the app (the harness's gunicorn settings).
CLOUD_RUN_REQUESTS = "cloud_run_requests"
CLOUD_RUN_REQUEST_MS = "cloud_run_request_ms"


class Operations:
    """A thread-safe tally of operations by name."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        if not amount:
            return
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """Every count since the process started."""
        with self._lock:
            return dict(self._counts)


# The one tally of this process: each service is its own process (one gunicorn worker).
OPERATIONS = Operations()


class _CountedStream:
    """A response stream passed through unchanged, counting reads as responses arrive; at
    least one read once it ends (Firestore's minimum for a query)."""

    def __init__(self, stream: Any, reads: Callable[[Any], int], tally: Operations) -> None:
        self._stream = stream
        self._reads = reads
        self._tally = tally
        self._counted = 0
        self._ended = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            response = next(self._stream)
        except StopIteration:
            if not self._counted and not self._ended:
                self._tally.add(FIRESTORE_READS)
            self._ended = True
            raise
        read = self._reads(response)
        self._counted += read
        self._tally.add(FIRESTORE_READS, read)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _document_read(response: Any) -> int:
    return int("document" in response)


def _lookup_read(response: Any) -> int:
    return int("found" in response or "missing" in response)


def _aggregation_read(response: Any) -> int:
    return int("result" in response)


def count_firestore(api: Any, tally: Operations = OPERATIONS) -> None:
    """Makes the Firestore GAPIC client ``api`` count its billable operations in ``tally``."""
    for name, reads in (
        ("run_query", _document_read),
        ("batch_get_documents", _lookup_read),
        ("run_aggregation_query", _aggregation_read),
    ):
        call = getattr(api, name)

        def streamed(*args: Any, _call: Any = call, _reads: Any = reads, **kwargs: Any) -> Any:
            return _CountedStream(_call(*args, **kwargs), _reads, tally)

        setattr(api, name, streamed)
    commit = api.commit

    def counted_commit(*args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request", args[0] if args else None)
        writes = request["writes"] if isinstance(request, dict) else request.writes
        response = commit(*args, **kwargs)
        deletes = sum(1 for write in writes if "delete" in write)
        tally.add(FIRESTORE_DELETES, deletes)
        tally.add(FIRESTORE_WRITES, len(writes) - deletes)
        return response

    api.commit = counted_commit
