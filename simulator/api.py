"""Duo's ``GET /admin/v2/logs/telephony`` as a pure function of (request, clock, RNG): no sockets.

Processing order of an API request, and why:
1. injected faults: a 5xx (``fail_rate``) is decided before authentication, as a failing load
   balancer or backend would answer any request; latency (``slow_seconds``) is added to every
   request, after the answer is computed (a slow response, not a late arrival);
2. route (404) and method (405);
3. signature (401, see ``signature_check``);
4. rate limit (429): one sliding 60 s budget for the whole simulator, as Duo's budget is per
   account; only requests that get past it consume it, so a client hammering through 429s
   recovers as soon as the window slides (Duo's exact behaviour is unknown);
5. parameters (400);
6. the page; ``malformed_rate`` may then replace a good 200 body with a broken one.

``/__sim__/records`` (NDJSON ground truth) and ``/__sim__/stats`` are unsigned, fault-free and
served to loopback clients only.

``TelephonyApi.hold`` is an in-process control point for tests: it keeps one chosen request
waiting, answer decided, until the test releases it, so "while page k is in flight" is a
moment the test makes rather than one it hopes to hit.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qs

from shared.clock import Clock
from shared.duo.secret import Secret
from simulator.dataset import Dataset, Record, to_item
from simulator.rate_budget import MinuteBudget
from simulator.signature_check import AuthError, SignatureChecker

TELEPHONY_PATH = "/admin/v2/logs/telephony"
RECORDS_PATH = "/__sim__/records"
STATS_PATH = "/__sim__/stats"

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Duo's server default is unconfirmed; descending punishes a client that forgets sort=ts:asc.
DEFAULT_SORT = "ts:desc"
SORTS = ("ts:asc", "ts:desc")
KNOWN_PARAMS = ("mintime", "maxtime", "limit", "sort", "next_offset")
MAX_AGE_MS = 180 * 86_400_000
_MIN_MS_TIMESTAMP = 10**11  # below this a "millisecond" timestamp is really seconds (pre-1973)
_INTEGER = re.compile(r"[0-9]+")
_TOKEN = re.compile(
    r"([0-9]+),([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.IGNORECASE
)
_JSON = "application/json"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes]  # an iterable for streamed bodies (the ground truth)

    def content(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else b"".join(self.body)

    def json(self) -> Any:
        return json.loads(self.content())

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class ApiOptions:
    rate_limit_per_minute: int = 0  # 0: no limit
    # (seconds after the simulator started, the limit from then on), in time order: the
    # account's limit changing in the middle of a run.
    rate_limit_changes: tuple[tuple[float, int], ...] = ()
    fail_rate: float = 0.0  # fraction of requests answered 500/503
    slow_seconds: float = 0.0  # latency added to every API request
    malformed_rate: float = 0.0  # fraction of good 200s whose body is broken
    # The page after a token starts with the token's own event (so with limit=1 paging never
    # advances, as it would not on a server that behaved like this).
    repeat_boundary: bool = False
    # next_offset on the last page: left out, null, or "echo": the last page still carries
    # its last event's token, and the page after it is empty and hands that token back.
    final_offset: Literal["absent", "null", "echo"] = "absent"
    # How maxtime is compared with the records' microsecond ts: "ms" takes in its whole
    # millisecond; "us" compares maxtime.000000, leaving out what falls later in it.
    boundary_precision: Literal["ms", "us"] = "ms"

    def __post_init__(self) -> None:
        if self.rate_limit_per_minute < 0:
            raise ValueError("rate_limit_per_minute must be >= 0")
        if any(limit < 0 for _, limit in self.rate_limit_changes):
            raise ValueError("rate_limit_changes: every limit must be >= 0")
        if [after for after, _ in self.rate_limit_changes] != sorted(
            after for after, _ in self.rate_limit_changes
        ):
            raise ValueError("rate_limit_changes must be in time order")
        for name in ("fail_rate", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must be >= 0")
        if self.final_offset not in ("absent", "null", "echo"):
            raise ValueError("final_offset must be 'absent', 'null' or 'echo'")
        if self.boundary_precision not in ("ms", "us"):
            raise ValueError("boundary_precision must be 'ms' or 'us'")


@dataclass
class Counters:
    requests: int = 0  # every request to the API (not /__sim__)
    ok: int = 0  # well-formed 200s
    malformed: int = 0  # 200s with a broken body
    bad_requests: int = 0  # 400
    auth_failures: int = 0  # 401
    not_found: int = 0  # 404 and 405
    rate_limited: int = 0  # 429
    server_errors: int = 0  # injected 5xx


class HeldRequest:
    """One API request that the simulator keeps waiting before it answers, until released."""

    def __init__(self, matches: Callable[[int, str], bool], timeout: float) -> None:
        self.matches = matches
        self._timeout = timeout
        self._arrived = threading.Event()
        self._released = threading.Event()
        self.number = 0  # the held request's number, counted as stats()["requests"] counts
        self.query = ""  # its raw query string

    def wait_arrived(self, timeout: float) -> str:
        """Blocks until the request is being held; returns its query string."""
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"no request to hold arrived within {timeout:.0f} s")
        return self.query

    def release(self) -> None:
        """Lets the held request have its answer (at once, if it has not arrived yet)."""
        self._released.set()

    def _hold(self, number: int, query: str) -> None:
        self.number, self.query = number, query
        self._arrived.set()
        # Bounded, so a test that fails before releasing cannot keep a server thread forever.
        self._released.wait(self._timeout)


class InvalidParams(Exception):
    """A 40002 with its message_detail."""


@dataclass(frozen=True)
class PageRequest:
    mintime: int
    maxtime: int
    limit: int
    sort: str
    token: tuple[int, str] | None  # (ms, telephony_id) of the last event of the previous page


def fail(status: int, code: int, message: str, detail: str | None = None) -> Response:
    """Duo's error answer: ``{"stat": "FAIL", "code", "message"[, "message_detail"]}``."""
    body: dict[str, Any] = {"stat": "FAIL", "code": code, "message": message}
    if detail is not None:
        body["message_detail"] = detail
    return Response(status, [("Content-Type", _JSON)], _ENCODE(body).encode())


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidParams(f"'{name}' must be given once")
    return values[0]


