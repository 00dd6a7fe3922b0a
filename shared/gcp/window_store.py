"""Window progress in Firestore: leases, paging checkpoints and written-batch markers.

Layout (ROOT defaults to ``telephony_sources``):
  ROOT/{source}                                      the source's cursor (CursorStore)
  ROOT/{source}/windows/{window_id}                  one document per planned window
  ROOT/{source}/windows/{window_id}/batches/{page}   one marker per batch durably in Storage
A window is written by the one fetcher holding its lease, once per page (at most Duo's rate),
and each marker once by a writer: no document is hot. What each write says is decided by the
state machine in ``shared.pipeline.windows``; this module only reads and writes.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from dataclasses import dataclass

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.clock import Clock, now_ms
from shared.pipeline import windows as rules
from shared.pipeline.messages import WindowTask
from shared.pipeline.windows import Claim

ROOT = "telephony_sources"


@dataclass(frozen=True)
class SweepResult:
    republish: list[WindowTask]
    completed: int
    refetch: int


class WindowStore:
    def __init__(self, db: firestore.Client, clock: Clock, root: str = ROOT) -> None:
        self._db = db
        self._clock = clock
        self._root = root

    def source(self, source: str) -> firestore.DocumentReference:
        """The source's own document (its cursor); its windows live under it."""
        return self._db.collection(self._root).document(source)

    def windows(self, source: str) -> firestore.CollectionReference:
        return self.source(source).collection("windows")

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
            taken = rules.claim(
                snapshot.to_dict(),
                source,
                window_id,
                owner,
                now_ms(self._clock),
                int(lease_seconds * 1000),
            )
            if taken is None:
                return None
            transaction.update(ref, taken[1])
            return taken[0]

        return take(self._db.transaction())

    def checkpoint(
        self, claim: Claim, next_offset: str | None, records: int, lease_seconds: float
    ) -> Claim | None:
        """Records one published page; None if the lease was lost (someone else resumes)."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def save(transaction: firestore.Transaction) -> Claim | None:
            if not rules.holds_lease(ref.get(transaction=transaction).to_dict(), claim):
                return None
            after, update = rules.checkpoint(
                claim, next_offset, records, now_ms(self._clock), int(lease_seconds * 1000)
            )
            transaction.update(ref, update)
            return after

        return save(self._db.transaction())

    def release(self, claim: Claim, *, error: str | None = None, retry_at_ms: int = 0) -> None:
        """Gives the lease back: to hand the rest on, or after a failure (state ``failed``)."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def give_back(transaction: firestore.Transaction) -> None:
            if rules.holds_lease(ref.get(transaction=transaction).to_dict(), claim):
                transaction.update(ref, rules.release(now_ms(self._clock), error, retry_at_ms))

        give_back(self._db.transaction())

    def sweep(self, source: str, lease_ms: int) -> SweepResult:
        """Applies the sweep's rule to every open window of ``source``; returns the tasks to
        send again and what was finished."""
        now = now_ms(self._clock)
        republish: list[WindowTask] = []
        completed = refetch = 0
        query = self.windows(source).where(
            filter=FieldFilter("state", "in", list(rules.OPEN_STATES))
        )
        for snapshot in query.stream():
            doc = snapshot.to_dict()
            landed = functools.partial(self.written_batches, source, snapshot.id)
            step = rules.sweep_step(doc, now, lease_ms, landed)
            if step is None:
                continue
            snapshot.reference.update(step.update)
            completed += step.completed
            refetch += step.refetch
            if step.republish:
                republish.append(WindowTask(source, doc["mintime"], doc["maxtime"]))
        return SweepResult(republish, completed, refetch)

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
                    "expire_at": rules.expiry(written),
                }
            )

    def written_batches(self, source: str, window_id: str) -> int:
        batches = self.window(source, window_id).collection("batches")
        return int(batches.count().get()[0][0].value)
