"""The sources registry in Firestore: every Duo account the deployment reads, and its state.

  SOURCES/{source}   a SourceSpec's fields (secret names only) and state, since_ms, error,
                     code, fix, conflict (shared.pipeline.sources); wake_at_ms, when its next
                     planner run is due (shared.pipeline.wake)
  PARENTS/{parent}   when the MSP parent's children were last listed, and what went wrong

The planner syncs it at its first run and every ``ACCOUNTS_REFRESH`` and, in the minutes
between, reads only the entries whose wake has come (``due``); the fetcher and the writer read a
source's entry; the fetcher marks one refused or broken. Writes are merges of whole fields,
not transactions: two planners syncing at once compute the same updates, and a fetcher's
``trouble`` only touches the state fields, which a sync rewrites only when that entry is due.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.clock import Clock, now_ms
from shared.pipeline.sources import (
    DEFAULT_REFRESH_MS,
    Discovery,
    SourceSpec,
    parent_entry,
    reconcile,
)
from shared.pipeline.wake import EVERY_RUN, WAKE_AT

SOURCES = "telephony_registry"
PARENTS = "telephony_registry_parents"
# Firestore's limit on writes in one batch.
BATCH_WRITES = 500


class SourceRegistry:
    def __init__(
        self,
        db: firestore.Client,
        clock: Clock,
        refresh_ms: int = DEFAULT_REFRESH_MS,
        root: str = SOURCES,
        parents: str = PARENTS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._root = root
        self._parents = parents

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every source's entry, by id."""
        return {doc.id: doc.to_dict() for doc in self._db.collection(self._root).stream()}

    def due(self, now_ms: int) -> dict[str, dict[str, Any]]:
        """The entries whose wake is ``now_ms`` or before, by id: the active ones whose planner
        run is due and the refused or broken ones (due every run), never a gone one (one
        query on a single field's index: a read for each entry, one when there is none)."""
        query = self._db.collection(self._root).where(filter=FieldFilter(WAKE_AT, "<=", now_ms))
        return {doc.id: doc.to_dict() for doc in query.stream()}

    def entry(self, source: str) -> dict[str, Any] | None:
        snapshot = self._db.collection(self._root).document(source).get()
        return snapshot.to_dict() if snapshot.exists else None

    def parent(self, parent: str) -> dict[str, Any] | None:
        snapshot = self._db.collection(self._parents).document(parent).get()
        return snapshot.to_dict() if snapshot.exists else None

    def parents(self) -> dict[str, dict[str, Any]]:
        return {doc.id: doc.to_dict() for doc in self._db.collection(self._parents).stream()}

    def sync(
        self,
        configured: Iterable[SourceSpec],
        discovery: Discovery | None,
        parent: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Applies the reconciliation (and the listing, on its parent's entry); returns every
        source's entry as it now is. ``parent``: the configured MSP parent (``reconcile``)."""
        now = now_ms(self._clock)
        stored = self.entries()
        updates = reconcile(configured, discovery, stored, now, self._refresh_ms, parent)
        items = list(updates.items())
        for start in range(0, len(items), BATCH_WRITES):
            batch = self._db.batch()
            for source, update in items[start : start + BATCH_WRITES]:
                batch.set(self._db.collection(self._root).document(source), update, merge=True)
            batch.commit()
        if discovery is not None:
            self._db.collection(self._parents).document(discovery.parent).set(
                parent_entry(discovery, now)
            )
        for source, update in updates.items():
            stored[source] = stored.get(source, {}) | update
        return stored

    def trouble(self, source: str, update: dict[str, Any]) -> bool:
        """Records a source's trouble (``shared.pipeline.sources.trouble``) on its entry; False
        when the source has no entry (it is not created)."""
        try:
            self._db.collection(self._root).document(source).update(update)
        except NotFound:
            return False
        return True

    def wake(self, source: str, wake_at_ms: int | None) -> None:
        """Records when the source's next planner run is due (``shared.pipeline.wake``; None:
        every run, stored as EVERY_RUN); nothing for a source without an entry (it is not
        created). The sync rewrites only the fields it reconciles, so this one is kept."""
        wake = EVERY_RUN if wake_at_ms is None else wake_at_ms
        with contextlib.suppress(NotFound):
            self._db.collection(self._root).document(source).update({WAKE_AT: wake})

    def counts(self) -> dict[str, int]:
        """How many sources are in each state."""
        return dict(Counter(doc.get("state") for doc in self.entries().values()))


class CachedEntries:
    """A service's view of the registry: each source's entry read at most once per
    ``ttl_seconds`` (every task and batch names its source; the entry seldom changes)."""

    def __init__(self, registry: SourceRegistry, clock: Clock, ttl_seconds: float = 60.0) -> None:
        self._registry = registry
        self._clock = clock
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def entry(self, source: str) -> dict[str, Any] | None:
        with self._lock:
            cached = self._cache.get(source)
        if cached is not None and self._clock.now() - cached[0] < self._ttl:
            return cached[1]
        entry = self._registry.entry(source)
        with self._lock:
            self._cache[source] = (self._clock.now(), entry)
        return entry

    def trouble(self, source: str, update: dict[str, Any]) -> bool:
        with self._lock:
            self._cache.pop(source, None)
        return self._registry.trouble(source, update)
