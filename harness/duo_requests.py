"""What each Duo request was for: the backfill (a window holding records that existed when the
run started) or the live records that came after, a window's read or a late-record check.

One rule, seen two ways: the requests the simulated Duo answered (``RecordingApi``, what the
benchmark counts) and the fetcher's log lines (``requests_by_kind``, ``repair_cost``: what the
demo counts, against a real Duo too). A request is classified by the time it reads (its
``mintime``), not by when it was sent, so a live window fetched in the middle of the backfill
counts as live, and a backfill window fetched late as backfill.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from services.fetcher.window_fetch import CHECK_EVENT
from shared.duo.paging import COUNT_LIMIT
from shared.pipeline.ids import parse_window_id
from simulator.api import TELEPHONY_PATH, Response, TelephonyApi

BACKFILL, LIVE, BACKFILL_CHECKS, LIVE_CHECKS = "backfill", "live", "backfill checks", "live checks"
RATE_LIMITED = 429


def kind(mintime: int | None, check: bool, backlog_end_ms: int) -> str:
    """What a request served: the backfill when the time it reads starts before
    ``backlog_end_ms`` (the end of what Duo held when the run began), else the live records."""
    backfill = mintime is not None and mintime < backlog_end_ms
    if check:
        return BACKFILL_CHECKS if backfill else LIVE_CHECKS
    return BACKFILL if backfill else LIVE


def is_check(entry: Mapping[str, Any]) -> bool:
    """Whether a fetcher log entry is a late-record check's (its message starts CHECK_EVENT)."""
    return str(entry.get("message", "")).startswith(CHECK_EVENT)


def window_mintime(window: str) -> int:
    """A window id's ``mintime``; refuses what ``shared.pipeline.ids.window_id`` would not
    have written."""
    return parse_window_id(window)[0]


def requests_by_kind(entries: Iterable[Mapping[str, Any]], backlog_end_ms: int) -> Counter[str]:
    """Duo requests (429s included) per kind, added up from the fetcher's log entries: one per
    window task (its ``window_id``) and one per check (the ``mintime`` of its span)."""
    counts: Counter[str] = Counter()
    for entry in entries:
        requests = int(entry.get("requests") or 0)
        if not requests:
            continue
        if is_check(entry):
            counts[kind(int(entry["mintime"]), True, backlog_end_ms)] += requests
        elif "window_id" in entry:
            mintime = window_mintime(str(entry["window_id"]))
            counts[kind(mintime, False, backlog_end_ms)] += requests
    return counts


@dataclass(frozen=True)
class RepairCost:
    """What the late-record repair spent, from the fetcher's one line per task."""

    check_requests: int = 0  # span checks: two Duo counts per span
    bisection_requests: int = 0  # counts of parts of a span that differed, finding its windows
    reread_requests: int = 0  # windows read again after a check or a lost batch
    records_repaired: int = 0  # records those re-reads landed (none was in the bucket yet)
    windows_reread: int = 0
    windows_reread_for_nothing: int = 0  # of those, windows whose re-reads landed no record

    @property
    def requests(self) -> int:
        return self.check_requests + self.bisection_requests + self.reread_requests

    @property
    def requests_per_record(self) -> float | None:
        """The repair's requests per record it landed; None when it landed none."""
        return self.requests / self.records_repaired if self.records_repaired else None


def repair_cost(entries: Iterable[Mapping[str, Any]]) -> RepairCost:
    """The late-record repair's requests and records, from the fetcher's log entries: its span
    checks (their counts of parts, ``bisected``, apart) and its re-read windows (``reread``)."""
    checks = bisections = rereads = 0
    landed: Counter[str] = Counter()  # records landed per window read again
    for entry in entries:
        if is_check(entry):
            bisected = int(entry.get("bisected") or 0)
            checks += int(entry.get("requests") or 0) - bisected
            bisections += bisected
        elif entry.get("reread"):
            rereads += int(entry.get("requests") or 0)
            landed[str(entry.get("window_id"))] += int(entry.get("records") or 0)
    nothing = sum(1 for records in landed.values() if not records)
    return RepairCost(checks, bisections, rereads, landed.total(), len(landed), nothing)


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
        body: bytes = b"",
    ) -> Response:
        at = self._clock.now()
        response = super().handle(method, path, query, headers, client_address, body)
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
    counts: Counter[str] = Counter()
    limited = 0
    answered: list[float] = []
    fetching: list[float] = []  # the backfill's reads (its checks come minutes later)
    for request in requests:
        if request.status == RATE_LIMITED:
            limited += 1
            continue
        answered.append(request.at)
        # Duo sees a late-record check as a count: a request for one record.
        served = kind(request.mintime, request.limit == COUNT_LIMIT, backfill_end_ms)
        counts[served] += 1
        if served == BACKFILL:
            fetching.append(request.at)
    return RequestCounts(
        counts[BACKFILL] + counts[BACKFILL_CHECKS],
        counts[LIVE] + counts[LIVE_CHECKS],
        counts[BACKFILL_CHECKS],
        counts[LIVE_CHECKS],
        limited,
        _rate(answered, fetching),
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
