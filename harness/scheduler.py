"""Cloud Scheduler's part, played locally: the planner's ``/run`` called on a fixed cadence.

Cloud Scheduler does not stop when a call fails (the planner's worker restarting in the middle
of a run, a deploy): the failure is logged and the next call is made on time. So here: a
failed call is reported, and the demo or the benchmark goes on; only its own conditions or
Ctrl-C end it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PlannerCall = Callable[[], dict[str, Any]]


class Scheduler:
    """Calls the planner every ``every`` seconds: each call is due ``every`` after the one
    before was due, whatever that one did (or at once, when it took longer)."""

    def __init__(
        self,
        call: PlannerCall,
        every: float,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._call = call
        self._every = every
        self._say = say
        self._clock = clock
        self._due: float | None = None
        self.failures = 0

    def call(self) -> dict[str, Any] | None:
        """One call of the planner now: its results, or None when it failed (reported)."""
        try:
            return self._call()
        except Exception as error:
            # Whatever went wrong with this call, the next one is made all the same.
            self.failures += 1
            reason = str(error).splitlines()[0][:200] if str(error) else ""
            self._say(
                f"planner call failed ({type(error).__name__}: {reason}); the next one is made "
                "on time, as Cloud Scheduler would"
            )
            return None

    def poll(self) -> dict[str, Any] | None:
        """Calls the planner if a call is due; its results, or None (not due, or failed)."""
        now = self._clock()
        if self._due is not None and now < self._due:
            return None
        self._due = now + self._every if self._due is None else max(self._due + self._every, now)
        return self.call()

    def run_until(self, done: Callable[[], bool], sleep: Callable[[float], None]) -> None:
        """Calls the planner on its cadence until ``done()``."""
        while not done():
            self.poll()
            assert self._due is not None
            sleep(max(self._due - self._clock(), 0.0))
