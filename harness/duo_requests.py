"""Every request the simulated Duo answered, and what each was for: the backfill (a window
holding records that existed when the run started) or the live records that came after.

A request is classified by the window it reads (its ``mintime``), not by when it was sent, so
a live window fetched in the middle of the backfill counts as live, and a backfill window
fetched late as backfill.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from simulator.api import TELEPHONY_PATH, Response, TelephonyApi

RATE_LIMITED = 429
# A request for one record is a late-record check: it reads Duo's count, not the records.
CHECK_LIMIT = 1


@dataclass(frozen=True)
class DuoRequest:
    at: float  # epoch seconds, when it arrived
    mintime: int | None  # ms; None when the query did not carry a readable one
    limit: int | None
    status: int

    @classmethod
    def parse(cls, at: float, query: str, status: int) -> DuoRequest:
        params = parse_qs(query)
        return cls(at, _integer(params, "mintime"), _integer(params, "limit"), status)


def _integer(params: Mapping[str, list[str]], name: str) -> int | None:
    values = params.get(name)
    return int(values[0]) if values and values[0].isdigit() else None


class RecordingApi(TelephonyApi):
    """The simulator's API, keeping a list of the telephony requests it answered."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._recorded: list[DuoRequest] = []
        self._recording = threading.Lock()

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        client_address: str = "127.0.0.1",
    ) -> Response:
        at = self._clock.now()
        response = super().handle(method, path, query, headers, client_address)
        if path == TELEPHONY_PATH:
            with self._recording:
                self._recorded.append(DuoRequest.parse(at, query, response.status))
        return response

    def requests(self) -> list[DuoRequest]:
        with self._recording:
            return list(self._recorded)


@dataclass(frozen=True)
class RequestCounts:
    backfill: int  # answered requests for windows starting before the backfill's end
    live: int  # answered requests for windows after it
    backfill_checks: int  # of the backfill's, the late-record checks (one record asked for)
    live_checks: int  # of the live ones, the same
    rate_limited: int  # 429s, whatever the window
    per_minute: float | None  # answered requests a minute while the backfill was fetched


def classify(requests: Iterable[DuoRequest], backfill_end_ms: int) -> RequestCounts:
    """Counts the requests by what they were for; ``backfill_end_ms`` is where the records
    that existed at the start end (the simulator's first visible end)."""
    backfill = live = backfill_checks = live_checks = limited = 0
    answered: list[float] = []
    fetching: list[float] = []  # the backfill's reads (its checks come minutes later)
    for request in requests:
        if request.status == RATE_LIMITED:
            limited += 1
            continue
        answered.append(request.at)
        check = request.limit == CHECK_LIMIT
        if request.mintime is not None and request.mintime < backfill_end_ms:
            backfill += 1
            backfill_checks += check
            if not check:
                fetching.append(request.at)
        else:
            live += 1
            live_checks += check
    return RequestCounts(
        backfill, live, backfill_checks, live_checks, limited, _rate(answered, fetching)
    )


def in_span(requests: Iterable[DuoRequest], start: float, end: float) -> int:
    """Answered requests that arrived from ``start`` to ``end`` (epoch seconds)."""
    return sum(1 for r in requests if r.status != RATE_LIMITED and start <= r.at < end)


def _rate(answered: list[float], fetching: list[float]) -> float | None:
    """Answered requests a minute from the backfill's first read to its last, live ones and
    checks included: what the budget gave while there was a backlog. None under two reads."""
    if len(fetching) < 2:
        return None
    first, last = min(fetching), max(fetching)
    if last <= first:
        return None
    inside = sum(1 for at in answered if first <= at <= last)
    return (inside - 1) * 60 / (last - first)
