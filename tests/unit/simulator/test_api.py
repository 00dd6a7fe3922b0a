"""The simulated telephony endpoint, driven without sockets on a fake clock."""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import random
import threading
from urllib.parse import urlencode

import pytest

from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from simulator.api import TELEPHONY_PATH, ApiOptions, Response, TelephonyApi
from simulator.command import rate_limit_changes
from simulator.dataset import Dataset, DatasetSpec
from tests.fakes import FakeClock

IKEY = "DIUNITTESTSIMULATOR1"
SKEY = Secret("UnitTestSecretKeyForTheSimulator00000000")
DAY_MS = 86_400_000


def make_api(
    clock: FakeClock, records: int = 2500, live: float = 0.0, seed: int = 7, **options
) -> TelephonyApi:
    dataset = Dataset(
        DatasetSpec(records=records, days=2, seed=seed, live_per_minute=live), clock.now()
    )
    return TelephonyApi(dataset, {IKEY: SKEY}, clock, random.Random(1), ApiOptions(**options))


def call(
    api: TelephonyApi,
    clock: FakeClock,
    params: dict[str, str],
    *,
    version: int = 5,
    ikey: str = IKEY,
    path: str = TELEPHONY_PATH,
    method: str = "GET",
) -> Response:
    signer = Signer(SigningConfig(ikey, SKEY, "127.0.0.1", version), clock)
    headers = {**signer.headers(method, path, params), "Host": "127.0.0.1:18443"}
    return api.handle(method, path, urlencode(params), headers)


def window(clock: FakeClock, **extra: str) -> dict[str, str]:
    now = int(clock.now() * 1000)
    return {"mintime": str(now - 3 * DAY_MS), "maxtime": str(now), "limit": "1000", **extra}


def ts_ms(item: dict) -> int:
    return round(datetime.datetime.fromisoformat(item["ts"]).timestamp() * 1e6) // 1000


def truth(api: TelephonyApi) -> list[dict]:
    response = api.handle("GET", "/__sim__/records", "", {})
    assert response.status == 200
    return [json.loads(line) for line in response.content().splitlines()]


def page_all(api: TelephonyApi, clock: FakeClock, params: dict[str, str]) -> list[list[dict]]:
    pages = []
    params = dict(params)
    while True:
        response = call(api, clock, params)
        assert response.status == 200, response.content()
        body = response.json()["response"]
        pages.append(body["items"])
        token = body["metadata"].get("next_offset")
        if token is None:
            return pages
        params["next_offset"] = token
        assert len(pages) < 1000, "paging does not end"


def assert_fail(response: Response, status: int, code: int, message: str) -> dict:
    assert response.status == status
    assert response.header("Content-Type") == "application/json"
    body = response.json()
    assert (body["stat"], body["code"], body["message"]) == ("FAIL", code, message)
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- paging ---------------------------------------------------------------------------------


def test_paging_with_limit_1000_returns_exactly_the_ground_truth(clock) -> None:
    api = make_api(clock)
    pages = page_all(api, clock, window(clock, sort="ts:asc"))
    items = [item for page in pages for item in page]
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert items == truth(api)
    assert len(truth(api)) == 2500
    assert len({i["telephony_id"] for i in items}) == 2500


def test_descending_paging_returns_the_ground_truth_reversed(clock) -> None:
    api = make_api(clock)
    pages = page_all(api, clock, window(clock, sort="ts:desc", limit="700"))
    assert [item for page in pages for item in page] == truth(api)[::-1]


def test_a_token_inside_a_millisecond_burst_resumes_right_after_its_event(clock) -> None:
    api = make_api(clock)
    records = truth(api)
    i = next(
        i for i in range(len(records) - 1) if records[i]["ts"][:23] == records[i + 1]["ts"][:23]
    )
    params = window(clock, sort="ts:asc", limit=str(i + 1))
    first = call(api, clock, params).json()["response"]
    token = first["metadata"]["next_offset"]
    ms, telephony_id = token.split(",")
    assert int(ms) == ts_ms(records[i])
    assert telephony_id == records[i]["telephony_id"] == first["items"][-1]["telephony_id"]
    second = call(api, clock, {**params, "next_offset": token}).json()["response"]
    assert second["items"][0] == records[i + 1]
    assert records[i + 1]["ts"][:23] == records[i]["ts"][:23]  # same millisecond as the token


