"""Duo's Accounts API: an MSP parent's child accounts, and each child's logs read with its keys.

``POST /accounts/v1/account/list``, signed with the parent's Accounts API keys, answers the
children (``account_id``, ``name``, ``api_hostname``). A child's Admin API is read at the
child's own ``api_hostname``, signed with the parent's keys, with ``account_id`` among the
signed parameters of every request, as Duo's own client does (``duo_client``'s
``AccountAdmin``). Whether Duo's v2 telephony endpoint honours ``account_id`` is not
documented, so every failure of a child's read names the child and says what Duo answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from shared.duo.endpoint import DuoEndpoint, is_duo_api_host
from shared.duo.errors import (
    DuoClockSkewError,
    DuoConfigurationError,
    DuoError,
    DuoProtocolError,
    DuoTransientError,
)
from shared.duo.paging import DuoGetter
from shared.duo.signing import SigningConfig
from shared.duo.transport import DuoHttp

T = TypeVar("T")

ACCOUNTS_LIST_PATH = "/accounts/v1/account/list"
ACCOUNT_ID = "account_id"


class AccountsPermissionError(DuoConfigurationError):
    """The parent's keys may not list child accounts (Duo's 401xx/403xx, e.g. 40301)."""


class ChildAccountError(DuoProtocolError):
    """An entry of Duo's child account list that cannot be read: no ``account_id``, or an
    ``api_hostname`` that is not a Duo API host. The other children are read."""


class ChildAccountRefusedError(DuoConfigurationError):
    """Duo forbade the parent's keys this child (403xx), as it does a child in another Duo
    deployment."""


class DuoPoster(Protocol):
    def post(self, path: str, params: Mapping[str, str], parse: Callable[[Any], T]) -> T: ...


@dataclass(frozen=True)
class ChildAccount:
    account_id: str
    name: str
    api_hostname: str  # a Duo API host name: no scheme, no port

    def __str__(self) -> str:
        return f"child account {self.name!r} ({self.account_id}) at {self.api_hostname}"


@dataclass(frozen=True)
class ChildAccounts:
    """Duo's answer: the children that can be read, and an error for each one that cannot."""

    accounts: tuple[ChildAccount, ...]
    invalid: tuple[ChildAccountError, ...]


def list_child_accounts(api: DuoPoster, *, source: str, setting: str) -> ChildAccounts:
    """The parent's child accounts. ``source`` names the deployment's source and ``setting``
    the setting holding the parent's Accounts API keys, for the errors."""
    try:
        return api.post(ACCOUNTS_LIST_PATH, {}, lambda response: _children(response, source))
    except DuoClockSkewError:
        raise
    except DuoConfigurationError as error:
        raise AccountsPermissionError(
            f"{source}: Duo refused to list the child accounts: {error.answer or error}: "
            f"check {setting}: the keys must be the parent's Accounts API integration",
            status=error.status,
            code=error.code,
            detail=error.detail,
            answer=error.answer,
        ) from None


def _children(response: Any, source: str) -> ChildAccounts:
    if not isinstance(response, list):
        raise DuoTransientError(f"Duo's child account list is not a list: {response!r:.120}")
    accounts: list[ChildAccount] = []
    invalid: list[ChildAccountError] = []
    for entry in response:
        try:
            accounts.append(_child(entry, source))
        except ChildAccountError as error:
            invalid.append(error)
    return ChildAccounts(tuple(accounts), tuple(invalid))


def _child(entry: Any, source: str) -> ChildAccount:
    if not isinstance(entry, dict):
        raise ChildAccountError(f"{source}: a child account entry is not an object: {entry!r:.120}")
    account_id, name, host = (entry.get(key) for key in (ACCOUNT_ID, "name", "api_hostname"))
    if not isinstance(account_id, str) or not account_id:
        raise ChildAccountError(f"{source}: a child account without an account_id: {entry!r:.200}")
    name = name if isinstance(name, str) else ""
    if not isinstance(host, str) or not is_duo_api_host(host):
        raise ChildAccountError(
            f"{source}: child account {name!r} ({account_id}): api_hostname {host!r} is not a "
            "Duo API host (api-<id>.duosecurity.com); it is not read"
        )
    return ChildAccount(account_id, name, host.lower())


def child_signing(parent: SigningConfig, child: ChildAccount) -> SigningConfig:
    """The parent's keys, signing for the child's host."""
    return replace(parent, host=child.api_hostname)


def child_http(parent: DuoEndpoint, child: ChildAccount, **options: Any) -> DuoHttp:
    """HTTP to the child's own ``api_hostname``; when the parent is the local simulator, the
    child's host name resolves to the simulator."""
    if parent.is_local:
        return DuoHttp(parent, host_header=child.api_hostname, **options)
    return DuoHttp(DuoEndpoint("https", child.api_hostname, None), **options)


class ChildAccountApi:
    """A child's Admin API, read with the parent's keys, as the getter the telephony reader
    takes: every request carries the child's ``account_id`` (signed with the rest), and every
    failure names the child and what Duo answered."""

    def __init__(self, api: DuoGetter, child: ChildAccount, *, source: str) -> None:
        self._api = api
        self.child = child
        self._source = source

    def get(self, path: str, params: Mapping[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        try:
            return self._api.get(path, {**params, ACCOUNT_ID: self.child.account_id}, parse)
        except DuoConfigurationError as error:
            if error.status != 403:  # credentials or clock (401xx): their own hint says which
                raise self._named(type(error), error) from None
            raise self._named(
                ChildAccountRefusedError,
                error,
                f"{self._source}: {self.child}, read with the parent's keys: "
                f"{error.answer or error}: Duo does not let the parent's keys read this child "
                "(a child in another Duo deployment is refused)",
            ) from None
        except DuoError as error:
            raise self._named(type(error), error) from None

    def _named(self, kind: type[DuoError], error: DuoError, message: str | None = None) -> DuoError:
        return kind(
            message or f"{self._source}: {self.child}: {error}",
            status=error.status,
            code=error.code,
            detail=error.detail,
            answer=error.answer,
        )
