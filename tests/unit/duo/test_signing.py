"""Our Authorization headers must equal Duo's official client's, byte for byte."""

import base64
import email.utils
import hashlib
import json

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
from tests.fixtures import make_signature_vectors

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


# --- fixed vectors signed by Duo's own libraries ---------------------------------------------

VECTOR_FILE = json.loads(make_signature_vectors.OUTPUT.read_text(encoding="utf-8"))
# Ours sends duo-hmac's X-Duo-Date for version 5 (duo_client's sends Date) and Date for 2.
OURS = [v for v in VECTOR_FILE["vectors"] if v["library"] == "duo_hmac" or v["sig_version"] == 2]


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["name"]) for v in OURS])
def test_our_signer_makes_the_requests_duos_libraries_make(vector):
    clock = FakeClock(email.utils.parsedate_to_datetime(vector["date"]).timestamp())
    host = vector["headers"]["Host"].rsplit(":", 1)[0]  # Duo signs the host without the port
    config = SigningConfig(
        VECTOR_FILE["ikey"], Secret(VECTOR_FILE["skey"]), host, vector["sig_version"],
        vector["digest"],
    )  # fmt: skip
    signer = Signer(config, clock)
    if vector["method"] == "POST":
        headers, body = signer.post(vector["path"], vector["params"])
        assert body.decode() == vector["body"]
    else:
        headers = signer.headers("GET", vector["path"], vector["params"])
    assert headers["Authorization"] == vector["headers"]["Authorization"]


def test_the_vectors_hold_an_accounts_list_and_a_child_read_with_its_account_id():
    names = {v["name"] for v in OURS}
    assert {"v5 duo_hmac accounts list", "v2-sha512 accounts create"} <= names
    assert {"v5 duo_hmac child first page", "v2-sha1 child first page"} <= names
