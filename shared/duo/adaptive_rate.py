"""``DUO_RATE_LIMIT_PER_MINUTE=auto``: the account's rate limit found from Duo's 429s.

Duo publishes no limit and a 429 carries no Retry-After, but Duo counts an account's requests
per minute. So the requests Duo accepted in the minute before a 429 are the limit, as seen from
our side: the rate is cut to ``back_off`` times that count (not times the rate that overshot,
which after a fast probe may be far above it), and nobody sends again until fewer than the new
rate remain in the last minute. A 429 for a request sent in the minute after that resumption
means the count was wrong (the limit dropped, or another client shares the account): the rate
halves. One for a request sent before it is the same excess again, seen late, and cuts no more.

The rate grows only while the limit is used (a request waited for its slot), and only by the
minutes of such use: fast (``probe``, times two a minute) until the first 429 and outside the
band just under the limit found, and slowly inside it (``creep``), so that probing a steady
limit costs about one 429 each 20 minutes of saturated use. Above the limit found without a
429, the limit has risen: the probe is fast again.

All of it is pure arithmetic on an ``AutoRate``, kept with the GCRA state in the limiter's
Firestore document and updated in the same transaction that reserves slots
(``reserve_found``, ``pause_found``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from shared.duo.rate_limit import (
    WINDOW_SECONDS,
    LimitState,
    paused_state,
    reserve_slots,
    strict_interval,
)


@dataclass(frozen=True)
class AutoPolicy:
    """How the limit is searched for; every rate in requests per minute."""

    start: float = 60.0  # before anything is known: Elastic measured 50 on Duo's log endpoints
    floor: float = 1.0
    ceiling: float = 600.0
    # After a 429: this share of what Duo accepted in the minute before. The count is exact
    # for a limit that holds, so the margin is small: the strict spacing already takes 2.5 %.
    back_off: float = 0.93
    probe: float = 2.0  # growth per minute of saturated use, outside the band below the limit
    # Inside it: 0.93 to 1.0 takes about 20 minutes, so a steady limit costs about three 429
    # events an hour while the rate averages over 95 % of it.
    creep: float = 1.0035

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.start <= self.ceiling:
            raise ValueError("the auto rate needs 0 < floor <= start <= ceiling")
        if not 0 < self.back_off < 1 or self.probe <= 1 or self.creep <= 1:
            raise ValueError("the auto rate needs back_off in (0, 1) and growth above 1")


@dataclass(frozen=True)
class AutoRate:
    """The rate found so far for one Duo account."""

    per_minute: float
    # What Duo accepted in the minute before its last 429 (0: no 429 seen yet).
    found: float = 0.0
    # When sending resumed after the last cut (epoch seconds).
    resume_at: float = 0.0
    # Requests started per whole second (epoch second, count), oldest first, for the last
    # minute and the slots already handed out.
    sent: tuple[tuple[int, int], ...] = ()

    @classmethod
    def starting(cls, policy: AutoPolicy) -> AutoRate:
        return cls(per_minute=policy.start)


def sent_within_minute(sent: Iterable[tuple[int, int]], now: float) -> int:
    """Requests started in the minute up to ``now``; a second partly inside counts whole, so
    the count errs high, as a cut based on it should."""
    return sum(count for second, count in sent if now - WINDOW_SECONDS - 1 < second <= now)


def after_slots(
    auto: AutoRate, policy: AutoPolicy, now: float, slots: list[float], waited: bool
) -> AutoRate:
    """The rate after ``slots`` were handed out at ``now``; ``waited``: they followed the
    previous ones without a gap (demand is at the limit), which alone lets the rate grow."""
    counts = dict(_recent(auto.sent, now))
    for slot in slots:
        counts[math.floor(slot)] = counts.get(math.floor(slot), 0) + 1
    rate = auto.per_minute
    if waited and now >= auto.resume_at:
        rate = _grown(auto, policy, minutes=len(slots) / rate)
    return AutoRate(rate, auto.found, auto.resume_at, tuple(sorted(counts.items())))


def after_429(auto: AutoRate, policy: AutoPolicy, now: float, slot: float) -> AutoRate:
    """The rate after Duo refused the request started at ``slot``, seen at ``now``; its
    ``resume_at`` is when fewer requests than the new rate remain in the last minute."""
    sent = uncounted(auto, now, [slot]).sent
    accepted = sent_within_minute(sent, now)
    if slot < auto.resume_at:
        # Sent before the last cut took effect (another instance used a slot it held): the
        # same excess again, not news; the resumption stays, or every straggler would move it.
        rate = _clamped(min(policy.back_off * accepted, auto.per_minute), policy)
        return AutoRate(rate, max(accepted, policy.floor), auto.resume_at, sent)
    cut_failed = slot < auto.resume_at + WINDOW_SECONDS
    ceiling = auto.per_minute / 2 if cut_failed else auto.per_minute
    rate = _clamped(min(policy.back_off * accepted, ceiling), policy)
    return AutoRate(
        per_minute=rate,
        found=max(accepted, policy.floor),
        resume_at=max(now, _room_at(sent, now, rate)),
        sent=sent,
    )


def uncounted(auto: AutoRate, now: float, slots: Iterable[float]) -> AutoRate:
    """The rate with the requests of ``slots`` no longer counted: refused by Duo, which did not
    count them either, or never sent."""
    counts = dict(_recent(auto.sent, now))
    for slot in slots:
        if counts.get(math.floor(slot)):
            counts[math.floor(slot)] -= 1
    sent = tuple(sorted((s, c) for s, c in counts.items() if c))
    return AutoRate(auto.per_minute, auto.found, auto.resume_at, sent)


def reserve_found(
    state: LimitState, auto: AutoRate, policy: AutoPolicy, now: float, count: int
) -> tuple[list[float], LimitState, AutoRate]:
    """The next ``count`` slots at the rate found so far (strictly spaced, no burst), and the
    state and rate after them."""
    waited = state.tat > now  # the previous slot's successor was wanted before its time
    interval = strict_interval(auto.per_minute / WINDOW_SECONDS, 1)
    slots, state = reserve_slots(state, now, count, interval, 0.0)
    return slots, state, after_slots(auto, policy, now, slots, waited)


def pause_found(
    state: LimitState, auto: AutoRate, policy: AutoPolicy, now: float, seconds: float, slot: float
) -> tuple[LimitState, AutoRate]:
    """The state and rate after Duo refused the request started at ``slot``: nobody sends for
    ``seconds``, nor before the minute has room for the rate cut to."""
    auto = after_429(auto, policy, now, slot)
    return paused_state(state, now, max(seconds, auto.resume_at - now), 0.0), auto


def _grown(auto: AutoRate, policy: AutoPolicy, minutes: float) -> float:
    band_low = policy.back_off * auto.found
    if auto.found and band_low <= auto.per_minute <= auto.found:
        return _clamped(auto.per_minute * policy.creep**minutes, policy)
    grown = auto.per_minute * policy.probe**minutes
    if auto.per_minute < band_low:
        grown = min(grown, band_low)  # from below, fast only up to the band
    return _clamped(grown, policy)


def _room_at(sent: tuple[tuple[int, int], ...], now: float, rate: float) -> float:
    """When fewer than ``rate`` of the requests started up to ``now`` lie in the last minute."""
    past = [(second, count) for second, count in sent if second <= now]
    remaining = sent_within_minute(past, now)
    room_at = now
    for second, count in past:
        if remaining < rate:
            break
        remaining -= count
        room_at = second + 1 + WINDOW_SECONDS
    return room_at


def _recent(sent: Iterable[tuple[int, int]], now: float) -> list[tuple[int, int]]:
    return [(second, count) for second, count in sent if second > now - WINDOW_SECONDS - 1]


def _clamped(rate: float, policy: AutoPolicy) -> float:
    return min(max(rate, policy.floor), policy.ceiling)
