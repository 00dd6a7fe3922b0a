"""``rate_limit: auto``'s decision for one MSP parent (shared.pipeline.rate_scope), in Firestore
beside the parent's shared limiter: document ``{collection}/{parent}:scope`` holding the
``ScopeDecision``'s fields. The fetchers update it at each 429 to a child, the planner once a
run with the fleet's requests of the last minute; each update is a transaction, so whoever
changes the decision logs it, once, with its evidence."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from google.cloud import firestore

from shared.clock import Clock
from shared.gcp.rate_limiter import DEFAULT_COLLECTION
from shared.pipeline.rate_scope import ScopeDecision, after_429, after_minute, blame

_log = logging.getLogger(__name__)
_FIELDS = {field.name for field in dataclasses.fields(ScopeDecision)}


def scope_key(parent: str) -> str:
    """The decision's document (a colon cannot occur in a source id)."""
    return f"{parent}:scope"


def decision_from(data: dict[str, Any] | None) -> ScopeDecision:
    """The decision a document holds; none yet: the start (the parent's budget)."""
    return ScopeDecision(**{k: v for k, v in (data or {}).items() if k in _FIELDS})


class RateScopeStore:
    def __init__(
        self,
        client: firestore.Client,
        parent: str,
        clock: Clock,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self._client = client
        self._parent = parent
        self._ref = client.collection(collection).document(scope_key(parent))
        self._clock = clock

    def decision(self) -> ScopeDecision:
        return decision_from(self._ref.get().to_dict())

    def refused(self, own: float, own_found: float, fleet: float) -> str:
        """Records a 429 to a child that had made ``own`` of the fleet's ``fleet`` requests in
        the minute before (``own_found``: its own limit found so far); returns the budget
        blamed (rate_share's ACCOUNT or PARENT), which alone is to be cut."""
        blamed: list[str] = []

        def change(decision: ScopeDecision, now: float) -> ScopeDecision:
            blamed[:] = [blame(decision, own, own_found, fleet)]
            return after_429(decision, blamed[0], own, fleet, now)

        self._update(change)
        return blamed[0]

    def served(self, served: float) -> ScopeDecision:
        """Records the fleet's requests in the last minute (the planner, once a run)."""
        return self._update(lambda decision, now: after_minute(decision, served, now))

    def _update(self, change: Callable[[ScopeDecision, float], ScopeDecision]) -> ScopeDecision:
        @firestore.transactional
        def update_in(transaction: firestore.Transaction) -> tuple[ScopeDecision, ScopeDecision]:
            before = decision_from(self._ref.get(transaction=transaction).to_dict())
            after = change(before, self._clock.now())
            if after != before:
                transaction.set(self._ref, dataclasses.asdict(after))
            return before, after

        before, after = update_in(self._client.transaction())
        if after.scope != before.scope:
            _log.warning(
                "msp parent %s: the children's Duo reads are now counted per %s: %s",
                self._parent,
                after.scope,
                after.evidence,
                extra={
                    "json_fields": {
                        "event": "rate_limit_scope",
                        "parent": self._parent,
                        **dataclasses.asdict(after),
                    }
                },
            )
        return after
