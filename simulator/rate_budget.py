"""The simulated account's rate limit: Duo answers 429 while the last 60 seconds hold ``limit``
accepted requests (refused ones do not count), and the limit may change at given times."""

from __future__ import annotations

from collections import deque

WINDOW_SECONDS = 60.0


class MinuteBudget:
    def __init__(
        self, limit: int, changes: tuple[tuple[float, int], ...] = (), started: float = 0.0
    ) -> None:
        """``limit`` a minute (0: none) from ``started`` on, then each of ``changes``: (seconds
        after ``started``, the limit from then on), in time order."""
        self._limit = limit
        self._changes = changes
        self._started = started
        self._accepted: deque[float] = deque()  # times of requests that consumed the budget

    def limit_at(self, now: float) -> int:
        limit = self._limit
        for after, changed in self._changes:
            if now - self._started >= after:
                limit = changed
        return limit

    def take(self, now: float) -> bool:
        """Whether a request at ``now`` is accepted; an accepted one is counted."""
        limit = self.limit_at(now)
        if not limit:
            return True
        while self._accepted and self._accepted[0] <= now - WINDOW_SECONDS:
            self._accepted.popleft()
        if len(self._accepted) >= limit:
            return False
        self._accepted.append(now)
        return True