def test_metadata_counts_the_window_and_the_last_page_has_no_token(clock) -> None:
    api = make_api(clock)
    records = truth(api)
    start_ms = int(api.dataset[100].ts_ms)
    end_ms = int(api.dataset[1399].ts_ms)
    expected = [r for r in records if start_ms <= ts_ms(r) <= end_ms]
    params = {"mintime": str(start_ms), "maxtime": str(end_ms), "limit": "1000", "sort": "ts:asc"}
    pages = page_all(api, clock, params)
    assert [item for page in pages for item in page] == expected  # both bounds inclusive
    first = call(api, clock, params).json()["response"]["metadata"]
    assert first["total_objects"] == len(expected)
    last = call(api, clock, {**params, "limit": "1000", "next_offset": first["next_offset"]})
    assert "next_offset" not in last.json()["response"]["metadata"]


def test_final_offset_null_option(clock) -> None:
    api = make_api(clock, records=50, final_offset="null")
    metadata = call(api, clock, window(clock)).json()["response"]["metadata"]
    assert metadata == {"next_offset": None, "total_objects": 50}


def test_default_limit_is_100_and_default_sort_is_descending(clock) -> None:
    api = make_api(clock)
    params = window(clock)
    del params["limit"]
    items = call(api, clock, params).json()["response"]["items"]
    assert items == truth(api)[::-1][:100]


def test_repeat_boundary_starts_each_page_with_the_tokens_event(clock) -> None:
    api = make_api(clock, repeat_boundary=True)
    pages = page_all(api, clock, window(clock, sort="ts:asc"))
    for previous, page in itertools.pairwise(pages):
        assert page[0] == previous[-1]
    items = [item for page in pages for item in page]
    assert len(items) == 2500 + len(pages) - 1
    deduplicated = list({i["telephony_id"]: i for i in items}.values())
    assert deduplicated == truth(api)


def test_nothing_newer_than_two_minutes_ago_is_served(clock) -> None:
    api = make_api(clock, records=100, live=30)
    clock.advance(600)
    now_ms = int(clock.now() * 1000)
    visible = api.dataset.visible_end(clock.now())
    assert len(api.dataset) > visible > 100  # live events, some of them too new to serve
    params = {
        "mintime": str(now_ms - 3 * DAY_MS),
        "maxtime": str(now_ms + 60_000),
        "sort": "ts:asc",
    }
    body = call(api, clock, {**params, "limit": "1000"}).json()["response"]
    newest = ts_ms(body["items"][-1])
    assert newest <= now_ms - 120_000
    assert body["metadata"]["total_objects"] == len(body["items"]) == visible


def test_live_records_appear_over_time(clock) -> None:
    api = make_api(clock, records=300, live=20)
    params = window(clock, sort="ts:asc")
    assert call(api, clock, params).json()["response"]["metadata"]["total_objects"] == 300
    clock.advance(300)  # five minutes: live minutes 0..2 are fully visible
    params = window(clock, sort="ts:asc")
    items = [item for page in page_all(api, clock, params) for item in page]
    assert len(items) == 360
    assert items == truth(api)