def _timestamp(params: dict[str, list[str]], name: str) -> int:
    value = _single(params, name)
    assert value is not None  # presence is checked first
    if not _INTEGER.fullmatch(value):
        raise InvalidParams(f"'{name}' must be an integer")
    number = int(value)
    if number < _MIN_MS_TIMESTAMP:
        raise InvalidParams(f"'{name}' must be a timestamp in milliseconds")
    return number


def parse_params(query: str, now_ms_value: int) -> PageRequest:
    """The request's parameters, validated with Duo's rules; raises InvalidParams."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - set(KNOWN_PARAMS))
    if unknown:
        raise InvalidParams(f"Unknown request parameters: {', '.join(unknown)}")
    missing = [name for name in ("mintime", "maxtime") if name not in params]
    if missing:
        raise InvalidParams(f"Missing required request parameters: {', '.join(missing)}")
    mintime = _timestamp(params, "mintime")
    maxtime = _timestamp(params, "maxtime")
    if maxtime <= mintime:
        raise InvalidParams("'maxtime' must be strictly greater than 'mintime'")
    if mintime < now_ms_value - MAX_AGE_MS:
        raise InvalidParams("mintime must be within the past 180 days")

    limit_text = _single(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not _INTEGER.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise InvalidParams(f"'limit' must be an integer between 1 and {MAX_LIMIT}")
        limit = int(limit_text)

    sort = _single(params, "sort")
    if sort is None:
        sort = DEFAULT_SORT
    elif sort not in SORTS:
        raise InvalidParams("'sort' must be 'ts:asc' or 'ts:desc'")

    token = None
    offset = _single(params, "next_offset")
    if offset is not None:
        match = _TOKEN.fullmatch(offset)
        if match is None:
            raise InvalidParams(
                "'next_offset' must be '<ms>,<telephony_id>' as returned by the previous page"
            )
        token = (int(match.group(1)), match.group(2).lower())
    return PageRequest(mintime, maxtime, limit, sort, token)


def is_loopback(address: str) -> bool:
    """Whether a client address is loopback (an IPv4-mapped IPv6 one too): the simulator's
    own endpoints answer only such clients."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


