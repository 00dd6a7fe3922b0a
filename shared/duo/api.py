"""One Duo Admin API call done right: rate-limited, freshly signed, classified, retried."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from shared.clock import Clock, SystemClock
from shared.duo.errors import DuoError, DuoRateLimitedError, DuoTransientError, error_from_response
from shared.duo.rate_limit import RateLimiter, TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.signing import Signer
from shared.duo.transport import DuoHttp

T = TypeVar("T")


@dataclass
class CallStats:
    """What the calls cost, for logs and the demo's summary."""

    requests: int = 0
    rate_limited: int = 0
    transient_failures: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class CountedReads(Protocol):
    """What the fetcher reads a source through: GETs and their counters. DuoApi, or a child
    account's reads, which go through one with the child's ``account_id``."""

    stats: CallStats

    def get(
        self, path: str, params: Mapping[str, str], parse: Callable[[dict[str, Any]], T]
    ) -> T: ...


class DuoApi:
    def __init__(
        self,
        http: DuoHttp,
        signer: Signer,
        *,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._signer = signer
        self._clock = clock or SystemClock()
        self._limiter = limiter or TokenBucket(clock=self._clock)
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self.stats = CallStats()

    def get(
        self,
        path: str,
        params: Mapping[str, str],
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """GETs ``path`` and returns ``parse`` of Duo's ``response`` object, retrying what may
        succeed later; ``parse`` runs inside the retry so a garbled answer is asked again."""
        return self._retried(lambda: parse(self._attempt("GET", path, params, dict)))

    def post(self, path: str, params: Mapping[str, str], parse: Callable[[Any], T]) -> T:
        """POSTs ``path`` and returns ``parse`` of Duo's ``response``, an object or a list (the
        Accounts API lists child accounts); only for reads, which are retried as ``get``'s."""
        return self._retried(lambda: parse(self._attempt("POST", path, params, (dict, list))))

    def _retried(self, attempt: Callable[[], T]) -> T:
        return self._retry.run(attempt, clock=self._clock, rng=self._rng, wait=self._wait)

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        shape: type | tuple[type, ...],
    ) -> Any:
        self._limiter.acquire()
        self.stats.requests += 1
        # Signed here, so every attempt has a fresh Date.
        if method == "POST":
            headers, content = self._signer.post(path, params)
            status, body = self._http.post(path, content, headers)
        else:
            status, body = self._http.get(path, params, self._signer.headers(method, path, params))
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if status != 200:
            raise error_from_response(status, body)
        return _ok_response(body, shape)

    def _wait(self, error: DuoError, delay: float) -> None:
        if isinstance(error, DuoRateLimitedError):
            self.stats.rate_limited += 1
            # The budget is the account's: everyone sharing the limiter waits, not just us.
            self._limiter.pause(delay)
        else:
            self.stats.transient_failures += 1
            self._clock.sleep(delay)


def _ok_response(body: bytes, shape: type | tuple[type, ...]) -> Any:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise DuoTransientError(
            f"Duo answered 200 with a body that is not JSON: {body[:120]!r}"
        ) from None
    if not isinstance(parsed, dict) or parsed.get("stat") != "OK":
        raise DuoTransientError(f"Duo answered 200 without stat OK: {body[:120]!r}")
    response = parsed.get("response")
    if not isinstance(response, shape):
        raise DuoTransientError(f"Duo answered 200 without a response object: {body[:120]!r}")
    return response
