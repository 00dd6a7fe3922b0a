"""Duo's Accounts API client: the child list from a signed POST, typed errors naming the source
and the setting, child hosts that must be Duo's, and child reads with the parent's keys and
the child's account_id."""

import hashlib
import json

import pytest
from duo_client import client as duo_client

from shared.duo.accounts import (
    ACCOUNTS_LIST_PATH,
    AccountsPermissionError,
    ChildAccount,
    ChildAccountApi,
    ChildAccountRefusedError,
    child_http,
    child_signing,
    list_child_accounts,
)
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.errors import DuoConfigurationError, DuoRateLimitedError, DuoTransientError
from shared.duo.paging import count_records
from shared.duo.rate_limit import TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig, rfc2822_date
from shared.duo.telephony import TELEPHONY_PATH
from shared.duo.transport import DuoHttp
from tests.fakes import FakeClock

IKEY = "DIACCOUNTSPARENT0001"
SKEY = "AccountsParentSecretKeyLeakCanary000000"
PARENT = "api-parent01.duosecurity.com"
CHILD = ChildAccount("DA1111111111111111", "Acme Corp", "api-child001.duosecurity.com")
SOURCE = "msp-fleet"
SETTING = "DUO_ACCOUNTS_IKEY"
START = 1_800_000_000.0


def ok(response) -> tuple[int, bytes]:
    return 200, json.dumps({"stat": "OK", "response": response}).encode()


def fail(status: int, code: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"stat": "FAIL", "code": code, "message": message}).encode()


FORBIDDEN = fail(403, 40301, "Access forbidden")
RATE_LIMITED = fail(429, 42901, "Too Many Requests")
TWO_CHILDREN = [
    {"account_id": "DA1111111111111111", "name": "Acme Corp", "api_hostname": CHILD.api_hostname},
    {
        "account_id": "DA2222222222222222",
        "name": "Globex",
        "api_hostname": "API-C2.duosecurity.com",
    },
]


class Answer:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content


