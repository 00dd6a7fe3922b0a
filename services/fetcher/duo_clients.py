"""Duo API clients for the fetcher, one set per source (Duo account): a source configured by
the single-account variables or ``DUO_SOURCES``, or one the registry holds (the sources file's,
and an MSP parent's children, read with the parent's keys at the child's own host).

Each source has one HTTP session and one rate limiter shared by every thread of the
instance; the limiter's state lives in Firestore so every instance shares the account's budget.
A registry source's secret is read by name when it is first needed, so a missing secret stops
that source only, and is shown on its registry entry, as is a child Duo refuses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from google.cloud import firestore

from services.settings import DuoSource, FetcherSettings
from shared.clock import Clock, now_ms
from shared.duo.accounts import (
    ChildAccount,
    ChildAccountApi,
    ChildAccountRefusedError,
    child_http,
    child_signing,
)
from shared.duo.api import CountedReads, DuoApi
from shared.duo.endpoint import DuoEndpoint, EndpointError
from shared.duo.retry import RetryPolicy
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from shared.gcp.child_limiter import ChildLimiter
from shared.gcp.rate_limiter import FirestoreRateLimiter, budget_limiter
from shared.gcp.rate_scope_store import RateScopeStore
from shared.gcp.secret_manager import CachedSecrets, SecretUnavailableError
from shared.gcp.source_registry import CachedEntries
from shared.pipeline.rate_share import AUTO, budget_key, budget_rate
from shared.pipeline.sources import BROKEN, REFUSED, REFUSED_FIX, SourceSpec, trouble

T = TypeVar("T")
_Limiter = FirestoreRateLimiter | ChildLimiter


class UnknownSourceError(LookupError):
    """A task names a Duo account this deployment does not have."""


class SourceUnavailableError(RuntimeError):
    """A registry source cannot be read for our own configuration (its secret is missing, its
    host is not valid); recorded on its entry, and its windows wait for it to be fixed."""


@dataclass(frozen=True)
class _Account:
    """What a source's clients are built from."""

    http: DuoHttp
    signing: SigningConfig
    child: ChildAccount | None = None


