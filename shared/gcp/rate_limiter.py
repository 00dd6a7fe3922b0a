"""The Duo rate limit shared by every fetcher instance and thread, kept in Firestore.

The budget belongs to the Duo account, so all instances must draw from one GCRA whose state
(the theoretical arrival time ``tat`` and ``paused_until``) lives in one Firestore document per
account. Writing that document for every request would make it a hot document (Firestore wants
at most about one sustained write per second per document), so each update reserves a batch
of about one second's worth of consecutive start times ("slots") for the calling instance, and
that instance's threads consume them locally. Updates are optimistic transactions (read, then
write only if the document is unchanged), so concurrent instances never lose an update.

Times are the instances' wall clocks (seconds since the epoch): the instances' clocks are
assumed NTP-synced (Cloud Run's are), so a slot reserved by one instance means the same moment
to all, give or take MAX_CLOCK_SKEW_SECONDS, which the spacing allows for.

Guarantees and their limits:
- The reserved slots of all instances together form one GCRA-conforming sequence (at most
  ``burst`` at once). A request starts at its slot, or up to a quarter of an interval (at most
  LATE_START_SECONDS) later (thread wake-up, write latency); a slot later than that is
  dropped, never used in a burst. The slots are spaced so that no 60-second window of
  arrivals at Duo holds more than ``rate * 60`` requests, for requests arriving up to
  MAX_LATE_SECONDS after their slots from instances whose clocks differ by up to
  MAX_CLOCK_SKEW_SECONDS (``strict_interval``): a strict Duo never sees R + 1.
- Unused slots are wasted, which only lowers the achieved rate. A limit found by itself stops
  counting them (``sent``) at the instance's next reservation, so it counts requests sent.
- A ``pause`` (after a 429) reaches the other instances on their next reservation: until then
  they may still use the slots they already hold (at most one batch, about one second of
  budget, plus one slot per thread already waiting for its slot).

With ``rate=AutoPolicy(...)`` (``DUO_RATE_LIMIT_PER_MINUTE=auto``) the rate is not given but
found (shared/duo/adaptive_rate.py): the document also holds the rate found so far and the
requests started in the last minute, updated in the same write that reserves the slots, so a
429 seen by any instance lowers the rate of all of them. A slot may then always start
LATE_START_SECONDS late, since the rate, and with it a quarter interval, changes.
"""

from __future__ import annotations

import functools
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.cloud import firestore

from shared.clock import Clock, SystemClock
from shared.duo.adaptive_rate import (
    AutoPolicy,
    AutoRate,
    pause_found,
    reserve_found,
    sent_within_minute,
    uncounted,
)
from shared.duo.rate_limit import (
    LATE_START_SECONDS,
    LimitState,
    earlier_waiting,
    paused_state,
    reserve_slots,
    start_lateness,
    strict_interval,
    usable,
)

DEFAULT_COLLECTION = "duo-telephony-rate-limits"
# One reservation covers this much of the account's budget, so the document is written about
# once per this many seconds, whatever the rate.
BATCH_SECONDS = 1.0
# Contention is low (about one write per second in total), but instances starting together
# conflict a few times; every attempt re-reads the state, so retrying is safe.
_UPDATE_ATTEMPTS = 10
_BACKOFF_SECONDS = 0.01

T = TypeVar("T")


class SharedRateLimitError(RuntimeError):
    """The shared state could not be updated (too much contention)."""


def batch_size(rate: float) -> int:
    """Slots per reservation: at least one second of budget (rounded up, so that the document
    is written at most once per BATCH_SECONDS), and at least one slot."""
    # The epsilon keeps an exact product such as 10.000000000000002 from rounding up to 11.
    return max(1, math.ceil(rate * BATCH_SECONDS - 1e-9))


