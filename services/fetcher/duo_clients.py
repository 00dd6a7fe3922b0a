"""Duo API clients for the fetcher, one set per configured source (Duo account).

Each source has one HTTP session and one rate limiter shared by every thread of the
instance; the limiter's state lives in Firestore so every instance shares the account's budget.
"""

from __future__ import annotations

import threading

from google.cloud import firestore

from services.settings import DuoSource, FetcherSettings
from shared.clock import Clock
from shared.duo.adaptive_rate import AutoPolicy
from shared.duo.api import DuoApi
from shared.duo.retry import RetryPolicy
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from shared.gcp.rate_limiter import FirestoreRateLimiter


class UnknownSourceError(LookupError):
    """A task names a Duo account this deployment does not have."""


class DuoClients:
    def __init__(self, settings: FetcherSettings, db: firestore.Client, clock: Clock) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._shared: dict[str, tuple[DuoHttp, Signer, FirestoreRateLimiter]] = {}
        # A page's retries (at most 5 minutes, the lease renewed meanwhile) and the fetch
        # budget together end within Pub/Sub's 10-minute ack deadline.
        self._retry = RetryPolicy()

    def _source(self, source_id: str) -> DuoSource:
        source = self._settings.sources.get(source_id)
        if source is None:
            raise UnknownSourceError(f"source {source_id!r} is not configured in this deployment")
        return source

    def api(self, source_id: str, live: bool = False) -> DuoApi:
        """A client with its own call counters, sharing the source's session and limiter; a
        ``live`` window's requests go before the backfill's waiting in this instance."""
        source = self._source(source_id)
        with self._lock:
            if source_id not in self._shared:
                signing = SigningConfig(
                    source.ikey,
                    source.skey,
                    source.endpoint.host,
                    source.signature_version,  # type: ignore[arg-type]
                    source.digest,  # type: ignore[arg-type]
                )
                per_minute = self._settings.rate_per_minute
                limiter = FirestoreRateLimiter(
                    self._db,
                    source_id,
                    rate=AutoPolicy() if per_minute is None else per_minute / 60.0,
                    burst=self._settings.burst,
                    clock=self._clock,
                )
                self._shared[source_id] = (
                    DuoHttp(source.endpoint),
                    Signer(signing, self._clock),
                    limiter,
                )
            http, signer, limiter = self._shared[source_id]
        return DuoApi(
            http,
            signer,
            limiter=_LiveFirst(limiter) if live else limiter,
            retry=self._retry,
            clock=self._clock,
        )

    def host(self, source_id: str) -> str:
        return self._source(source_id).endpoint.host


class _LiveFirst:
    """The source's limiter, asked for urgent slots: a live window's requests."""

    def __init__(self, limiter: FirestoreRateLimiter) -> None:
        self._limiter = limiter

    def acquire(self) -> None:
        self._limiter.acquire(urgent=True)

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)