# --- parameter validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"mintime": None}, "Missing required request parameters: mintime"),
        (
            {"mintime": None, "maxtime": None},
            "Missing required request parameters: mintime, maxtime",
        ),
        ({"maxtime": "soon"}, "'maxtime' must be an integer"),
        ({"mintime": "-5"}, "'mintime' must be an integer"),
        ({"mintime": "1799000000"}, "'mintime' must be a timestamp in milliseconds"),
        ({"maxtime": "1799000000"}, "'maxtime' must be a timestamp in milliseconds"),
        ({"maxtime": "MIN"}, "'maxtime' must be strictly greater than 'mintime'"),
        ({"mintime": "OLD"}, "mintime must be within the past 180 days"),
        ({"limit": "0"}, "'limit' must be an integer between 1 and 1000"),
        ({"limit": "1001"}, "'limit' must be an integer between 1 and 1000"),
        ({"limit": "ten"}, "'limit' must be an integer between 1 and 1000"),
        ({"sort": "asc"}, "'sort' must be 'ts:asc' or 'ts:desc'"),
        ({"sort": ""}, "'sort' must be 'ts:asc' or 'ts:desc'"),
        ({"limit": ""}, "'limit' must be an integer between 1 and 1000"),
        (
            {"next_offset": "1799000000000"},
            "'next_offset' must be '<ms>,<telephony_id>' as returned by the previous page",
        ),
        (
            {"next_offset": "1799000000000,00000000-0000-4000-8000-000000000000"},
            "'next_offset' does not name an event of this log",
        ),
        ({"offset": "0"}, "Unknown request parameters: offset"),
    ],
)
def test_invalid_parameters_give_40002_with_a_clear_detail(clock, change, detail) -> None:
    api = make_api(clock, records=20)
    params = window(clock)
    for key, value in change.items():
        if value is None:
            del params[key]
        elif value == "MIN":
            params[key] = params["mintime"]
        elif value == "OLD":
            params[key] = str(int(clock.now() * 1000) - 181 * DAY_MS)
        else:
            params[key] = value
    body = assert_fail(call(api, clock, params), 400, 40002, "Invalid request parameters")
    assert body["message_detail"] == detail


def test_a_window_179_days_back_is_fine(clock) -> None:
    api = make_api(clock, records=20)
    params = window(clock, mintime=str(int(clock.now() * 1000) - 179 * DAY_MS))
    assert call(api, clock, params).status == 200


def test_a_repeated_parameter_is_refused(clock) -> None:
    api = make_api(clock, records=20)
    params = window(clock)
    signer = Signer(SigningConfig(IKEY, SKEY, "127.0.0.1"), clock)
    query = urlencode(params) + "&limit=10"
    both = {**params, "limit": ["1000", "10"]}
    headers = {**signer.headers("GET", TELEPHONY_PATH, both), "Host": "127.0.0.1"}
    body = assert_fail(
        api.handle("GET", TELEPHONY_PATH, query, headers), 400, 40002, "Invalid request parameters"
    )
    assert body["message_detail"] == "'limit' must be given once"


# --- authentication, rate limit, routing ----------------------------------------------------


def test_bad_credentials_give_duo_401s(clock) -> None:
    api = make_api(clock, records=20)
    assert_fail(
        api.handle("GET", TELEPHONY_PATH, urlencode(window(clock)), {"Host": "127.0.0.1"}),
        401,
        40101,
        "Missing request credentials",
    )
    response = call(api, clock, window(clock), ikey="DIUNKNOWNKEY00000001")
    assert_fail(response, 401, 40102, "Invalid integration key in request credentials")
    signer = Signer(SigningConfig(IKEY, Secret("W" * 40), "127.0.0.1"), clock)
    headers = {**signer.headers("GET", TELEPHONY_PATH, window(clock)), "Host": "127.0.0.1"}
    response = api.handle("GET", TELEPHONY_PATH, urlencode(window(clock)), headers)
    assert_fail(response, 401, 40103, "Invalid signature in request credentials")
    assert api.stats()["auth_failures"] == 3


def test_a_date_five_minutes_off_gives_40105(clock) -> None:
    api = make_api(clock, records=20)
    params = window(clock)
    signer = Signer(SigningConfig(IKEY, SKEY, "127.0.0.1"), FakeClock(clock.now() - 301))
    headers = {**signer.headers("GET", TELEPHONY_PATH, params), "Host": "127.0.0.1"}
    response = api.handle("GET", TELEPHONY_PATH, urlencode(params), headers)
    assert_fail(response, 401, 40105, "Request has invalid date/timestamp")


@pytest.mark.parametrize("version", [5, 2])
def test_both_signature_versions_are_served(clock, version) -> None:
    api = make_api(clock, records=20)
    assert call(api, clock, window(clock), version=version).status == 200


