"""The simulator over real sockets, driven by Duo's official client and by our own signer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import duo_client
import pytest
import requests

from shared.clock import SystemClock
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from simulator.api import TELEPHONY_PATH, TelephonyApi
from simulator.dataset import Dataset, DatasetSpec
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

IKEY = "DIINTEGRATIONSIM0001"
SKEY = "IntegrationSecretKeyForTheSimulator00000"
RECORDS = 5000


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    clock = SystemClock()
    dataset = Dataset(DatasetSpec(records=RECORDS, days=2, seed=11), clock.now())
    api = TelephonyApi(dataset, {IKEY: Secret(SKEY)}, clock, random.Random(0))
    with SimulatorServer(api, port=0) as server:
        yield server


@pytest.fixture(scope="module")
def ground_truth(sim: SimulatorServer) -> list[dict]:
    response = requests.get(f"{sim.base_url}/__sim__/records", timeout=30)
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def window() -> dict[str, str]:
    now_ms = int(time.time() * 1000)
    return {
        "mintime": str(now_ms - 3 * 86_400_000),
        "maxtime": str(now_ms - 120_000),
        "limit": "1000",
        "sort": "ts:asc",
    }


def admin(sim: SimulatorServer, sig_version: int, skey: str = SKEY, ikey: str = IKEY):
    return duo_client.Admin(
        ikey, skey, host="127.0.0.1", port=sim.port, ca_certs="HTTP", sig_version=sig_version
    )


def page_with_duo_client(client: duo_client.Admin) -> list[dict]:
    params = window()
    items: list[dict] = []
    while True:
        response = client.json_api_call("GET", TELEPHONY_PATH, params)
        items.extend(response["items"])
        token = response["metadata"].get("next_offset")
        if not token:
            return items
        params["next_offset"] = token


def test_ground_truth_has_every_record(ground_truth) -> None:
    assert len(ground_truth) == RECORDS


@pytest.mark.parametrize(
    ("sig_version", "digestmod"),
    [(5, hashlib.sha512), (2, hashlib.sha512), (2, hashlib.sha1)],
    ids=["v5", "v2-sha512", "v2-sha1"],
)
def test_duo_client_pages_through_exactly_the_ground_truth(
    sim, ground_truth, sig_version, digestmod
) -> None:
    client = admin(sim, sig_version)
    client.digestmod = digestmod  # used by version 2; version 5 is always SHA-512
    items = page_with_duo_client(client)
    assert items == ground_truth
    assert len({item["telephony_id"] for item in items}) == RECORDS


@pytest.mark.parametrize("sig_version", [5, 2])
def test_duo_client_with_a_corrupted_secret_is_rejected(sim, sig_version) -> None:
    client = admin(sim, sig_version, skey=SKEY[:-1] + "X")
    with pytest.raises(RuntimeError) as raised:
        client.json_api_call("GET", TELEPHONY_PATH, window())
    assert raised.value.status == 401
    assert str(raised.value) == "Received 401 Invalid signature in request credentials"
    assert raised.value.data["code"] == 40103  # duo_client keeps the parsed FAIL body


def test_duo_client_with_an_unknown_integration_key_is_rejected(sim) -> None:
    client = admin(sim, 5, ikey="DIUNKNOWNINTEGRATION")
    with pytest.raises(RuntimeError) as raised:
        client.json_api_call("GET", TELEPHONY_PATH, window())
    assert raised.value.data["code"] == 40102


def test_duo_client_sees_duo_shaped_parameter_errors(sim) -> None:
    params = {**window(), "limit": "5000"}
    with pytest.raises(RuntimeError) as raised:
        admin(sim, 5).json_api_call("GET", TELEPHONY_PATH, params)
    assert str(raised.value) == (
        "Received 400 Invalid request parameters ('limit' must be an integer between 1 and 1000)"
    )


@pytest.mark.parametrize(
    ("version", "digest"), [(5, "sha512"), (2, "sha512"), (2, "sha1")], ids=str
)
def test_our_signer_is_accepted(sim, ground_truth, version, digest) -> None:
    signer = Signer(SigningConfig(IKEY, Secret(SKEY), "127.0.0.1", version, digest))
    params = window()
    items: list[dict] = []
    with requests.Session() as session:  # keep-alive across pages
        while True:
            response = session.get(
                f"{sim.base_url}{TELEPHONY_PATH}",
                params=params,
                headers=signer.headers("GET", TELEPHONY_PATH, params),  # fresh date per page
                timeout=30,
            )
            assert response.status_code == 200, response.text
            body = response.json()["response"]
            items.extend(body["items"])
            if "next_offset" not in body["metadata"]:
                break
            params["next_offset"] = body["metadata"]["next_offset"]
    assert items == ground_truth


def test_our_signer_with_a_wrong_secret_is_rejected(sim) -> None:
    signer = Signer(SigningConfig(IKEY, Secret("Z" * 40), "127.0.0.1"))
    params = window()
    response = requests.get(
        f"{sim.base_url}{TELEPHONY_PATH}",
        params=params,
        headers=signer.headers("GET", TELEPHONY_PATH, params),
        timeout=30,
    )
    assert response.status_code == 401
    assert response.json() == {
        "stat": "FAIL",
        "code": 40103,
        "message": "Invalid signature in request credentials",
    }


def test_stats_endpoint_over_http(sim) -> None:
    stats = requests.get(f"{sim.base_url}/__sim__/stats", timeout=30).json()
    assert stats["visible_records"] == RECORDS
    assert stats["requests"] >= stats["ok"]


@contextlib.contextmanager
def simulate(*argv: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Runs ``duo-telephony simulate --port 0 ARGV``; yields its ready line and base URL, then
    checks that SIGTERM stops it cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "simulate", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        yield line, match.group(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_command_serves_and_stops_cleanly_on_sigterm() -> None:
    env = {**os.environ, "DUO_SIM_SKEY": "EnvSecretKeyForTheSimulatorCommand000000"}
    with simulate("--records", "300", env=env) as (line, url):
        assert "skey=EnvSecretKeyForTheSimulatorCommand000000" in line
        assert "ikey=DIDEMOSIMULATOR00001" in line
        records = requests.get(f"{url}/__sim__/records", timeout=30).text
        assert len(records.splitlines()) == 300


def test_the_command_serves_an_msp_fleet_and_says_where_its_accounts_are() -> None:
    argv = ("--records", "300", "--accounts", "2", "--msp-children", "4")
    more = ("--refused-share", "0.5", "--activity-distribution", "zipf")
    with simulate(*argv, *more) as (line, url):
        assert f"accounts, keys and hosts at {url}/__sim__/accounts" in line
        assert "2 accounts with their own keys" in line
        assert "ikey=DIDEMOSIMULATOR00001" in line and "4 children (2 refusing its keys)" in line
        accounts = requests.get(f"{url}/__sim__/accounts", timeout=30).json()
        assert [a["msp_child"] for a in accounts] == [False, False, True, True, True, True]
        assert sum(a["refused"] for a in accounts) == 2
        assert sum(a["records"] for a in accounts) == 300
        for account in accounts:
            records = requests.get(
                f"{url}/__sim__/records", params={"account_id": account["account_id"]}, timeout=30
            ).text
            assert len(records.splitlines()) == account["records"]
