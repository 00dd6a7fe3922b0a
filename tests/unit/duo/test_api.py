"""One Duo Admin API call: rate-limited, freshly signed on every attempt, classified, retried;
and the HTTP layer under it, which always verifies TLS and never follows redirects."""

import json

import pytest
import requests

from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.errors import (
    DuoConfigurationError,
    DuoInvalidRequestError,
    DuoProtocolError,
    DuoRateLimitedError,
    DuoTransientError,
)
from shared.duo.paging import MAX_TOKEN_LENGTH, parse_page
from shared.duo.rate_limit import TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig, rfc2822_date
from shared.duo.telephony import TELEPHONY_PATH
from shared.duo.transport import DuoHttp, Timeouts
from tests.fakes import FakeClock

SKEY = "sKeY-Leak-Canary-7f3a9c2e1b84d"
IKEY = "DIWJ8X6AEYOR5OMC6TQ1"
HOST = "api-1a2b3c4d.duosecurity.com"
PARAMS = {"mintime": "1700000000000", "maxtime": "1700003600000", "limit": "1000"}
START = 1_800_000_000.0

OK = json.dumps({"stat": "OK", "response": {"items": [{"telephony_id": "t-1"}]}}).encode()
RATE_LIMITED = (429, json.dumps({"stat": "FAIL", "code": 42901, "message": "Too Many"}).encode())
SERVER_ERROR = (500, json.dumps({"stat": "FAIL", "code": 50000, "message": "Internal"}).encode())
BAD_SIGNATURE = (
    401,
    json.dumps(
        {"stat": "FAIL", "code": 40103, "message": "Invalid signature in request credentials"}
    ).encode(),
)


class Transport:
    """Stands in for DuoHttp: answers from a script and records what it was sent, and when."""

    def __init__(self, clock, *answers):
        self.clock = clock
        self.answers = list(answers)
        self.sent = []

    def get(self, path, params, headers):
        self.sent.append({"at": self.clock.now(), "path": path, "params": params, **headers})
        return self.answers.pop(0)


class Ceiling:
    """A random source whose jitter is always the largest: delays become predictable."""

    def uniform(self, low, high):
        return high


class SpyLimiter:
    """Passes through to a TokenBucket, recording calls and the clock around each acquire."""

    def __init__(self, bucket, clock):
        self.bucket = bucket
        self.clock = clock
        self.events = []

    def acquire(self):
        before = self.clock.now()
        self.bucket.acquire()
        self.events.append(("acquire", before, self.clock.now()))

    def pause(self, seconds):
        self.events.append(("pause", seconds))
        self.bucket.pause(seconds)


def items(response):
    return response["items"]


def make_api(*answers, version=5, digest="sha512", limiter=None, clock=None):
    clock = clock or FakeClock(START)
    signer = Signer(SigningConfig(IKEY, Secret(SKEY), HOST, version, digest), clock)
    transport = Transport(clock, *answers)
    api = DuoApi(
        transport,
        signer,
        limiter=limiter or TokenBucket(rate=100, burst=10, clock=clock),
        retry=RetryPolicy(max_attempts=5, base_delay=1, max_delay=8),
        clock=clock,
        rng=Ceiling(),
    )
    return api, transport, clock


