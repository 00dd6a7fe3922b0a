"""The simulator's fleets: many accounts on one port, each with its own keys and host, and an
MSP parent whose keys list its children and read each one with its account_id."""

from __future__ import annotations

import argparse
import json
from urllib.parse import urlencode

import pytest

from shared.duo.accounts import ACCOUNTS_LIST_PATH
from shared.duo.endpoint import is_duo_api_host
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from simulator import command
from simulator.api import TELEPHONY_PATH, ApiOptions, Response
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec, fleet_accounts, shares, spread
from simulator.fleet_api import ACCOUNTS_PATH, FleetApi
from tests.fakes import FakeClock

PARENT_IKEY = "DIMSPPARENTSIMULATOR"
PARENT_SKEY = Secret("MspParentSecretKeyForTheSimulator0000000")
DAY_MS = 86_400_000
LOOPBACK = "127.0.0.1:18443"


def make_fleet(clock: FakeClock, records: int = 600, **spec) -> FleetApi:
    options = ApiOptions(rate_limit_per_minute=spec.pop("rate_limit", 0))
    return FleetApi(
        FleetSpec(**spec),
        DatasetSpec(records=records, days=2, seed=7),
        (PARENT_IKEY, PARENT_SKEY),
        clock,
        options,
    )


def window(clock: FakeClock, **extra: str) -> dict[str, str]:
    now = int(clock.now() * 1000)
    return {
        "mintime": str(now - 3 * DAY_MS),
        "maxtime": str(now),
        "limit": "1000",
        "sort": "ts:asc",
        **extra,
    }


def get(
    api: FleetApi,
    clock: FakeClock,
    ikey: str,
    skey: Secret,
    host: str,
    params: dict[str, str],
    version: int = 5,
) -> Response:
    """A telephony GET signed for ``host`` (what the client believes it is talking to)."""
    signer = Signer(SigningConfig(ikey, skey, host.rsplit(":", 1)[0], version), clock)
    headers = {**signer.headers("GET", TELEPHONY_PATH, params), "Host": host}
    return api.handle("GET", TELEPHONY_PATH, urlencode(params), headers)


def post_list(
    api: FleetApi, clock: FakeClock, ikey: str, skey: Secret, version: int = 5
) -> Response:
    signer = Signer(SigningConfig(ikey, skey, "127.0.0.1", version), clock)
    headers, body = signer.post(ACCOUNTS_LIST_PATH, {})
    headers = {**headers, "Host": LOOPBACK}
    return api.handle("POST", ACCOUNTS_LIST_PATH, "", headers, body=body)


def truth(api: FleetApi, account_id: str) -> list[dict]:
    response = api.handle("GET", "/__sim__/records", urlencode({"account_id": account_id}), {})
    assert response.status == 200, response.content()
    return [json.loads(line) for line in response.content().splitlines()]


def listed(api: FleetApi) -> list[dict]:
    return api.handle("GET", ACCOUNTS_PATH, "", {}).json()


# --- who the accounts are ----------------------------------------------------------------------


def test_accounts_have_their_own_keys_ids_and_duo_hosts_the_same_for_a_seed():
    accounts = fleet_accounts(FleetSpec(accounts=3, msp_children=2), seed=7)
    assert [a.account_id for a in accounts] == [f"DASIM{n:015d}" for n in range(1, 6)]
    assert [a.host for a in accounts][:2] == [
        "api-sim00001.duosecurity.com",
        "api-sim00002.duosecurity.com",
    ]
    assert all(is_duo_api_host(a.host) for a in accounts)
    own, children = accounts[:3], accounts[3:]
    assert len({a.ikey for a in own}) == 3 and len({a.skey for a in own}) == 3
    assert all(len(a.ikey) == 20 and len(a.skey.reveal()) == 40 for a in own)
    assert all(a.ikey is None and a.skey is None for a in children)
    assert fleet_accounts(FleetSpec(accounts=3, msp_children=2), seed=7) == accounts
    assert fleet_accounts(FleetSpec(accounts=3, msp_children=2), seed=8)[0].skey != own[0].skey


def test_the_refused_share_is_that_many_children_and_never_an_own_key_account():
    accounts = fleet_accounts(FleetSpec(accounts=4, msp_children=10, refused_share=0.3), seed=7)
    assert [a.refused for a in accounts[:4]] == [False] * 4
    assert sum(a.refused for a in accounts[4:]) == 3