def test_rate_limit_gives_429_without_retry_after_and_recovers(clock) -> None:
    other = "DIUNITTESTSIMULATOR2"
    dataset = Dataset(DatasetSpec(records=20), clock.now())
    keys = {IKEY: SKEY, other: SKEY}  # two integrations of the same account
    options = ApiOptions(rate_limit_per_minute=3)
    api = TelephonyApi(dataset, keys, clock, random.Random(1), options)
    assert [call(api, clock, window(clock)).status for _ in range(3)] == [200] * 3
    limited = call(api, clock, window(clock), ikey=other)  # the budget is per account
    assert_fail(limited, 429, 42901, "Too Many Requests")
    assert limited.header("Retry-After") is None
    assert [name.lower() for name, _ in limited.headers] == ["content-type"]
    clock.advance(30)
    for _ in range(5):  # rejected requests do not consume the budget ...
        assert call(api, clock, window(clock)).status == 429
    clock.advance(30.001)  # ... so it is back 60 s after the accepted ones
    assert call(api, clock, window(clock)).status == 200
    assert api.stats()["rate_limited"] == 6


def test_the_limit_changes_at_the_times_given_counting_the_minute_already_spent(clock) -> None:
    # 4 a minute, 2 from 100 s after the start, no limit from 200 s on.
    changes = ((100, 2), (200, 0))
    api = make_api(clock, records=20, rate_limit_per_minute=4, rate_limit_changes=changes)
    assert [call(api, clock, window(clock)).status for _ in range(5)] == [200] * 4 + [429]
    clock.advance(99.9)  # the four left the minute; still 4 allowed
    assert [call(api, clock, window(clock)).status for _ in range(4)] == [200] * 4
    clock.advance(0.2)  # 2 allowed now, and the minute holds four
    assert call(api, clock, window(clock)).status == 429
    clock.advance(60)
    assert [call(api, clock, window(clock)).status for _ in range(3)] == [200] * 2 + [429]
    clock.advance(40)
    assert [call(api, clock, window(clock)).status for _ in range(10)] == [200] * 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ()), ("10@10m", ((600, 10),)), ("10@90s, 0@2h", ((90, 10), (7200, 0)))],
)
def test_rate_limit_changes_are_read_as_limit_at_when(text, expected) -> None:
    assert rate_limit_changes(text) == expected