class DuoClients:
    def __init__(
        self,
        settings: FetcherSettings,
        db: firestore.Client,
        clock: Clock,
        entries: CachedEntries | None = None,
        secrets: CachedSecrets | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self._entries = entries
        self._secrets = secrets
        self._lock = threading.Lock()
        # Per source: what it was built from (a registry entry's spec may change), and its
        # session, signer and limiter.
        self._shared: dict[str, tuple[object, DuoHttp, Signer, _Limiter, ChildAccount | None]] = {}
        # By budget key and rate: the limiters, each shared by the sources drawing from it.
        self._limiters: dict[tuple[str, float | None], FirestoreRateLimiter] = {}
        # By MSP parent under ``auto``: the decision whether Duo counts its children per account.
        self._scopes: dict[str, RateScopeStore] = {}
        # A page's retries (at most 5 minutes, the lease renewed meanwhile) and the fetch
        # budget together end within Pub/Sub's 10-minute ack deadline.
        self._retry = RetryPolicy()

    def _configured(self, source_id: str) -> DuoSource | None:
        return self._settings.sources.get(source_id)

    def _spec(self, source_id: str) -> SourceSpec:
        entry = self._entries.entry(source_id) if self._entries else None
        if entry is None:
            raise UnknownSourceError(f"source {source_id!r} is not configured in this deployment")
        return SourceSpec.from_fields(entry)

    def _account(self, source: DuoSource | SourceSpec) -> _Account:
        if isinstance(source, DuoSource):
            signing = SigningConfig(
                source.ikey,
                source.skey,
                source.endpoint.host,
                source.signature_version,  # type: ignore[arg-type]
                source.digest,  # type: ignore[arg-type]
            )
            return _Account(DuoHttp(source.endpoint), signing)
        try:
            if self._secrets is None or source.skey_secret is None:
                raise SecretUnavailableError("no secret name")
            skey = self._secrets.get(source.skey_secret)
            if source.account_id is None:
                endpoint = DuoEndpoint.parse(source.api_host, f"{source.setting}.api_host")
                return _Account(DuoHttp(endpoint), SigningConfig(source.ikey, skey, endpoint.host))
            parent = DuoEndpoint.parse(source.parent_api_host or "", f"{source.setting}.api_host")
        except (SecretUnavailableError, EndpointError) as error:
            message = f"source {source.id}: {source.setting}: {error}"
            self._trouble(source.id, trouble(BROKEN, message, None, now_ms(self._clock), None))
            raise SourceUnavailableError(message) from None
        child = ChildAccount(source.account_id, source.name, source.api_host)
        signing = child_signing(SigningConfig(source.ikey, skey, parent.host), child)
        return _Account(child_http(parent, child), signing, child)

    def _limiter(self, source_id: str, source: DuoSource | SourceSpec) -> _Limiter:
        """The source's own limiter, or its MSP parent's that every child shares (one per
        instance, so a live window's request goes before any child's backfill); under
        ``auto``, both (ChildLimiter)."""
        parent, scope = (
            (None, None) if isinstance(source, DuoSource) else (source.parent, source.rate_limit)
        )
        key = budget_key(source_id, parent, scope)
        per_minute = budget_rate(scope, self._settings.rate_per_minute)
        shared = self._budget(key, per_minute)
        if parent is None or scope != AUTO:
            return shared
        with self._lock:
            store = self._scopes.get(parent)
            if store is None:
                store = self._scopes[parent] = RateScopeStore(self._db, parent, self._clock)
        return ChildLimiter(self._budget(source_id, None), shared, store, self._clock)

    def _budget(self, key: str, per_minute: float | None) -> FirestoreRateLimiter:
        with self._lock:
            limiter = self._limiters.get((key, per_minute))
            if limiter is None:
                limiter = budget_limiter(
                    self._db, key, per_minute, self._settings.burst, self._clock
                )
                self._limiters[(key, per_minute)] = limiter
        return limiter

    def _trouble(self, source_id: str, update: dict[str, Any]) -> None:
        if self._entries is not None:
            self._entries.trouble(source_id, update)

    def api(self, source_id: str, live: bool = False) -> CountedReads:
        """A client with its own call counters, sharing the source's session and limiter; a
        ``live`` window's requests go before the backfill's waiting in this instance. A
        child's client signs its ``account_id`` into every request."""
        source: DuoSource | SourceSpec | None = self._configured(source_id)
        if source is None:
            source = self._spec(source_id)
        with self._lock:
            built = self._shared.get(source_id)
        if built is None or built[0] != source:
            account = self._account(source)
            limiter = self._limiter(source_id, source)
            signer = Signer(account.signing, self._clock)
            built = (source, account.http, signer, limiter, account.child)
            with self._lock:
                self._shared[source_id] = built
        _, http, signer, limiter, child = built
        api = DuoApi(
            http,
            signer,
            limiter=_LiveFirst(limiter) if live else limiter,
            retry=self._retry,
            clock=self._clock,
        )
        if child is None:
            return api
        return _ChildApi(api, child, source_id, self._refused)

    def _refused(self, source_id: str, error: ChildAccountRefusedError) -> None:
        self._trouble(
            source_id, trouble(REFUSED, str(error), error.code, now_ms(self._clock), REFUSED_FIX)
        )

    def host(self, source_id: str) -> str:
        configured = self._configured(source_id)
        return configured.endpoint.host if configured else self._spec(source_id).api_host


class _ChildApi(ChildAccountApi):
    """A child's reads with the call counters the fetcher reports; Duo refusing the parent's
    keys this child is recorded on its registry entry (the child stops being planned until
    ``ACCOUNTS_REFRESH``) and raised on: an account-wide error, so its windows only back off."""

    def __init__(
        self,
        api: DuoApi,
        child: ChildAccount,
        source: str,
        refused: Callable[[str, ChildAccountRefusedError], None],
    ) -> None:
        super().__init__(api, child, source=source)
        self.stats = api.stats
        self._source_id = source
        self._refused = refused

    def get(self, path: str, params: Mapping[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        try:
            return super().get(path, params, parse)
        except ChildAccountRefusedError as error:
            self._refused(self._source_id, error)
            raise


class _LiveFirst:
    """The source's limiter, asked for urgent slots: a live window's requests."""

    def __init__(self, limiter: _Limiter) -> None:
        self._limiter = limiter

    def acquire(self) -> None:
        self._limiter.acquire(urgent=True)

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)