class FirestoreRateLimiter:
    """A RateLimiter for one Duo account shared through a Firestore document.

    Document ``{collection}/{source_id}``: ``tat`` and ``paused_until`` (float epoch seconds)
    and ``writes`` (number of committed updates, for monitoring); with an AutoPolicy also
    ``rate_per_minute`` (the rate found), ``found_per_minute`` (what Duo accepted in the
    minute before its last 429), ``resume_at`` and ``sent`` (requests per epoch second).
    """

    def __init__(
        self,
        client: firestore.Client,
        source_id: str,
        rate: float | AutoPolicy = 0.5,
        burst: int = 1,
        clock: Clock | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        """``rate``: requests per second, or the policy by which the account's limit is found
        (then ``burst`` must be 1: a burst is a share of a minute's budget nobody knows)."""
        if isinstance(rate, AutoPolicy):
            if burst != 1:
                raise ValueError("a limit found by itself allows no burst")
        elif rate <= 0:
            raise ValueError("the rate limit must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("the burst must be at least 1 request")
        if not source_id:
            raise ValueError("the source id names the rate-limit document and must be set")
        self._client = client
        self._ref = client.collection(collection).document(source_id)
        self._policy = rate if isinstance(rate, AutoPolicy) else None
        if isinstance(rate, AutoPolicy):
            self._lateness = LATE_START_SECONDS
            self._tolerance = 0.0
        else:
            self._lateness = start_lateness(rate)
            self._interval = strict_interval(rate, burst)
            self._tolerance = (burst - 1) * self._interval
            self._batch = batch_size(rate)
        self._clock = clock or SystemClock()
        # The slot each thread last started at: the request a 429 refused.
        self._started = threading.local()
        self._slots: deque[float] = deque()
        # Slots handed out but never used (under ``_changed``): a limit found by itself stops
        # counting them at the next reservation, so that its count is of requests sent.
        self._unused: list[float] = []
        # The slot each thread is sleeping towards, which an urgent request may take over.
        self._waiting: dict[object, float] = {}
        self._paused_until = 0.0
        self._reserving = False
        self._changed = threading.Condition()
        self._update_lock = threading.Lock()
        # The document as this instance's last update wrote it, and its update time.
        self._written: tuple[dict[str, Any], Any] | None = None
        self._rng = random.Random()

    def acquire(self, urgent: bool = False) -> None:
        """Blocks until one request may be sent. An ``urgent`` request (a live window's) takes
        the earliest slot another thread of this instance is still waiting for, and that
        thread waits for the urgent one's later slot instead: live records do not queue behind
        the backfill, and the slots used stay the same."""
        while True:
            ticket = None if urgent else object()
            slot = self._take_slot()
            with self._changed:
                if urgent:
                    slot = self._jump_queue(slot)
                else:
                    self._waiting[ticket] = slot
            while True:
                while (wait := slot - self._clock.now()) > 0:
                    self._clock.sleep(wait)
                with self._changed:
                    if ticket is not None and self._waiting[ticket] != slot:
                        slot = self._waiting[ticket]  # given to an urgent request meanwhile
                        continue
                    self._waiting.pop(ticket, None)
                    # A pause may have come, or the thread may have woken late, while sleeping.
                    if self._usable(slot, self._clock.now()):
                        self._started.slot = slot
                        return
                    self._drop([slot])
                    break

    def _jump_queue(self, slot: float) -> float:
        """The slot an urgent request waits for: the earliest one a waiting thread holds, when
        it comes before the urgent request's own ``slot``, which that thread then waits for
        instead (called under ``_changed``)."""
        ticket = earlier_waiting(self._waiting, slot)
        if ticket is None:
            return slot
        self._waiting[ticket], slot = slot, self._waiting[ticket]
        return slot

    def pause(self, seconds: float) -> None:
        # Locally first, so this instance's threads stop even if Firestore fails below.
        self._hold_until(self._clock.now() + seconds)
        refused = getattr(self._started, "slot", self._clock.now())

        def update(
            state: LimitState, auto: AutoRate | None, now: float
        ) -> tuple[LimitState, AutoRate | None, float]:
            if auto is not None and self._policy is not None:
                paused, auto = pause_found(state, auto, self._policy, now, seconds, refused)
            else:
                paused = paused_state(state, now, seconds, self._tolerance)
            return paused, auto, paused.paused_until

        self._hold_until(self._update(update))

    def refused_elsewhere(self) -> None:
        """Duo refused the request this thread last started, but another budget is blamed
        for it: it is only no longer counted here (a limit found by itself only)."""
        refused = getattr(self._started, "slot", self._clock.now())

        def update(
            state: LimitState, auto: AutoRate | None, now: float
        ) -> tuple[LimitState, AutoRate | None, None]:
            return state, None if auto is None else uncounted(auto, now, [refused]), None

        self._update(update)

    def recent(self) -> AutoRate:
        """The rate found so far and the requests started in the last minute, as the document
        holds them now (one read; a limit found by itself only)."""
        if self._policy is None:
            raise ValueError("only a limit found by itself counts its requests")
        return auto_rate(self._ref.get().to_dict() or {}, self._policy)

    def _take_slot(self) -> float:
        """The next usable slot of this instance, reserving a batch when none is left."""
        while True:
            with self._changed:
                now = self._clock.now()
                while self._slots and not self._usable(self._slots[0], now):
                    self._drop([self._slots.popleft()])
                if self._slots:
                    return self._slots.popleft()
                if self._reserving:
                    self._changed.wait()
                    continue
                self._reserving = True
                unused = list(self._unused)
            slots: list[float] = []
            try:
                slots = self._update(functools.partial(self._reserve_batch, unused=unused))
                with self._changed:
                    del self._unused[: len(unused)]  # no longer counted in the document
            finally:
                with self._changed:
                    self._reserving = False
                    self._slots.extend(slots)
                    self._changed.notify_all()

    def _reserve_batch(
        self, state: LimitState, auto: AutoRate | None, now: float, unused: list[float]
    ) -> tuple[LimitState, AutoRate | None, list[float]]:
        if self._policy is None or auto is None:
            slots, state = reserve_slots(state, now, self._batch, self._interval, self._tolerance)
            return state, auto, slots
        count = batch_size(auto.per_minute / 60.0)
        auto = uncounted(auto, now, unused)
        slots, state, auto = reserve_found(state, auto, self._policy, now, count)
        return state, auto, slots

    def _drop(self, slots: list[float]) -> None:
        """Slots that will not be used (called under ``_changed``)."""
        if self._policy is not None:
            self._unused.extend(slots)

    def _usable(self, slot: float, now: float) -> bool:
        return usable(slot, now, self._paused_until, self._lateness)

    def _hold_until(self, paused_until: float) -> None:
        with self._changed:
            self._paused_until = max(self._paused_until, paused_until)
            self._drop([s for s in self._slots if s < self._paused_until])
            self._slots = deque(s for s in self._slots if s >= self._paused_until)

    def _update(
        self,
        change: Callable[
            [LimitState, AutoRate | None, float], tuple[LimitState, AutoRate | None, T]
        ],
    ) -> T:
        """Applies ``change(state, auto, now)`` to the document (``auto`` is None unless the
        rate is found by itself) and returns its result, as an optimistic transaction: read,
        then write only if the update time is still the one read. The document as this
        instance last wrote it needs no read: the write on its update time fails if anyone
        has written since, and the document is read then (one instance reading a slow
        account's budget reads it once, not once a request).

        Not ``firestore.transactional``: its reads take locks, and the emulator settles a lock
        conflict by waiting about 2 s, so instances starting together stalled for seconds and
        their slots were stale on arrival. One update at a time per instance.
        """
        with self._update_lock:
            for attempt in range(_UPDATE_ATTEMPTS):
                known, self._written = self._written, None
                if known is None:
                    snapshot = self._ref.get()
                    data = snapshot.to_dict() or {}
                    version = snapshot.update_time if snapshot.exists else None
                else:
                    data, version = known
                state = LimitState(
                    tat=float(data.get("tat", 0.0)),
                    paused_until=float(data.get("paused_until", 0.0)),
                )
                auto = auto_rate(data, self._policy) if self._policy is not None else None
                new_state, new_auto, result = change(state, auto, self._clock.now())
                fields = {
                    "tat": new_state.tat,
                    "paused_until": new_state.paused_until,
                    "writes": int(data.get("writes", 0)) + 1,
                    **(auto_fields(new_auto) if new_auto is not None else {}),
                }
                try:
                    if version is not None:
                        precondition = self._client.write_option(last_update_time=version)
                        written = self._ref.update(fields, option=precondition)
                    else:
                        written = self._ref.create(fields)
                except (FailedPrecondition, AlreadyExists):
                    if known is None:
                        # Another instance wrote first; spread the retries of a crowd apart.
                        self._clock.sleep(self._rng.uniform(0, _BACKOFF_SECONDS * 2**attempt))
                    continue  # on what this instance wrote last: read what was written since
                self._written = ({**data, **fields}, written.update_time)
                return result
        raise SharedRateLimitError(
            f"could not update {self._ref.path} in {_UPDATE_ATTEMPTS} attempts: "
            "too many instances are writing it at once"
        )


def auto_rate(data: dict[str, Any], policy: AutoPolicy) -> AutoRate:
    """The rate found so far, from the document's fields (``auto_fields``); a document
    without them starts at the policy's rate."""
    if "rate_per_minute" not in data:
        return AutoRate.starting(policy)
    return AutoRate(
        per_minute=float(data["rate_per_minute"]),
        found=float(data.get("found_per_minute", 0.0)),
        resume_at=float(data.get("resume_at", 0.0)),
        sent=tuple(sorted((int(s), int(c)) for s, c in dict(data.get("sent") or {}).items())),
    )


def auto_fields(auto: AutoRate) -> dict[str, Any]:
    """The document's fields holding the rate found so far (read back by ``auto_rate``)."""
    # Firestore map keys are strings; the map is written whole, so old seconds go with it.
    return {
        "rate_per_minute": auto.per_minute,
        "found_per_minute": auto.found,
        "resume_at": auto.resume_at,
        "sent": {str(second): count for second, count in auto.sent},
    }


def served_in_minute(
    client: firestore.Client, key: str, now: float, collection: str = DEFAULT_COLLECTION
) -> int:
    """The requests the budget ``key`` (``auto``) started in the minute up to ``now``: one
    read."""
    data = client.collection(collection).document(key).get().to_dict() or {}
    return sent_within_minute(auto_rate(data, AutoPolicy()).sent, now)


def found_rate(
    client: firestore.Client,
    key: str,
    policy: AutoPolicy | None = None,
    collection: str = DEFAULT_COLLECTION,
) -> float:
    """The requests a minute found so far for the budget ``key`` (``auto``): one read; the
    policy's start before anything was found."""
    data = client.collection(collection).document(key).get().to_dict() or {}
    return auto_rate(data, policy or AutoPolicy()).per_minute


def budget_limiter(
    client: firestore.Client,
    key: str,
    per_minute: float | None,
    burst: int = 1,
    clock: Clock | None = None,
) -> FirestoreRateLimiter:
    """The limiter of the budget ``key`` at ``per_minute`` requests (None: found from Duo's
    429s, which allows no burst)."""
    if per_minute is None:
        return FirestoreRateLimiter(client, key, rate=AutoPolicy(), clock=clock)
    return FirestoreRateLimiter(client, key, rate=per_minute / 60.0, burst=burst, clock=clock)
