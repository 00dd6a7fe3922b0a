"""Window progress in Firestore: leases, paging checkpoints and written-batch markers.

Layout (ROOT defaults to ``telephony_sources``):
  ROOT/{source}/windows/{window_id}                  one document per planned window
  ROOT/{source}/windows/{window_id}/batches/{page}   one marker per batch durably in Storage
A window is written by the one fetcher holding its lease, once per page (at most Duo's rate),
and each marker once by a writer: no document is hot.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from shared.clock import Clock, now_ms

ROOT = "telephony_sources"
DONE_RETENTION_MS = 30 * 86_400_000

PLANNED = "planned"
FETCHING = "fetching"
FETCHED = "fetched"  # every page is published; done once every batch is written
DONE = "done"
FAILED = "failed"
OPEN_STATES = (PLANNED, FETCHING, FETCHED, FAILED)


@dataclass(frozen=True)
class Claim:
    """A fetcher's lease on a window, with where to resume."""

    source: str
    window_id: str
    owner: str
    mintime: int
    maxtime: int
    next_offset: str | None
    pages: int
    records: int
    attempts: int


def window_doc(mintime: int, maxtime: int, planned_at_ms: int) -> dict[str, Any]:
    return {
        "mintime": mintime,
        "maxtime": maxtime,
        "state": PLANNED,
        "next_offset": None,
        "pages": 0,
        "records": 0,
        "attempts": 0,
        "lease_owner": None,
        "lease_until_ms": 0,
        "retry_at_ms": 0,
        "error": None,
        "planned_at_ms": planned_at_ms,
        "updated_at_ms": planned_at_ms,
    }


def expiry(now: int) -> datetime:
    """When a finished document may go (a Firestore TTL policy on ``expire_at`` deletes it)."""
    return datetime.fromtimestamp((now + DONE_RETENTION_MS) / 1000, UTC)


class WindowStore:
    def __init__(self, db: firestore.Client, clock: Clock, root: str = ROOT) -> None:
        self._db = db
        self._clock = clock
        self.root = root

    def windows(self, source: str) -> firestore.CollectionReference:
        return self._db.collection(self.root).document(source).collection("windows")

    def window(self, source: str, window_id: str) -> firestore.DocumentReference:
        return self.windows(source).document(window_id)

    def claim(self, source: str, window_id: str, lease_seconds: float) -> Claim | None:
        """Takes the window's lease, or None when it is finished, unknown or leased elsewhere."""
        ref = self.window(source, window_id)
        owner = uuid.uuid4().hex

        @firestore.transactional
        def take(transaction: firestore.Transaction) -> Claim | None:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return None
            doc = snapshot.to_dict()
            now = now_ms(self._clock)
            if doc["state"] in (FETCHED, DONE):
                return None
            if doc["state"] == FETCHING and doc["lease_until_ms"] > now:
                return None
            transaction.update(
                ref,
                {
                    "state": FETCHING,
                    "lease_owner": owner,
                    "lease_until_ms": now + int(lease_seconds * 1000),
                    "attempts": doc["attempts"] + 1,
                    "updated_at_ms": now,
                },
            )
            return Claim(
                source,
                window_id,
                owner,
                doc["mintime"],
                doc["maxtime"],
                doc["next_offset"],
                doc["pages"],
                doc["records"],
                doc["attempts"] + 1,
            )

        return take(self._db.transaction())

    def checkpoint(
        self, claim: Claim, next_offset: str | None, records: int, lease_seconds: float
    ) -> Claim | None:
        """Records one published page; None if the lease was lost (someone else resumes)."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def save(transaction: firestore.Transaction) -> Claim | None:
            doc = ref.get(transaction=transaction).to_dict()
            if doc is None or doc["lease_owner"] != claim.owner or doc["state"] != FETCHING:
                return None
            now = now_ms(self._clock)
            update = {
                "next_offset": next_offset,
                "pages": claim.pages + 1,
                "records": claim.records + records,
                "lease_until_ms": now + int(lease_seconds * 1000),
                "updated_at_ms": now,
                "error": None,
            }
            if next_offset is None:
                update |= {"state": FETCHED, "fetched_at_ms": now, "lease_owner": None}
            transaction.update(ref, update)
            return replace(
                claim,
                next_offset=next_offset,
                pages=claim.pages + 1,
                records=claim.records + records,
            )

        return save(self._db.transaction())

    def release(self, claim: Claim, *, error: str | None = None, retry_at_ms: int = 0) -> None:
        """Gives the lease back: to hand the rest on, or after a failure (state ``failed``)."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def give_back(transaction: firestore.Transaction) -> None:
            doc = ref.get(transaction=transaction).to_dict()
            if doc is None or doc["lease_owner"] != claim.owner or doc["state"] != FETCHING:
                return
            update: dict[str, Any] = {
                "lease_owner": None,
                "lease_until_ms": 0,
                "updated_at_ms": now_ms(self._clock),
            }
            if error is not None:
                update |= {"state": FAILED, "error": error, "retry_at_ms": retry_at_ms}
            else:
                update |= {"state": PLANNED}
            transaction.update(ref, update)

        give_back(self._db.transaction())

    def _marker(self, source: str, window_id: str, page: int) -> firestore.DocumentReference:
        return self.window(source, window_id).collection("batches").document(f"{page:05d}")

    def batch_landed(self, source: str, window_id: str, page: int) -> bool:
        return self._marker(source, window_id, page).get().exists

    def record_batch(
        self, source: str, window_id: str, page: int, records: int, objects: list[str]
    ) -> None:
        """Marks one batch as durably in Storage; a repeat of the same batch changes nothing."""
        marker = self._marker(source, window_id, page)
        with contextlib.suppress(AlreadyExists):
            written = now_ms(self._clock)
            marker.create(
                {
                    "records": records,
                    "objects": objects,
                    "written_at_ms": written,
                    "expire_at": expiry(written),
                }
            )

    def written_batches(self, source: str, window_id: str) -> int:
        batches = self.window(source, window_id).collection("batches")
        return int(batches.count().get()[0][0].value)
