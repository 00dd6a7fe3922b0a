"""The simulator checks signatures as Duo does: versions 5 and 2, Date or X-Duo-Date, 5 minutes."""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from simulator.signature_check import AuthError, SignatureChecker, signed_host
from tests.fakes import FakeClock

IKEY = "DIUNITTESTSIMULATOR1"
SKEY = Secret("UnitTestSecretKeyForTheSimulator00000000")
PATH = "/admin/v2/logs/telephony"
PARAMS = {
    "mintime": "1799900000000",
    "maxtime": "1799990000000",
    "limit": "1000",
    "sort": "ts:asc",
    "next_offset": "1799900000123,5bf1a860-fe39-49e3-be29-217659663a74",
}


def signed(clock: FakeClock, version: int = 5, digest: str = "sha512", skey: Secret = SKEY):
    signer = Signer(SigningConfig(IKEY, skey, "127.0.0.1", version, digest), clock)
    headers = signer.headers("GET", PATH, PARAMS)
    headers["Host"] = "127.0.0.1:18443"  # clients sign the host without the port
    return headers


def verify(checker: SignatureChecker, headers: dict, query: str | None = None) -> str:
    return checker.verify("GET", PATH, urlencode(PARAMS) if query is None else query, headers)


def code_of(checker: SignatureChecker, headers: dict, query: str | None = None) -> int:
    with pytest.raises(AuthError) as raised:
        verify(checker, headers, query)
    return raised.value.code


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def checker(clock: FakeClock) -> SignatureChecker:
    return SignatureChecker({IKEY: SKEY}, clock)


@pytest.mark.parametrize(("version", "digest"), [(5, "sha512"), (2, "sha512"), (2, "sha1")])
def test_every_supported_signature_is_accepted(clock, checker, version, digest) -> None:
    assert verify(checker, signed(clock, version, digest)) == IKEY


def test_duo_documentation_example_is_accepted() -> None:
    # Duo's worked example (version 2, HMAC-SHA1), checked at the moment it was signed.
    date = "Tue, 21 Aug 2012 17:29:18 -0000"
    clock = FakeClock(
        email.utils.parsedate_to_datetime(date).replace(tzinfo=datetime.UTC).timestamp()
    )
    checker = SignatureChecker(
        {"DIWJ8X6AEYOR5OMC6TQ1": Secret("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep")}, clock
    )
    headers = {
        "Date": date,
        "Host": "api-xxxxxxxx.duosecurity.com",
        "Authorization": "Basic RElXSjhYNkFFWU9SNU9NQzZUUTE6YzFlZjQzNzY3YzNlYjNiMzI1OGRiZ"
        "GRjYTZmOGQwOTQxZTA4NWI5Mg==",
    }
    query = "realname=First%20Last&username=root"
    assert checker.verify("POST", "/admin/v1/users", query, headers) == "DIWJ8X6AEYOR5OMC6TQ1"
    with pytest.raises(AuthError) as raised:
        checker.verify("POST", "/admin/v1/users", "realname=First%20Lest&username=root", headers)
    assert raised.value.code == 40103


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ],
)
def test_missing_or_garbled_credentials_give_40101(clock, checker, authorization) -> None:
    headers = signed(clock)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    assert code_of(checker, headers) == 40101


def test_unknown_integration_key_gives_40102(clock) -> None:
    checker = SignatureChecker({"DIANOTHERKEY00000001": SKEY}, clock)
    with pytest.raises(AuthError) as raised:
        verify(checker, signed(clock))
    assert (raised.value.code, raised.value.status) == (40102, 401)
    assert raised.value.message == "Invalid integration key in request credentials"


@pytest.mark.parametrize("version", [5, 2])
def test_wrong_secret_gives_40103(clock, checker, version) -> None:
    headers = signed(clock, version, skey=Secret("X" * 40))
    assert code_of(checker, headers) == 40103


def test_any_change_to_what_was_signed_gives_40103(clock, checker) -> None:
    headers = signed(clock)
    assert code_of(checker, headers, urlencode({**PARAMS, "limit": "999"})) == 40103
    assert code_of(checker, {**headers, "Host": "127.0.0.2:18443"}) == 40103
    with pytest.raises(AuthError) as raised:
        checker.verify("GET", PATH + "/", urlencode(PARAMS), headers)
    assert raised.value.code == 40103


def test_v5_covers_the_x_duo_headers(clock, checker) -> None:
    headers = signed(clock, 5)
    assert "x-duo-date" in headers  # our signer sends the date there, as duo-hmac does
    assert code_of(checker, {**headers, "X-Duo-Extra": "injected"}) == 40103
    # a changed X-Duo-Date, even to an equivalent instant, breaks the signature
    later = email.utils.formatdate(clock.now() + 1)
    assert code_of(checker, {**headers, "x-duo-date": later}) == 40103


def test_x_duo_date_takes_precedence_over_date(clock, checker) -> None:
    headers = signed(clock, 5)
    headers["Date"] = "not a date at all"
    assert verify(checker, headers) == IKEY


@pytest.mark.parametrize("version", [5, 2])
@pytest.mark.parametrize("offset", [-301, 301, 3600])
def test_date_more_than_five_minutes_off_gives_40105(clock, checker, version, offset) -> None:
    headers = signed(clock, version)
    clock.advance(-offset)  # the request's date is now `offset` seconds off our clock
    assert code_of(checker, headers) == 40105


@pytest.mark.parametrize("offset", [-299, 299])
def test_date_within_five_minutes_is_accepted(clock, checker, offset) -> None:
    headers = signed(clock, 2)
    clock.advance(offset)
    assert verify(checker, headers) == IKEY


@pytest.mark.parametrize("date", [None, "", "yesterday"])
def test_missing_or_unparseable_date_gives_40105(clock, checker, date) -> None:
    headers = signed(clock, 2)
    del headers["Date"]
    if date is not None:
        headers["Date"] = date
    assert code_of(checker, headers) == 40105


def test_a_forged_request_fails_on_the_signature_before_the_clock(clock, checker) -> None:
    headers = signed(clock, 2, skey=Secret("Y" * 40))
    clock.advance(3600)
    assert code_of(checker, headers) == 40103


def test_hand_built_v2_sha1_with_a_plus_encoded_query() -> None:
    # duo_client urlencodes with '+' for spaces; the canonical form is still %20.
    clock = FakeClock()
    checker = SignatureChecker({IKEY: SKEY}, clock)
    date = email.utils.formatdate(clock.now())
    canonical = f"{date}\nGET\n127.0.0.1\n{PATH}\na=b%20c&mintime=1"
    sig = hmac.new(SKEY.reveal().encode(), canonical.encode(), hashlib.sha1).hexdigest()
    auth = base64.b64encode(f"{IKEY}:{sig}".encode()).decode()
    headers = {"Date": date, "Host": "127.0.0.1:1", "Authorization": f"Basic {auth}"}
    assert checker.verify("GET", PATH, "mintime=1&a=b+c", headers) == IKEY


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:18443", "127.0.0.1"),
        ("api-x.duosecurity.com", "api-x.duosecurity.com"),
        ("[::1]:80", "[::1]"),
    ],
)
def test_signed_host_drops_the_port(header, host) -> None:
    assert signed_host(header) == host
