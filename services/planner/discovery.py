"""The planner's sources each run: the registry synced with the configured sources and, every
``ACCOUNTS_REFRESH``, with the MSP parent's children as Duo's Accounts API lists them."""

from __future__ import annotations

import logging
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
    MSP_PARENT,
    Discovery,
    ParentSpec,
    SourcesError,
    SourceSpec,
    active,
    discovery_due,
    state_counts,
)
from shared.pipeline.wake import due

log = logging.getLogger(__name__)


class Registry(Protocol):
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
    discovery = None
    parent = settings.parent
    if parent and discovery_due(
        registry.parent(parent.id), now_ms(clock), settings.accounts_refresh_ms
    ):
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
    entries = registry.sync(settings.configured, discovery, parent.id if parent else None)
    log_states(entries)
    now = now_ms(clock)
    sources = active(entries)
    return RunSources([source for source in sources if due(entries[source], now)], sources)


def log_states(entries: Mapping[str, Mapping[str, Any]]) -> None:
    """One line per registry state with its number of accounts, every run and every state (a
    count back to 0 shows as 0): the fleet's accounts by state, for the log-based metric
    duo_telephony_accounts (deploy/monitoring/)."""
    counts = state_counts(entry.get("state") for entry in entries.values())
    for state, accounts in counts.items():
        structured_log.event(
            log,
            logging.INFO,
            f"registry: {accounts} accounts {state}",
            registry_state=state,
            accounts=accounts,
        )