_HTML_503 = (
    b"<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>503 Service Unavailable</h1>No server is available to handle this request."
    b"</body></html>\n"
)
_HTML_MAINTENANCE = (
    b"<!DOCTYPE html><html><head><title>Duo Security</title></head><body>"
    b"<p>Scheduled maintenance in progress. Please try again later.</p></body></html>\n"
)


class TelephonyApi:
    """The simulated endpoint. Thread-safe: one lock guards the RNG, counters and budget."""

    def __init__(
        self,
        dataset: Dataset,
        keys: Mapping[str, Secret],
        clock: Clock,
        rng: random.Random,
        options: ApiOptions | None = None,
    ) -> None:
        self.dataset = dataset
        self.options = options or ApiOptions()
        self._clock = clock
        self._rng = rng
        self._checker = SignatureChecker(keys, clock)
        self._counters = Counters()
        self.budget = MinuteBudget(
            self.options.rate_limit_per_minute, self.options.rate_limit_changes, clock.now()
        )
        self._holds: list[HeldRequest] = []
        self._lock = threading.RLock()  # re-entered by ``answer`` and ``fault``

    def stats(self) -> dict[str, int]:
        with self._lock:
            counters = asdict(self._counters)
        counters["visible_records"] = self.dataset.visible_end(self._clock.now())
        return counters

    def hold(self, matches: Callable[[int, str], bool], timeout: float = 300.0) -> HeldRequest:
        """Holds the first API request for which ``matches(number, query)`` is true, where
        ``number`` counts API requests from 1 as ``stats()["requests"]`` does and ``query`` is
        the raw query string. Its answer is decided (and counted) when it arrives and sent when
        the test releases it, or after ``timeout`` seconds."""
        held = HeldRequest(matches, timeout)
        with self._lock:
            self._holds.append(held)
        return held

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        client_address: str = "127.0.0.1",
        body: bytes = b"",
    ) -> Response:
        """Answer one request. ``path`` excludes the query string; ``query`` is its raw text;
        the body is not read (the endpoint is GET only)."""
        if path.startswith("/__sim__/"):
            return self._handle_sim(method, path, client_address)
        with self._lock:
            response = self._handle_api(method, path, query, headers)
            number = self._counters.requests
            held = next((h for h in self._holds if h.matches(number, query)), None)
            if held is not None:
                self._holds.remove(held)
        if held is not None:
            held._hold(number, query)
        if self.options.slow_seconds:
            self._clock.sleep(self.options.slow_seconds)
        return response

    # --- the API ------------------------------------------------------------------------------

    def _handle_api(
        self, method: str, path: str, query: str, headers: Mapping[str, str]
    ) -> Response:
        c = self._counters
        c.requests += 1
        fault = self.fault()
        if fault is not None:
            return fault
        if path != TELEPHONY_PATH:
            c.not_found += 1
            return fail(404, 40401, "Resource not found")
        if method != "GET":
            c.not_found += 1
            response = fail(405, 40501, "Method not allowed")
            response.headers.append(("Allow", "GET"))
            return response
        try:
            self._checker.verify(method, path, query, headers)
        except AuthError as error:
            c.auth_failures += 1
            return fail(error.status, error.code, error.message)
        return self.answer(query)

    def answer(self, query: str) -> Response:
        """An authenticated telephony request's answer: the rate limit (429), the parameters
        (400), the page, perhaps made malformed. A fleet's accounts are answered here."""
        c = self._counters
        with self._lock:
            now = self._clock.now()
            if not self.budget.take(now):
                c.rate_limited += 1
                return fail(429, 42901, "Too Many Requests")  # Duo sends no Retry-After
            try:
                request = parse_params(query, int(now * 1000))
                body = self._page(request, now)
            except InvalidParams as error:
                c.bad_requests += 1
                return fail(400, 40002, "Invalid request parameters", str(error))
            if self.options.malformed_rate and self._rng.random() < self.options.malformed_rate:
                c.malformed += 1
                return self._malformed(body)
            c.ok += 1
            return Response(200, [("Content-Type", _JSON)], _ENCODE(body).encode())

    def _page(self, request: PageRequest, now: float) -> dict[str, Any]:
        data = self.dataset
        visible = data.visible_end(now)  # caps maxtime at now - 2 minutes, silently
        lo = data.first_at_or_after_ms(request.mintime, visible)
        if self.options.boundary_precision == "us":
            hi = data.first_after_us(request.maxtime * 1000, visible)
        else:
            hi = data.first_at_or_after_ms(request.maxtime + 1, visible)
        position = None
        if request.token is not None:
            position = data.index_of(*request.token, visible)
            if position is None:
                raise InvalidParams("'next_offset' does not name an event of this log")
        # Without the option the next page starts strictly after the token's event.
        step = 0 if self.options.repeat_boundary else 1
        if request.sort == "ts:asc":
            start = lo if position is None else max(lo, position + step)
            records = data.visible_from(start, hi, now)
        else:
            top = hi - 1 if position is None else min(hi - 1, position - step)
            records = data.visible_from(top, lo - 1, now, step=-1)
        page = list(itertools.islice(records, request.limit))
        more = next(records, None) is not None
        metadata: dict[str, Any] = {}
        if more:
            metadata["next_offset"] = token_for(page[-1])
        elif self.options.final_offset == "null":
            metadata["next_offset"] = None
        elif self.options.final_offset == "echo" and (page or request.token is not None):
            # An empty page after the last one: the token it was given, unchanged.
            metadata["next_offset"] = (
                token_for(page[-1]) if page else "{},{}".format(*request.token)
            )
        metadata["total_objects"] = sum(1 for _ in data.visible_from(lo, hi, now))
        return {
            "stat": "OK",
            "response": {"items": [to_item(r) for r in page], "metadata": metadata},
        }

    def fault(self) -> Response | None:
        """An injected 5xx (``fail_rate``), or None."""
        with self._lock:
            if self.options.fail_rate and self._rng.random() < self.options.fail_rate:
                self._counters.server_errors += 1
                return self._server_error()
        return None

    def _server_error(self) -> Response:
        kind = self._rng.randrange(3)
        if kind == 0:
            return fail(500, 50000, "Internal server error")
        if kind == 1:
            return fail(503, 50300, "Service temporarily unavailable")
        return Response(503, [("Content-Type", "text/html")], _HTML_503)

    def _malformed(self, body: dict[str, Any]) -> Response:
        kind = self._rng.randrange(5)
        if kind == 0:  # cut mid-stream
            good = _ENCODE(body).encode()
            return Response(200, [("Content-Type", _JSON)], good[: max(1, len(good) // 2)])
        if kind == 1:  # a proxy's HTML page with a 200
            return Response(200, [("Content-Type", "text/html")], _HTML_MAINTENANCE)
        if kind == 2:
            return Response(200, [("Content-Type", _JSON)], b'{"stat":"OK"}')
        if kind == 3:  # items as an object instead of a list
            items = {str(i): item for i, item in enumerate(body["response"]["items"])}
            broken = {"stat": "OK", "response": {**body["response"], "items": items}}
            return Response(200, [("Content-Type", _JSON)], _ENCODE(broken).encode())
        return Response(200, [("Content-Type", _JSON)], b"")

    # --- ground truth and stats ---------------------------------------------------------------

    def _handle_sim(self, method: str, path: str, client_address: str) -> Response:
        if not is_loopback(client_address):
            return fail(403, 40301, "Access forbidden", "the simulator's endpoints are local only")
        if path not in (RECORDS_PATH, STATS_PATH):
            return fail(404, 40401, "Resource not found")
        if method != "GET":
            return fail(405, 40501, "Method not allowed")
        if path == STATS_PATH:
            return Response(200, [("Content-Type", _JSON)], _ENCODE(self.stats()).encode())
        now = self._clock.now()
        records = self.dataset.visible_from(0, self.dataset.visible_end(now), now)
        return Response(200, [("Content-Type", "application/x-ndjson")], self._ndjson(records))

    def _ndjson(self, records: Iterator[Record], batch: int = 1000) -> Iterator[bytes]:
        # Streamed in batches: the ground truth may be large, and is never built whole.
        while chunk := list(itertools.islice(records, batch)):
            yield "".join(_ENCODE(to_item(r)) + "\n" for r in chunk).encode()


def token_for(record: Record) -> str:
    """The paging token naming ``record``: ``"<ms>,<telephony_id>"``."""
    return f"{record.ts_ms},{record.telephony_id}"