def test_a_successful_call_returns_the_parsed_response():
    api, transport, _clock = make_api((200, OK))
    assert api.get(TELEPHONY_PATH, PARAMS, items) == [{"telephony_id": "t-1"}]
    [sent] = transport.sent
    assert (sent["path"], sent["params"]) == (TELEPHONY_PATH, PARAMS)
    assert sent["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(("version", "date_header"), [(5, "x-duo-date"), (2, "Date")])
def test_every_attempt_is_signed_afresh_with_the_current_date(version, date_header):
    digest = "sha512" if version == 5 else "sha1"
    api, transport, _clock = make_api(
        SERVER_ERROR, SERVER_ERROR, (200, OK), version=version, digest=digest
    )
    api.get(TELEPHONY_PATH, PARAMS, items)
    assert len(transport.sent) == 3
    dates = [sent[date_header] for sent in transport.sent]
    assert dates == [rfc2822_date(sent["at"]) for sent in transport.sent]
    assert len(set(dates)) == 3
    assert len({sent["Authorization"] for sent in transport.sent}) == 3


def test_5xx_is_retried_after_sleeping_the_backoff():
    api, transport, clock = make_api(SERVER_ERROR, (502, b"<html>Bad gateway</html>"), (200, OK))
    assert api.get(TELEPHONY_PATH, PARAMS, items) == [{"telephony_id": "t-1"}]
    assert [sent["at"] - START for sent in transport.sent] == [0, 1, 3]
    assert [seconds for seconds in clock.sleeps if seconds] == [1, 2]


def test_5xx_that_never_ends_gives_up_after_the_attempts():
    api, transport, _clock = make_api(*[SERVER_ERROR] * 5)
    with pytest.raises(DuoTransientError, match="500"):
        api.get(TELEPHONY_PATH, PARAMS, items)
    assert len(transport.sent) == 5


def test_a_429_pauses_the_limiter_instead_of_sleeping_inline():
    clock = FakeClock(START)
    limiter = SpyLimiter(TokenBucket(rate=100, burst=10, clock=clock), clock)
    api, transport, _clock = make_api(RATE_LIMITED, (200, OK), limiter=limiter, clock=clock)
    api.get(TELEPHONY_PATH, PARAMS, items)
    # The wait happens inside the next acquire (the clock has not moved before it), so
    # every client sharing the limiter waits too.
    assert limiter.events == [
        ("acquire", START, START),
        ("pause", 1),
        ("acquire", START, START + 1),
    ]
    assert [sent["at"] for sent in transport.sent] == [START, START + 1]


def test_a_429_holds_back_another_client_sharing_the_limiter():
    clock = FakeClock(START)
    bucket = TokenBucket(rate=100, burst=10, clock=clock)
    other, other_transport, _ = make_api((200, OK), limiter=bucket, clock=clock)

    class OtherCallsWhenPaused(SpyLimiter):
        def pause(self, seconds):
            super().pause(seconds)
            other.get(TELEPHONY_PATH, PARAMS, items)

    limiter = OtherCallsWhenPaused(bucket, clock)
    api, transport, _ = make_api(RATE_LIMITED, (200, OK), limiter=limiter, clock=clock)
    api.get(TELEPHONY_PATH, PARAMS, items)
    assert [sent["at"] for sent in other_transport.sent] == [START + 1]
    # After the pause the rate resumes without a burst: one interval (10 ms) apart.
    assert [sent["at"] for sent in transport.sent] == [START, pytest.approx(START + 1.01)]
    assert api.stats.rate_limited == 1


def test_a_429_that_never_ends_is_raised_as_rate_limited():
    api, transport, _clock = make_api(*[RATE_LIMITED] * 5)
    with pytest.raises(DuoRateLimitedError):
        api.get(TELEPHONY_PATH, PARAMS, items)
    assert len(transport.sent) == 5
    assert api.stats.rate_limited == 4


def test_401_is_not_retried_and_does_not_carry_the_secret_key():
    api, transport, clock = make_api(BAD_SIGNATURE, (200, OK))
    with pytest.raises(DuoConfigurationError) as caught:
        api.get(TELEPHONY_PATH, PARAMS, items)
    assert len(transport.sent) == 1
    assert [seconds for seconds in clock.sleeps if seconds] == []
    message = str(caught.value)
    assert "40103" in message
    assert "DUO_SKEY_SECRET" in message
    assert SKEY not in message
    assert SKEY not in repr(caught.value)


def test_400_is_not_retried():
    answer = (400, json.dumps({"stat": "FAIL", "code": 40002, "message": "Invalid"}).encode())
    api, transport, _clock = make_api(answer, (200, OK))
    with pytest.raises(DuoInvalidRequestError):
        api.get(TELEPHONY_PATH, PARAMS, items)
    assert len(transport.sent) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b"",
        json.dumps({"stat": "FAIL", "code": 50000}).encode(),
        json.dumps({"stat": "OK"}).encode(),
        json.dumps({"stat": "OK", "response": ["not", "an", "object"]}).encode(),
        json.dumps([{"stat": "OK"}]).encode(),
    ],
)
def test_a_garbled_200_is_retried_as_transient(body):
    api, transport, clock = make_api((200, body), (200, OK))
    assert api.get(TELEPHONY_PATH, PARAMS, items) == [{"telephony_id": "t-1"}]
    assert len(transport.sent) == 2
    assert api.stats.transient_failures == 1
    assert [seconds for seconds in clock.sleeps if seconds] == [1]