class Session:
    """Stands in for requests.Session: answers from a script, records each call."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.calls: list[dict] = []

    def _answer(self, method: str, url: str, **kwargs) -> Answer:
        self.calls.append({"method": method, "url": url, **kwargs})
        return Answer(*self.answers.pop(0))

    def get(self, url: str, **kwargs) -> Answer:
        return self._answer("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Answer:
        return self._answer("POST", url, **kwargs)


def make_api(http: DuoHttp, signing: SigningConfig, clock: FakeClock) -> DuoApi:
    return DuoApi(
        http,
        Signer(signing, clock),
        limiter=TokenBucket(rate=100, burst=10, clock=clock),
        retry=RetryPolicy(max_attempts=3, base_delay=1, max_delay=4),
        clock=clock,
    )


def parent_api(*answers, version: int = 5, digest: str = "sha512"):
    clock = FakeClock(START)
    session = Session(*answers)
    http = DuoHttp(DuoEndpoint.parse(PARENT), session=session)
    api = make_api(http, SigningConfig(IKEY, Secret(SKEY), PARENT, version, digest), clock)
    return api, session, clock


def test_the_children_come_from_a_post_signed_as_duo_client_signs_it():
    api, session, clock = parent_api(ok(TWO_CHILDREN))
    children = list_child_accounts(api, source=SOURCE, setting=SETTING)
    assert children.accounts == (
        CHILD,
        ChildAccount("DA2222222222222222", "Globex", "api-c2.duosecurity.com"),
    )
    assert children.invalid == ()
    [call] = session.calls
    assert (call["method"], call["url"]) == ("POST", f"https://{PARENT}{ACCOUNTS_LIST_PATH}")
    assert (call["verify"], call["allow_redirects"]) == (True, False)
    # Version 5: the parameters are a JSON body, signed by its hash, with no query parameters.
    assert call["data"] == b"{}"
    date = rfc2822_date(clock.now())
    expected = duo_client.sign(
        IKEY, SKEY, "POST", PARENT, ACCOUNTS_LIST_PATH, date, 5, {}, body="{}",
        additional_headers={"x-duo-date": date},
    )  # fmt: skip
    assert call["headers"]["Authorization"] == expected
    assert call["headers"]["Content-type"] == "application/json"


def test_a_version_2_post_is_form_encoded_and_signed_as_parameters():
    api, session, clock = parent_api(ok([]), version=2, digest="sha1")
    assert list_child_accounts(api, source=SOURCE, setting=SETTING).accounts == ()
    [call] = session.calls
    assert call["data"] == b""
    assert call["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    date = rfc2822_date(clock.now())
    expected = duo_client.sign(
        IKEY, SKEY, "POST", PARENT, ACCOUNTS_LIST_PATH, date, 2, {},
        digestmod=hashlib.sha1,
    )  # fmt: skip
    assert call["headers"]["Authorization"] == expected


def test_keys_without_the_accounts_permission_are_one_line_naming_source_and_setting():
    api, session, _clock = parent_api(FORBIDDEN, ok(TWO_CHILDREN))
    with pytest.raises(AccountsPermissionError) as raised:
        list_child_accounts(api, source=SOURCE, setting=SETTING)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: ")
    assert SETTING in message
    assert "code 40301 (Access forbidden)" in message
    assert "Grant read log" not in message  # the Admin API's hint would mislead here
    assert SKEY not in message
    assert raised.value.code == 40301
    assert len(session.calls) == 1  # not retried


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"account_id": "DA3", "name": "Evil", "api_hostname": "evil.example.com"}, "Evil"),
        (
            {"account_id": "DA3", "name": "Evil", "api_hostname": "api-x.duosecurity.com.evil.io"},
            "api-x.duosecurity.com.evil.io",
        ),
        (
            {"account_id": "DA3", "name": "Port", "api_hostname": "api-x.duosecurity.com:8443"},
            "DA3",
        ),
        ({"account_id": "DA3", "name": "None"}, "None"),
        ({"name": "No id", "api_hostname": "api-x.duosecurity.com"}, "account_id"),
        ("DA3", "not an object"),
    ],
)
def test_a_child_that_cannot_be_read_is_named_and_the_others_are_kept(entry, named):
    api, _session, _clock = parent_api(ok([TWO_CHILDREN[0], entry]))
    children = list_child_accounts(api, source=SOURCE, setting=SETTING)
    assert children.accounts == (CHILD,)
    [error] = children.invalid
    assert str(error).startswith(f"{SOURCE}: ")
    assert named in str(error)
    assert "\n" not in str(error)


def test_a_list_that_is_not_a_list_is_asked_again():
    api, session, _clock = parent_api(ok({"accounts": TWO_CHILDREN}), ok(TWO_CHILDREN))
    assert len(list_child_accounts(api, source=SOURCE, setting=SETTING).accounts) == 2
    assert len(session.calls) == 2


def test_a_list_that_stays_garbled_is_transient():
    api, _session, _clock = parent_api(*[ok({"accounts": []})] * 3)
    with pytest.raises(DuoTransientError, match="not a list"):
        list_child_accounts(api, source=SOURCE, setting=SETTING)


# --- a child's reads ---------------------------------------------------------------------------


def child_api(*answers, parent: str = PARENT):
    clock = FakeClock(START)
    session = Session(*answers)
    signing = child_signing(SigningConfig(IKEY, Secret(SKEY), PARENT), CHILD)
    http = child_http(DuoEndpoint.parse(parent), CHILD, session=session)
    return ChildAccountApi(make_api(http, signing, clock), CHILD, source=SOURCE), session, clock


def test_a_child_is_read_at_its_own_host_with_the_parent_keys_and_a_signed_account_id():
    api, session, clock = child_api(ok({"items": [], "metadata": {"total_objects": 7}}))
    assert count_records(api, 1_799_000_000_000, 1_799_000_060_000, now_ms=int(START * 1000)) == 7
    [call] = session.calls
    assert call["url"] == f"https://{CHILD.api_hostname}{TELEPHONY_PATH}"
    params = call["params"]
    assert params["account_id"] == CHILD.account_id
    date = rfc2822_date(clock.now())
    expected = duo_client.sign(
        IKEY, SKEY, "GET", CHILD.api_hostname, TELEPHONY_PATH, date, 5,
        duo_client.normalize_params(params), body="", additional_headers={"x-duo-date": date},
    )  # fmt: skip
    assert call["headers"]["Authorization"] == expected
    assert "Host" not in call["headers"]  # requests sends the URL's host


def test_through_the_local_simulator_a_child_host_resolves_to_it():
    api, session, _clock = child_api(ok({"items": []}), parent="http://127.0.0.1:18443")
    api.get(TELEPHONY_PATH, {"mintime": "1", "maxtime": "2"}, lambda response: response)
    [call] = session.calls
    assert call["url"] == f"http://127.0.0.1:18443{TELEPHONY_PATH}"
    assert call["headers"]["Host"] == CHILD.api_hostname


def test_a_host_header_is_refused_for_anything_but_the_local_simulator():
    with pytest.raises(ValueError, match="local simulator"):
        DuoHttp(DuoEndpoint.parse(PARENT), host_header=CHILD.api_hostname)


def test_a_child_refusing_the_parent_keys_says_which_child_and_what_duo_answered():
    api, session, _clock = child_api(FORBIDDEN, ok({"items": []}))
    with pytest.raises(ChildAccountRefusedError) as raised:
        api.get(TELEPHONY_PATH, {"mintime": "1", "maxtime": "2"}, lambda response: response)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: child account 'Acme Corp' (DA1111111111111111) at ")
    assert CHILD.api_hostname in message
    assert "Duo answered HTTP 403 code 40301 (Access forbidden)" in message
    assert SKEY not in message
    assert raised.value.code == 40301
    assert len(session.calls) == 1


def test_other_failures_of_a_child_keep_their_kind_and_name_the_child():
    api, _session, _clock = child_api(*[RATE_LIMITED] * 3)
    with pytest.raises(DuoRateLimitedError) as raised:
        api.get(TELEPHONY_PATH, {"mintime": "1", "maxtime": "2"}, lambda response: response)
    assert str(raised.value).startswith(f"{SOURCE}: child account 'Acme Corp' (")
    assert "42901" in str(raised.value)


def test_a_child_refusing_the_signature_is_a_credentials_error_not_a_refused_child():
    api, _session, _clock = child_api(fail(401, 40103, "Invalid signature in request credentials"))
    with pytest.raises(DuoConfigurationError) as raised:
        api.get(TELEPHONY_PATH, {"mintime": "1", "maxtime": "2"}, lambda response: response)
    assert not isinstance(raised.value, ChildAccountRefusedError)
    assert str(raised.value).startswith(f"{SOURCE}: child account 'Acme Corp' (")
    assert "code 40103" in str(raised.value)
