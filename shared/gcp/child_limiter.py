"""An MSP child's reads under ``rate_limit: auto``: every request takes a slot of the child's
own budget and one of its parent's shared budget, both limits found from Duo's 429s
(adaptive_rate), so the child keeps to its own limit found and the fleet to the shared one.

A 429 is blamed on one of the two (shared.pipeline.rate_scope, from both documents' counts of
the last minute) and only that one is paused and cut: a child refused at its own limit does
not hold the fleet back, nor does one refused by the parent's count take its own limit
down."""

from __future__ import annotations

from shared.clock import Clock
from shared.duo.adaptive_rate import AutoRate, sent_within_minute
from shared.gcp.rate_limiter import FirestoreRateLimiter
from shared.gcp.rate_scope_store import RateScopeStore
from shared.pipeline.rate_share import ACCOUNT


class ChildLimiter:
    def __init__(
        self,
        own: FirestoreRateLimiter,
        shared: FirestoreRateLimiter,
        scope: RateScopeStore,
        clock: Clock,
    ) -> None:
        """``own`` and ``shared``: limiters whose limits are found by themselves."""
        self._own = own
        self._shared = shared
        self._scope = scope
        self._clock = clock

    def acquire(self, urgent: bool = False) -> None:
        """The child's own slot first: a child waiting at its own limit holds no slot of the
        fleet's meanwhile."""
        self._own.acquire(urgent)
        self._shared.acquire(urgent)

    def pause(self, seconds: float) -> None:
        own, fleet = self._own.recent(), self._shared.recent()
        blamed = self._scope.refused(self._accepted(own), own.found, self._accepted(fleet))
        cut, spared = (self._own, self._shared) if blamed == ACCOUNT else (self._shared, self._own)
        cut.pause(seconds)
        # Counted as refused there too, so that each budget counts what Duo accepted.
        spared.refused_elsewhere()

    def _accepted(self, auto: AutoRate) -> float:
        # The refused request was counted when its slot was handed out; Duo did not count it.
        return max(0, sent_within_minute(auto.sent, self._clock.now()) - 1)
