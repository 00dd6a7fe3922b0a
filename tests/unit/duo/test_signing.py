"""Our Authorization headers must equal Duo's official client's, byte for byte."""

import base64
import hashlib

import pytest
from duo_client import client as duo_client

from shared.duo.secret import Secret
from shared.duo.signing import (
    Signer,
    SigningConfig,
    authorization,
    canonical_string_v2,
    rfc2822_date,
)
from tests.fakes import FakeClock

IKEY = "DIWJ8X6AEYOR5OMC6TQ1"
SKEY = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"
HOST = "api-xxxxxxxx.duosecurity.com"
PATH = "/admin/v2/logs/telephony"

PARAMETER_SETS = [
    {"mintime": "1700000000000", "maxtime": "1700003600000", "limit": "1000", "sort": "ts:asc"},
    {
        "mintime": "1700000000000",
        "maxtime": "1700003600000",
        "limit": "1000",
        "sort": "ts:asc",
        "next_offset": "1666714065304,5bf1a860-fe39-49e3-be29-217659663a74",
    },
    {"realname": "Zoë Ångström 東京", "note": "a b+c&d=e/f?g~h*i'j(k)!%", "empty": ""},
]


def test_duo_documented_v2_example():
    date = "Tue, 21 Aug 2012 17:29:18 -0000"
    canonical = canonical_string_v2(
        date, "POST", HOST, "/admin/v1/users", {"realname": "First Last", "username": "root"}
    )
    assert canonical == (
        "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-xxxxxxxx.duosecurity.com\n"
        "/admin/v1/users\nrealname=First%20Last&username=root"
    )
    assert authorization(IKEY, Secret(SKEY), canonical, "sha1") == (
        "Basic RElXSjhYNkFFWU9SNU9NQzZUUTE6YzFlZjQzNzY3YzNlYjNiMzI1OGRiZGRjYTZmOGQwOTQxZTA4NWI5Mg=="
    )


@pytest.mark.parametrize("params", PARAMETER_SETS)
def test_version5_matches_duo_client(params):
    clock = FakeClock(1_700_000_000)
    headers = Signer(SigningConfig(IKEY, Secret(SKEY), HOST), clock).headers("GET", PATH, params)
    date = rfc2822_date(clock.now())
    expected = duo_client.sign(
        IKEY,
        SKEY,
        "GET",
        HOST,
        PATH,
        date,
        5,
        duo_client.normalize_params(params),
        body="",
        additional_headers={"x-duo-date": date},
    )
    assert headers == {"x-duo-date": date, "Authorization": expected}


@pytest.mark.parametrize("digest", ["sha1", "sha512"])
@pytest.mark.parametrize("params", PARAMETER_SETS)
def test_version2_matches_duo_client(params, digest):
    clock = FakeClock(1_700_000_000)
    config = SigningConfig(IKEY, Secret(SKEY), HOST, version=2, digest=digest)
    headers = Signer(config, clock).headers("GET", PATH, params)
    date = rfc2822_date(clock.now())
    expected = duo_client.sign(
        IKEY,
        SKEY,
        "GET",
        HOST,
        PATH,
        date,
        2,
        duo_client.normalize_params(params),
        digestmod=getattr(hashlib, digest),
    )
    assert headers == {"Date": date, "Authorization": expected}


def test_date_is_fresh_on_every_call():
    clock = FakeClock(1_700_000_000)
    signer = Signer(SigningConfig(IKEY, Secret(SKEY), HOST), clock)
    first = signer.headers("GET", PATH, PARAMETER_SETS[0])
    clock.advance(61)
    second = signer.headers("GET", PATH, PARAMETER_SETS[0])
    assert first["x-duo-date"] != second["x-duo-date"]
    assert second["x-duo-date"] == "Tue, 14 Nov 2023 22:14:21 -0000"
    assert first["Authorization"] != second["Authorization"]


def test_host_is_signed_lower_case_and_the_signature_names_the_ikey():
    clock = FakeClock(1_700_000_000)
    upper = Signer(SigningConfig(IKEY, Secret(SKEY), HOST.upper()), clock).headers("GET", PATH, {})
    lower = Signer(SigningConfig(IKEY, Secret(SKEY), HOST), clock).headers("GET", PATH, {})
    assert upper == lower
    user, _, signature = base64.b64decode(lower["Authorization"][6:]).decode().partition(":")
    assert user == IKEY and len(signature) == 128


def test_secret_key_never_shows_in_reprs():
    config = SigningConfig(IKEY, Secret(SKEY), HOST)
    signer = Signer(config)
    for text in (repr(config), str(config), repr(signer), f"{config.skey}", str(config.skey)):
        assert SKEY not in text


@pytest.mark.parametrize(
    ("version", "digest"), [(3, "sha512"), (5, "sha1"), (2, "md5")], ids=["v3", "v5sha1", "md5"]
)
def test_unsupported_choices_are_refused(version, digest):
    with pytest.raises(ValueError):
        SigningConfig(IKEY, Secret(SKEY), HOST, version=version, digest=digest)
