"""The planner's sources each run: the registry synced with the configured sources and, every
``ACCOUNTS_REFRESH``, with the MSP parent's children as Duo's Accounts API lists them. Between
those syncs a run reads only the entries whose wake has come (``RegistrySources``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services import structured_log
from services.settings import PlannerSettings
from shared.clock import Clock, now_ms
from shared.duo.accounts import DuoPoster, list_child_accounts
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.errors import DuoError
from shared.duo.rate_limit import RateLimiter
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from shared.gcp.secret_manager import CachedSecrets, SecretUnavailableError
from shared.pipeline.sources import (
    ACTIVE,
    MSP_PARENT,
    Discovery,
    ParentSpec,
    SourcesError,
    SourceSpec,
    active,
    discovery_due,
    retry_due,
    state_counts,
)
from shared.pipeline.wake import due

log = logging.getLogger(__name__)


class Registry(Protocol):
    def due(self, now_ms: int) -> dict[str, dict[str, Any]]: ...

    def parent(self, parent: str) -> dict[str, Any] | None: ...

    def sync(
        self,
        configured: Iterable[SourceSpec],
        discovery: Discovery | None,
        parent: str | None = None,
    ) -> dict[str, dict[str, Any]]: ...


def parent_api(
    parent: ParentSpec, skey: Secret, clock: Clock, limiter: RateLimiter | None = None
) -> DuoPoster:
    """The parent's Accounts API, signed with its keys; ``limiter``: the budget the listing
    shares with the children's reads, when Duo counts them against the parent's keys."""
    endpoint = DuoEndpoint.parse(parent.api_host, f"{MSP_PARENT}.api_host")
    signer = Signer(SigningConfig(parent.ikey, skey, endpoint.host), clock)
    return DuoApi(DuoHttp(endpoint), signer, limiter=limiter, clock=clock)


def discover(
    parent: ParentSpec,
    secrets: CachedSecrets,
    clock: Clock,
    connect: Callable[[ParentSpec, Secret, Clock], DuoPoster] = parent_api,
) -> Discovery:
    """The parent's children that its allow and deny lists admit, as sources; a failed listing
    (a missing secret, Duo's 40301, an outage) is the Discovery's one-line error."""
    try:
        skey = secrets.get(parent.skey_secret)
    except SecretUnavailableError as error:
        return Discovery(parent.id, error=f"{parent.id}: {MSP_PARENT}.skey_secret: {error}")
    try:
        listed = list_child_accounts(
            connect(parent, skey, clock), source=parent.id, setting=MSP_PARENT
        )
    except DuoError as error:
        return Discovery(parent.id, error=str(error))
    children, invalid = [], [str(error) for error in listed.invalid]
    for child in listed.accounts:
        if parent.admits(child.account_id, child.name):
            try:
                children.append(parent.child(child.account_id, child.name, child.api_hostname))
            except SourcesError as error:
                invalid.append(str(error))
    return Discovery(parent.id, tuple(children), tuple(invalid))


@dataclass(frozen=True)
class RunSources:
    """A run's sources: those planned (their run is due) and every active one (an MSP
    parent's children share its budget whether their run is due or not)."""

    due: list[str]
    active: list[str]


def planned_sources(
    settings: PlannerSettings,
    registry: Registry,
    list_children: Callable[[ParentSpec], Discovery],
    clock: Clock,
) -> RunSources:
    """Syncs the registry (listing the parent's children when due) and returns its active
    sources, and those whose run is due (``shared.pipeline.wake``), to be planned this run."""
    parent = settings.parent
    parent_doc = registry.parent(parent.id) if parent else None
    return _listed(_synced(settings, registry, list_children, clock, parent_doc), now_ms(clock))


def _synced(
    settings: PlannerSettings,
    registry: Registry,
    list_children: Callable[[ParentSpec], Discovery],
    clock: Clock,
    parent_doc: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """The registry synced, the parent's children listed when due (``parent_doc``: its
    entry): every entry."""
    discovery = None
    parent = settings.parent
    if parent and discovery_due(parent_doc, now_ms(clock), settings.accounts_refresh_ms):
        discovery = list_children(parent)
        level = logging.ERROR if discovery.error or discovery.invalid else logging.INFO
        structured_log.event(
            log,
            level,
            f"listed the child accounts of {parent.id}",
            children=len(discovery.children),
            error=discovery.error,
            invalid=list(discovery.invalid),
        )
    return registry.sync(settings.configured, discovery, parent.id if parent else None)


def _listed(entries: Mapping[str, Mapping[str, Any]], now: int) -> RunSources:
    """The run's sources from every entry of the registry, its states logged."""
    log_states(entry.get("state") for entry in entries.values())
    sources = active(entries)
    return RunSources([source for source in sources if due(entries[source], now)], sources)


class RegistrySources:
    """The planner's sources, run after run, without reading the whole registry each minute
    (a read per account-minute). The registry is synced (``planned_sources``) at this
    process's first run, every ``ACCOUNTS_REFRESH``, when the parent's children are listed
    (by this planner or another: the parent's entry changed) and when a refused or broken
    configured source is due to be tried again. The runs between read only the entries whose
    wake has come (``SourceRegistry.due``: the active ones due, and every refused or broken
    one, due every run). Which sources there are changes only by a sync, and an entry's
    trouble is seen by that read, so the active sources and the states' counts are those a
    whole read would give. The configured sources are this process's: a changed sources file
    is a new deployment, synced at its first run."""

    def __init__(
        self,
        settings: PlannerSettings,
        registry: Registry,
        list_children: Callable[[ParentSpec], Discovery],
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._list_children = list_children
        self._clock = clock
        self._lock = threading.Lock()
        self._synced_at: int | None = None
        self._parent_doc: dict[str, Any] | None = None
        # Each entry's state as the last sync left it.
        self._states: dict[str, Any] = {}

    def __call__(self) -> RunSources:
        with self._lock:
            now = now_ms(self._clock)
            parent = self._settings.parent
            parent_doc = self._registry.parent(parent.id) if parent else None
            if self._sync_due(parent_doc, now):
                return self._sync(parent_doc, now)
            woken = self._registry.due(now)
            refresh = self._settings.accounts_refresh_ms
            # A configured source is tried again ACCOUNTS_REFRESH after its trouble; a child
            # at its parent's next listing, which syncs anyway.
            configured = {spec.id for spec in self._settings.configured}
            if any(retry_due(woken[s], now, refresh) for s in configured & woken.keys()):
                return self._sync(parent_doc, now)
            states = self._states | {source: entry.get("state") for source, entry in woken.items()}
            log_states(states.values())
            planned = sorted(s for s, entry in woken.items() if entry.get("state") == ACTIVE)
            return RunSources(planned, sorted(s for s, state in states.items() if state == ACTIVE))

    def _sync_due(self, parent_doc: dict[str, Any] | None, now: int) -> bool:
        refresh = self._settings.accounts_refresh_ms
        return (
            self._synced_at is None
            or now - self._synced_at >= refresh
            or parent_doc != self._parent_doc
            or (self._settings.parent is not None and discovery_due(parent_doc, now, refresh))
        )

    def _sync(self, parent_doc: dict[str, Any] | None, now: int) -> RunSources:
        settings, registry, parent = self._settings, self._registry, self._settings.parent
        entries = _synced(settings, registry, self._list_children, self._clock, parent_doc)
        # Read again, as a listing in this run rewrote it: from now on only another planner's
        # listing changes it.
        self._parent_doc = registry.parent(parent.id) if parent else None
        self._synced_at = now
        self._states = {source: entry.get("state") for source, entry in entries.items()}
        return _listed(entries, now)


def log_states(states: Iterable[str | None]) -> None:
    """One line per registry state with its number of accounts (``states``: each entry's),
    every run and every state (a count back to 0 shows as 0): the fleet's accounts by state,
    for the log-based metric duo_telephony_accounts (deploy/monitoring/)."""
    counts = state_counts(states)
    for state, accounts in counts.items():
        structured_log.event(
            log,
            logging.INFO,
            f"registry: {accounts} accounts {state}",
            registry_state=state,
            accounts=accounts,
        )