@pytest.mark.parametrize("text", ["10", "ten@10m", "10@10", "10@2h,5@1h", "-1@10m"])
def test_rate_limit_changes_that_cannot_be_read_are_refused(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        rate_limit_changes(text)


def test_unsigned_or_failed_requests_do_not_consume_the_budget(clock) -> None:
    api = make_api(clock, records=20, rate_limit_per_minute=1)
    api.handle("GET", TELEPHONY_PATH, "", {})
    assert call(api, clock, window(clock)).status == 200


def test_unknown_paths_and_methods(clock) -> None:
    api = make_api(clock, records=20)
    assert_fail(
        call(api, clock, {}, path="/admin/v1/logs/telephony"), 404, 40401, "Resource not found"
    )
    response = call(api, clock, window(clock), method="POST")
    assert_fail(response, 405, 40501, "Method not allowed")
    assert response.header("Allow") == "GET"


# --- faults ---------------------------------------------------------------------------------


def is_valid_page(response: Response) -> bool:
    try:
        body = json.loads(response.content())
        return body["stat"] == "OK" and isinstance(body["response"]["items"], list)
    except (ValueError, KeyError, TypeError):
        return False


def test_fail_rate_answers_5xx_even_before_authentication(clock) -> None:
    api = make_api(clock, records=20, fail_rate=1.0)
    responses = [call(api, clock, window(clock)) for _ in range(20)]
    responses.append(api.handle("GET", TELEPHONY_PATH, "", {}))
    assert {r.status for r in responses} <= {500, 503}
    kinds = {r.header("Content-Type") for r in responses}
    assert kinds == {"application/json", "text/html"}
    for response in responses:
        if response.header("Content-Type") == "application/json":
            body = response.json()
            assert body["stat"] == "FAIL" and body["code"] // 100 == response.status
    assert api.stats()["server_errors"] == 21


def test_a_partial_fail_rate_fails_about_that_fraction(clock) -> None:
    api = make_api(clock, records=20, fail_rate=0.3)
    statuses = [call(api, clock, window(clock)).status for _ in range(200)]
    assert 30 <= sum(s >= 500 for s in statuses) <= 90
    assert statuses.count(200) + sum(s >= 500 for s in statuses) == 200


def test_malformed_rate_breaks_200_bodies_in_several_ways(clock) -> None:
    api = make_api(clock, records=20, malformed_rate=1.0)
    responses = [call(api, clock, window(clock)) for _ in range(30)]
    assert {r.status for r in responses} == {200}
    assert not any(is_valid_page(r) for r in responses)
    assert len({r.content() for r in responses}) >= 4
    assert api.stats()["malformed"] == 30


def test_slow_adds_latency_on_the_clock(clock) -> None:
    api = make_api(clock, records=20, slow_seconds=2.5)
    assert call(api, clock, window(clock)).status == 200
    assert clock.sleeps == [2.5]


# --- holding a chosen request -----------------------------------------------------------------


class WatchedRelease(threading.Event):
    """A hold's release that tells the test once the held request is waiting for it: from
    then on, until the test releases it, the request cannot have been answered."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_for = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited_for.set()
        return super().wait(timeout)


def test_a_held_request_waits_until_released_and_the_test_knows_it_arrived(clock) -> None:
    api = make_api(clock, records=2500)
    held = api.hold(lambda number, query: number == 2)
    assert call(api, clock, window(clock)).status == 200  # the first: answered at once
    answers: list[Response] = []
    params = window(clock, sort="ts:asc")
    held._released = release = WatchedRelease()
    caller = threading.Thread(target=lambda: answers.append(call(api, clock, params)))
    caller.start()
    assert held.wait_arrived(timeout=10) == urlencode(params)
    assert held.number == 2
    assert release.waited_for.wait(timeout=10), "the held request does not wait for its release"
    assert caller.is_alive() and answers == []
    assert api.stats()["requests"] == 2  # its answer is decided and counted on arrival
    held.release()
    caller.join(timeout=10)
    assert [a.status for a in answers] == [200]
    assert call(api, clock, window(clock)).status == 200  # a hold applies once


def test_a_request_released_before_it_arrives_is_not_held(clock) -> None:
    api = make_api(clock, records=20)
    held = api.hold(lambda number, query: True)
    held.release()
    assert call(api, clock, window(clock)).status == 200
    assert held.wait_arrived(timeout=0) == urlencode(window(clock))


def test_a_forgotten_hold_ends_after_its_timeout(clock) -> None:
    api = make_api(clock, records=20)
    api.hold(lambda number, query: True, timeout=0.05)
    assert call(api, clock, window(clock)).status == 200


# --- ground truth and stats -----------------------------------------------------------------


def test_ground_truth_is_streamed_ndjson_for_loopback_clients_only(clock) -> None:
    api = make_api(clock, records=2500)
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        response = api.handle("GET", "/__sim__/records", "", {}, client_address=address)
        assert response.status == 200
        assert response.header("Content-Type") == "application/x-ndjson"
    assert not isinstance(response.body, bytes)  # streamed in chunks
    lines = response.content().splitlines()
    assert len(lines) == 2500
    assert list(json.loads(lines[0])) == [
        "context",
        "credits",
        "phone",
        "telephony_id",
        "ts",
        "txid",
        "type",
    ]
    for address in ("10.1.2.3", "192.168.0.10", "2001:db8::1", "not-an-ip"):
        refused = api.handle("GET", "/__sim__/records", "", {}, client_address=address)
        assert refused.status == 403


def test_stats_count_what_happened(clock) -> None:
    api = make_api(clock, records=20)
    call(api, clock, window(clock))
    call(api, clock, {**window(clock), "limit": "0"})
    api.handle("GET", TELEPHONY_PATH, "", {})
    call(api, clock, {}, path="/nope")
    stats = json.loads(api.handle("GET", "/__sim__/stats", "", {}).content())
    assert stats == {
        "requests": 4,
        "ok": 1,
        "malformed": 0,
        "bad_requests": 1,
        "auth_failures": 1,
        "not_found": 1,
        "rate_limited": 0,
        "server_errors": 0,
        "visible_records": 20,
    }