def test_spread_adds_up_to_the_records_exactly():
    assert spread(10, [0.25, 0.25, 0.25, 0.25]) == [3, 3, 2, 2]
    assert spread(600, shares(FleetSpec(accounts=3), seed=7)) == [200, 200, 200]
    assert sum(spread(12_345, shares(FleetSpec(accounts=37, distribution="zipf"), 7))) == 12_345


def test_zipf_makes_most_accounts_quiet_and_a_few_busy_by_seed():
    spec = FleetSpec(accounts=50, distribution="zipf")
    counts = spread(50_000, shares(spec, seed=7))
    ordered = sorted(counts, reverse=True)
    assert sum(ordered[:5]) > 0.5 * 50_000  # the busiest tenth hold more than half
    assert sum(count < 1000 for count in counts) > 40  # most hold less than the average
    assert ordered[:3] == [15_108, 6_576, 4_042]
    # The seed decides which accounts are the busy ones, and the same seed the same ones.
    assert counts.index(ordered[0]) == 43
    assert spread(50_000, shares(spec, seed=8)).index(ordered[0]) == 49
    assert spread(50_000, shares(spec, seed=7)) == counts


# --- accounts with their own keys ------------------------------------------------------------


def test_each_account_reads_its_own_records_with_its_own_keys():
    clock = FakeClock()
    api = make_fleet(clock, accounts=3)
    seen: list[set[str]] = []
    for account in listed(api):
        skey = Secret(account["skey"])
        for host in (LOOPBACK, account["api_hostname"]):
            response = get(api, clock, account["ikey"], skey, host, window(clock))
            assert response.status == 200, response.content()
            items = response.json()["response"]["items"]
            assert items == truth(api, account["account_id"])
            assert len(items) == account["records"] == 200
        seen.append({item["telephony_id"] for item in items})
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_an_account_key_at_another_account_host_is_unknown_there():
    clock = FakeClock()
    api = make_fleet(clock, accounts=2)
    first, second = listed(api)
    response = get(
        api, clock, first["ikey"], Secret(first["skey"]), second["api_hostname"], window(clock)
    )
    assert (response.status, response.json()["code"]) == (401, 40102)


def test_an_account_key_cannot_read_another_account_by_its_id():
    clock = FakeClock()
    api = make_fleet(clock, accounts=2)
    first, second = listed(api)
    params = window(clock, account_id=second["account_id"])
    response = get(api, clock, first["ikey"], Secret(first["skey"]), LOOPBACK, params)
    assert (response.status, response.json()["code"]) == (403, 40301)


def test_an_account_key_with_a_wrong_secret_is_refused():
    clock = FakeClock()
    api = make_fleet(clock, accounts=2)
    first, second = listed(api)
    response = get(api, clock, first["ikey"], Secret(second["skey"]), LOOPBACK, window(clock))
    assert (response.status, response.json()["code"]) == (401, 40103)


# --- an MSP parent and its children ------------------------------------------------------------


@pytest.mark.parametrize("version", [5, 2])
def test_the_parent_keys_list_the_children(version):
    clock = FakeClock()
    api = make_fleet(clock, accounts=1, msp_children=3)
    response = post_list(api, clock, PARENT_IKEY, PARENT_SKEY, version)
    assert response.status == 200, response.content()
    assert response.json() == {
        "stat": "OK",
        "response": [
            {
                "account_id": f"DASIM{n:015d}",
                "name": f"Simulated child {n}",
                "api_hostname": f"api-sim{n:05d}.duosecurity.com",
            }
            for n in (2, 3, 4)
        ],
    }


def test_an_account_key_may_not_list_children():
    clock = FakeClock()
    api = make_fleet(clock, accounts=1, msp_children=2)
    [own] = [a for a in listed(api) if a["ikey"]]
    response = post_list(api, clock, own["ikey"], Secret(own["skey"]))
    assert (response.status, response.json()["code"]) == (403, 40301)


def test_without_msp_children_there_is_no_accounts_api():
    clock = FakeClock()
    api = make_fleet(clock, accounts=2)
    response = post_list(api, clock, PARENT_IKEY, PARENT_SKEY)
    assert (response.status, response.json()["code"]) == (404, 40401)


