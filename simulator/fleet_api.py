"""A fleet of Duo accounts on one port: each account's telephony log, and an MSP parent's
Accounts API (``POST /accounts/v1/account/list``).

Processing order of an API request:
1. route (404) and method (405);
2. signature (401), against every account's own keys and the parent's;
3. the account: its own keys, at its host or at the simulator's own (loopback) address, which
   stands for every host an operator configured (another host: 40102, as another deployment
   does not know the key); or the parent's keys with an ``account_id`` naming a child, at that
   child's own ``api_hostname``: a missing or unknown ``account_id``, another host, or a child
   in another deployment answer 403 40301. The parent's keys list the children; an account's
   own keys may not (40301);
4. the account's own answer (``TelephonyApi``): injected 5xx, its rate limit, parameters, the
   page. Every account has its own budget, or (``rate_limit_scope`` ``parent``) every request
   made with the parent's keys, the account list included, shares one.

``/__sim__/accounts`` lists the accounts with their keys and record counts, and
``/__sim__/records?account_id=...`` is an account's ground truth; both loopback only.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from shared.clock import Clock
from shared.duo.accounts import ACCOUNT_ID, ACCOUNTS_LIST_PATH
from shared.duo.secret import Secret
from simulator.api import (
    RECORDS_PATH,
    STATS_PATH,
    TELEPHONY_PATH,
    ApiOptions,
    Counters,
    Response,
    TelephonyApi,
    fail,
    is_loopback,
)
from simulator.dataset import Dataset, DatasetSpec
from simulator.fleet import FleetSpec, SimAccount, fleet_accounts, shares, spread
from simulator.rate_budget import MinuteBudget
from simulator.signature_check import AuthError, SignatureChecker, signed_host

ACCOUNTS_PATH = "/__sim__/accounts"
_JSON = "application/json"
_FORBIDDEN = (403, 40301, "Access forbidden")


class FleetApi:
    """Thread-safe: one lock around each API request, as ``TelephonyApi`` has."""

    def __init__(
        self,
        spec: FleetSpec,
        dataset_spec: DatasetSpec,
        parent_keys: tuple[str, Secret],
        clock: Clock,
        options: ApiOptions | None = None,
    ) -> None:
        """``dataset_spec`` is the whole fleet's: its records and live records a minute are
        spread over the accounts; ``parent_keys`` are the MSP parent's (ikey, skey)."""
        self.spec = spec
        self.options = options or ApiOptions()
        self._clock = clock
        self._parent_ikey = parent_keys[0]
        started = clock.now()
        self.accounts = fleet_accounts(spec, dataset_spec.seed)
        account_shares = shares(spec, dataset_spec.seed)
        counts = spread(dataset_spec.records, account_shares)
        self._parent_budget = MinuteBudget(
            self.options.rate_limit_per_minute, self.options.rate_limit_changes, started
        )
        self.apis: dict[str, TelephonyApi] = {}
        for account, count, share in zip(self.accounts, counts, account_shares, strict=True):
            own_spec = replace(
                dataset_spec,
                records=count,
                # Each account its own events: a seed of its own, different for every seed.
                seed=dataset_spec.seed * 1_000_003 + account.index,
                live_per_minute=dataset_spec.live_per_minute * share,
            )
            keys = {account.ikey: account.skey} if account.ikey and account.skey else {}
            rng = random.Random(f"faults:{dataset_spec.seed}:{account.index}")
            api = TelephonyApi(Dataset(own_spec, start=started), keys, clock, rng, self.options)
            if account.is_child and spec.rate_limit_scope == "parent":
                api.budget = self._parent_budget
            self.apis[account.account_id] = api
        self._by_id = {account.account_id: account for account in self.accounts}
        self._by_ikey = {account.ikey: account for account in self.accounts if account.ikey}
        keys = {account.ikey: account.skey for account in self.accounts if account.skey}
        if spec.msp_children:
            keys[parent_keys[0]] = parent_keys[1]
        self._checker = SignatureChecker(keys, clock)
        self._counters = Counters()
        self._lock = threading.Lock()

    def records(self, account_id: str) -> int:
        return len(self.apis[account_id].dataset)

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        client_address: str = "127.0.0.1",
        body: bytes = b"",
    ) -> Response:
        if path.startswith("/__sim__/"):
            return self._handle_sim(method, path, query, client_address)
        with self._lock:
            response = self._handle_api(method, path, query, headers, body)
        if self.options.slow_seconds:
            self._clock.sleep(self.options.slow_seconds)
        return response

    def _handle_api(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        c = self._counters
        c.requests += 1
        allowed = {TELEPHONY_PATH: "GET"}
        if self.spec.msp_children:
            allowed[ACCOUNTS_LIST_PATH] = "POST"
        if path not in allowed:
            c.not_found += 1
            return fail(404, 40401, "Resource not found")
        if method != allowed[path]:
            c.not_found += 1
            response = fail(405, 40501, "Method not allowed")
            response.headers.append(("Allow", allowed[path]))
            return response
        try:
            ikey = self._checker.verify(method, path, query, headers, body)
        except AuthError as error:
            c.auth_failures += 1
            return fail(error.status, error.code, error.message)
        host = signed_host(next((v for k, v in headers.items() if k.lower() == "host"), ""))
        if path == ACCOUNTS_LIST_PATH:
            return self._account_list(ikey)
        account = self._account(ikey, host, parse_qs(query, keep_blank_values=True))
        if isinstance(account, Response):
            c.auth_failures += 1
            return account
        api = self.apis[account.account_id]
        without_id = urlencode([(k, v) for k, v in parse_qsl(query, True) if k != ACCOUNT_ID])
        return api.fault() or api.answer(without_id)

    def _account_list(self, ikey: str) -> Response:
        if ikey != self._parent_ikey:
            self._counters.auth_failures += 1
            return fail(*_FORBIDDEN, "these keys are not the MSP parent's Accounts API keys")
        if not self._parent_budget.take(self._clock.now()):
            self._counters.rate_limited += 1
            return fail(429, 42901, "Too Many Requests")
        children = [
            {"account_id": a.account_id, "name": a.name, "api_hostname": a.host}
            for a in self.accounts
            if a.is_child
        ]
        body = {"stat": "OK", "response": children}
        return Response(200, [("Content-Type", _JSON)], json.dumps(body).encode())

    def _account(self, ikey: str, host: str, params: dict[str, list[str]]) -> SimAccount | Response:
        """The account a request reads, or the refusal."""
        named = params.get(ACCOUNT_ID, [None])[0]
        own = self._by_ikey.get(ikey)
        if own is not None:
            if host != own.host and not is_loopback(host):
                return fail(401, 40102, "Invalid integration key in request credentials")
            if named is not None and named != own.account_id:
                return fail(*_FORBIDDEN, f"these keys cannot read account {named}")
            return own
        child = self._by_id.get(named) if named else None
        if child is None or not child.is_child:
            return fail(*_FORBIDDEN, f"no child account {named!r} of this MSP parent")
        if host != child.host:
            return fail(*_FORBIDDEN, f"child account {named} is served at {child.host}")
        if child.refused:
            return fail(
                *_FORBIDDEN,
                f"child account {named} is in another Duo deployment: "
                "the parent's keys cannot read it",
            )
        return child

    # --- ground truth and stats ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            fleet: dict[str, Any] = asdict(self._counters)
        fleet["accounts"] = {account_id: api.stats() for account_id, api in self.apis.items()}
        return fleet

    def _handle_sim(self, method: str, path: str, query: str, client_address: str) -> Response:
        if not is_loopback(client_address):
            return fail(*_FORBIDDEN, "the simulator's endpoints are local only")
        if method != "GET":
            return fail(405, 40501, "Method not allowed")
        if path == ACCOUNTS_PATH:
            listed = [a.describe(self.records(a.account_id)) for a in self.accounts]
            return Response(200, [("Content-Type", _JSON)], json.dumps(listed).encode())
        if path == STATS_PATH:
            return Response(200, [("Content-Type", _JSON)], json.dumps(self.stats()).encode())
        if path == RECORDS_PATH:
            named = parse_qs(query).get(ACCOUNT_ID, [""])[0]
            if named not in self.apis:
                return fail(
                    400, 40002, "Invalid request parameters", f"no account {named!r}: "
                    f"name one of {ACCOUNTS_PATH} with ?account_id=",
                )  # fmt: skip
            return self.apis[named].handle("GET", RECORDS_PATH, "", {}, client_address)
        return fail(404, 40401, "Resource not found")