@pytest.mark.parametrize(
    "response",
    [
        {"items": [{"ts": "2027-01-15T08:00:00.000000+00:00"}], "metadata": {}},
        {"items": [], "metadata": {"next_offset": "x" * (MAX_TOKEN_LENGTH + 1)}},
    ],
    ids=["item-without-id", "over-long-token"],
)
def test_broken_data_through_the_parser_costs_one_request_not_the_retry_policys(response):
    # Duo's data answers the same when asked again: the production policy's eight attempts
    # would be eight requests of the account's budget spent on every try of the window.
    clock = FakeClock(START)
    body = json.dumps({"stat": "OK", "response": response}).encode()
    transport = Transport(clock, *[(200, body)] * 8)
    signer = Signer(SigningConfig(IKEY, Secret(SKEY), HOST, 5, "sha512"), clock)
    api = DuoApi(transport, signer, retry=RetryPolicy(), clock=clock, rng=Ceiling())
    assert RetryPolicy().max_attempts == 8
    with pytest.raises(DuoProtocolError, match="Duo returned a"):
        api.get(TELEPHONY_PATH, PARAMS, parse_page)
    assert len(transport.sent) == 1


def test_a_garbled_200_that_persists_says_what_came_back():
    api, _transport, _clock = make_api(*[(200, b"<html>maintenance</html>")] * 5)
    with pytest.raises(DuoTransientError, match="maintenance"):
        api.get(TELEPHONY_PATH, PARAMS, items)


def test_stats_count_requests_rate_limits_and_statuses():
    api, _transport, _clock = make_api(
        RATE_LIMITED, SERVER_ERROR, RATE_LIMITED, (200, b"oops"), (200, OK)
    )
    api.get(TELEPHONY_PATH, PARAMS, items)
    assert api.stats.requests == 5
    assert api.stats.rate_limited == 2
    assert api.stats.transient_failures == 2
    assert api.stats.by_status == {429: 2, 500: 1, 200: 2}


# --- DuoHttp ------------------------------------------------------------------------------------


class Response:
    def __init__(self, status_code, content):
        self.status_code = status_code
        self.content = content


class Session:
    """Stands in for requests.Session: records each call's arguments."""

    def __init__(self, answer=None, error=None):
        self.answer = answer or Response(200, OK)
        self.error = error
        self.calls = []
        self.closed = False

    def get(self, url, **kwargs):
        self.calls.append({"url": url, **kwargs})
        if self.error is not None:
            raise self.error
        return self.answer

    def close(self):
        self.closed = True


def test_http_verifies_tls_does_not_follow_redirects_and_bounds_the_wait():
    session = Session(Response(302, b""))
    http = DuoHttp(DuoEndpoint.parse(HOST), Timeouts(connect=3, read=20), session=session)
    status, body = http.get(TELEPHONY_PATH, PARAMS, {"Authorization": "Basic x"})
    assert (status, body) == (302, b"")
    [call] = session.calls
    assert call["url"] == f"https://{HOST}{TELEPHONY_PATH}"
    assert call["verify"] is True
    assert call["allow_redirects"] is False
    assert call["timeout"] == (3, 20)
    assert call["params"] == PARAMS
    assert call["headers"] == {"User-Agent": "duo-telephony", "Authorization": "Basic x"}


def test_http_default_timeouts_are_bounded():
    session = Session()
    DuoHttp(DuoEndpoint.parse(f"{HOST}:8443"), session=session).get(TELEPHONY_PATH, {}, {})
    [call] = session.calls
    assert call["url"] == f"https://{HOST}:8443{TELEPHONY_PATH}"
    connect, read = call["timeout"]
    assert 0 < connect <= 30
    assert 0 < read <= 120


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("Connection refused"),
        requests.exceptions.SSLError("certificate verify failed"),
        requests.TooManyRedirects("loop"),
    ],
)
def test_http_failures_become_transient_errors_naming_the_host(error):
    http = DuoHttp(DuoEndpoint.parse(HOST), session=Session(error=error))
    with pytest.raises(DuoTransientError) as caught:
        http.get(TELEPHONY_PATH, PARAMS, {"Authorization": "Basic x"})
    assert HOST in str(caught.value)
    assert caught.value.retryable


def test_http_close_closes_the_session():
    session = Session()
    DuoHttp(DuoEndpoint.parse(HOST), session=session).close()
    assert session.closed
