"""The Accounts API client against the simulator's MSP mode over real sockets: the parent's
keys list the children, read a child's telephony at the child's own host with its account_id,
and a child in another deployment is refused by name.

The simulator and the client share one fake clock, as in test_reader_against_simulator.
"""

from __future__ import annotations

import json
import random

import pytest
import requests

from shared.clock import now_ms
from shared.duo.accounts import (
    AccountsPermissionError,
    ChildAccountApi,
    ChildAccountRefusedError,
    child_http,
    child_signing,
    list_child_accounts,
)
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.paging import read_window
from shared.duo.rate_limit import TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from shared.duo.transport import DuoHttp
from simulator.dataset import DatasetSpec
from simulator.fleet_api import ACCOUNTS_PATH
from tests.fakes import FakeClock
from tests.msp_simulator import PARENT_IKEY, PARENT_SKEY, msp_simulator

pytestmark = pytest.mark.integration

SOURCE = "msp-sim"
SETTING = "DUO_ACCOUNTS_SKEY"
DAY_MS = 86_400_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock):
    with msp_simulator(clock, DatasetSpec(records=3000, days=2, seed=5)) as server:
        yield server


def duo(http: DuoHttp, signing: SigningConfig, clock: FakeClock) -> DuoApi:
    return DuoApi(
        http,
        Signer(signing, clock),
        limiter=TokenBucket(rate=1000.0, burst=1, clock=clock),
        retry=RetryPolicy(max_attempts=3, max_elapsed=60),
        clock=clock,
        rng=random.Random(2),
    )


def parent(sim, clock, ikey=PARENT_IKEY, skey=PARENT_SKEY) -> tuple[DuoApi, SigningConfig]:
    endpoint = DuoEndpoint.parse(sim.base_url)
    signing = SigningConfig(ikey, Secret(skey), endpoint.host)
    return duo(DuoHttp(endpoint), signing, clock), signing


def child_reader(sim, clock, signing, child) -> ChildAccountApi:
    http = child_http(DuoEndpoint.parse(sim.base_url), child)
    return ChildAccountApi(duo(http, child_signing(signing, child), clock), child, source=SOURCE)


def accounts(sim) -> list[dict]:
    return requests.get(f"{sim.base_url}{ACCOUNTS_PATH}", timeout=30).json()


def truth(sim, account_id: str) -> list[str]:
    body = requests.get(
        f"{sim.base_url}/__sim__/records", params={"account_id": account_id}, timeout=30
    ).text
    return [json.loads(line)["telephony_id"] for line in body.splitlines()]


def read_everything(reader, clock) -> list[str]:
    now = now_ms(clock)
    pages = read_window(reader, now - 3 * DAY_MS, now - 120_000, now_ms=now)
    return [item["telephony_id"] for page in pages for item in page.items]


def test_the_parent_lists_the_children_and_reads_each_readable_one_exactly(sim, clock):
    api, signing = parent(sim, clock)
    children = list_child_accounts(api, source=SOURCE, setting=SETTING)
    assert children.invalid == ()
    listed = {a["account_id"]: a for a in accounts(sim) if a["msp_child"]}
    assert [c.account_id for c in children.accounts] == list(listed)
    assert [c.api_hostname for c in children.accounts] == [
        a["api_hostname"] for a in listed.values()
    ]
    readable = [c for c in children.accounts if not listed[c.account_id]["refused"]]
    assert len(readable) == 3
    for child in readable:
        ids = read_everything(child_reader(sim, clock, signing, child), clock)
        assert ids == truth(sim, child.account_id)
        assert len(ids) == listed[child.account_id]["records"]


def test_a_child_in_another_deployment_is_refused_by_name(sim, clock):
    api, signing = parent(sim, clock)
    children = list_child_accounts(api, source=SOURCE, setting=SETTING).accounts
    [refused] = [a for a in accounts(sim) if a["refused"]]
    [child] = [c for c in children if c.account_id == refused["account_id"]]
    with pytest.raises(ChildAccountRefusedError) as raised:
        read_everything(child_reader(sim, clock, signing, child), clock)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: {child}, read with the parent's keys: ")
    assert "Duo answered HTTP 403 code 40301 (Access forbidden: " in message
    assert "another Duo deployment" in message
    assert PARENT_SKEY not in message


def test_keys_that_are_not_the_parent_accounts_api_are_refused_naming_the_setting(sim, clock):
    [own] = [a for a in accounts(sim) if a["ikey"]]
    api, _signing = parent(sim, clock, own["ikey"], own["skey"])
    with pytest.raises(AccountsPermissionError) as raised:
        list_child_accounts(api, source=SOURCE, setting=SETTING)
    assert str(raised.value).startswith(f"{SOURCE}: Duo refused to list the child accounts: ")
    assert SETTING in str(raised.value)
    assert raised.value.code == 40301