def test_a_child_is_read_with_the_parent_keys_and_its_account_id_at_its_own_host():
    clock = FakeClock()
    api = make_fleet(clock, msp_children=2)
    for child in listed(api):
        params = window(clock, account_id=child["account_id"])
        response = get(api, clock, PARENT_IKEY, PARENT_SKEY, child["api_hostname"], params)
        assert response.status == 200, response.content()
        assert response.json()["response"]["items"] == truth(api, child["account_id"])


@pytest.mark.parametrize(
    ("host", "account_id", "detail"),
    [
        (LOOPBACK, "DASIM000000000000001", "served at api-sim00001.duosecurity.com"),
        ("api-sim00002.duosecurity.com", "DASIM000000000000001", "served at"),
        ("api-sim00001.duosecurity.com", None, "no child account None"),
        ("api-sim00001.duosecurity.com", "DASIM000000000000099", "no child account"),
    ],
    ids=["at-the-parent-address", "at-another-child-host", "no-account-id", "unknown-child"],
)
def test_a_child_read_anywhere_but_its_own_host_and_id_is_refused(host, account_id, detail):
    clock = FakeClock()
    api = make_fleet(clock, msp_children=2)
    params = window(clock, **({"account_id": account_id} if account_id else {}))
    response = get(api, clock, PARENT_IKEY, PARENT_SKEY, host, params)
    assert (response.status, response.json()["code"]) == (403, 40301)
    assert detail in response.json()["message_detail"]


def test_a_refused_child_answers_the_parent_keys_as_another_deployment_does():
    clock = FakeClock()
    api = make_fleet(clock, msp_children=4, refused_share=0.5)
    children = listed(api)
    refused = [child for child in children if child["refused"]]
    assert len(refused) == 2
    for child in children:
        params = window(clock, account_id=child["account_id"])
        response = get(api, clock, PARENT_IKEY, PARENT_SKEY, child["api_hostname"], params)
        if child["refused"]:
            body = response.json()
            assert (response.status, body["code"], body["message"]) == (
                403,
                40301,
                "Access forbidden",
            )
            assert "another Duo deployment" in body["message_detail"]
        else:
            assert response.status == 200


def child_read(api: FleetApi, clock: FakeClock, child: dict) -> int:
    params = window(clock, account_id=child["account_id"])
    return get(api, clock, PARENT_IKEY, PARENT_SKEY, child["api_hostname"], params).status


def test_rate_limit_per_account_leaves_the_other_children_their_own_budget():
    clock = FakeClock()
    api = make_fleet(clock, msp_children=2, rate_limit=2)
    first, second = listed(api)
    assert [child_read(api, clock, first) for _ in range(3)] == [200, 200, 429]
    assert [child_read(api, clock, second) for _ in range(3)] == [200, 200, 429]


def test_rate_limit_per_parent_is_shared_by_every_request_with_the_parent_keys():
    clock = FakeClock()
    api = make_fleet(clock, msp_children=2, rate_limit=3, rate_limit_scope="parent")
    first, second = listed(api)
    assert post_list(api, clock, PARENT_IKEY, PARENT_SKEY).status == 200
    assert [child_read(api, clock, first), child_read(api, clock, second)] == [200, 200]
    assert child_read(api, clock, first) == 429
    assert post_list(api, clock, PARENT_IKEY, PARENT_SKEY).status == 429
    clock.advance(60)
    assert child_read(api, clock, second) == 200


def test_the_ground_truth_of_an_unknown_account_is_refused_naming_the_list():
    clock = FakeClock()
    api = make_fleet(clock, accounts=1)
    response = api.handle("GET", "/__sim__/records", "", {})
    assert response.status == 400
    assert ACCOUNTS_PATH in response.json()["message_detail"]


# --- the command --------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("--refused-share", "0.2"), "--refused-share"),
        (("--accounts", "3", "--rate-limit-scope", "parent"), "--rate-limit-scope"),
        (("--activity-distribution", "zipf"), "--activity-distribution"),
    ],
)
def test_fleet_options_without_their_fleet_are_refused_naming_the_option(argv, named):
    # run() prints this and exits 2 before it serves anything.
    with pytest.raises(ValueError, match=named):
        command._fleet_spec(parse(*argv))


def test_without_fleet_options_the_simulator_is_the_single_account():
    args = parse()
    assert command._fleet_spec(args) is None
    assert command._fleet_spec(parse("--msp-children", "4", "--refused-share", "0.5")) == FleetSpec(
        msp_children=4, refused_share=0.5
    )
