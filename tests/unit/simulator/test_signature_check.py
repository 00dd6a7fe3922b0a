"""The simulator checks signatures as Duo does: versions 5 and 2, Date or X-Duo-Date, 5 minutes.

Its canonicalization is its own: requests signed by Duo's own libraries (the fixed vectors in
tests/fixtures) are what hold it to Duo, not our client's signing code.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import string
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest

from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from simulator import signature_check
from simulator.signature_check import (
    AuthError,
    SignatureChecker,
    canonical_v2,
    canonical_v5,
    signed_host,
)
from tests.fakes import FakeClock
from tests.fixtures import make_signature_vectors
from tests.unit.test_layers import imports_of

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


# --- independence from our client's signing --------------------------------------------------

# The checker may use our Clock and Secret types (its interface), nothing that signs.
INTERFACE_MODULES = {"shared.clock", "shared.duo.secret"}
SIGNING_CODE = ("shared.duo.signing", "duo_hmac")  # our client's signer and the library it uses


def test_the_checker_imports_no_signing_code() -> None:
    imported = imports_of(Path(signature_check.__file__).read_text())
    assert {name for name in imported if name.split(".")[0] == "shared"} <= INTERFACE_MODULES
    assert not [
        name
        for name in imported
        for code in SIGNING_CODE
        if name == code or name.startswith(code + ".")
    ]


# --- fixed vectors signed by Duo's own libraries ---------------------------------------------

FIXTURE = Path(make_signature_vectors.__file__).with_name("duo_signature_vectors.json")
VECTOR_FILE = json.loads(FIXTURE.read_text(encoding="utf-8"))
VECTORS = VECTOR_FILE["vectors"]
VECTOR_IKEY = VECTOR_FILE["ikey"]
VECTOR_KEYS = {VECTOR_IKEY: Secret(VECTOR_FILE["skey"])}


def by_name(vectors: list[dict]) -> list:
    return [pytest.param(vector, id=vector["name"]) for vector in vectors]


def vector_checker(vector: dict) -> SignatureChecker:
    """A checker whose clock reads the vector's date, so only the signature can fail."""
    sent_at = email.utils.parsedate_to_datetime(vector["date"]).replace(tzinfo=datetime.UTC)
    return SignatureChecker(VECTOR_KEYS, FakeClock(sent_at.timestamp()))


def body_of(vector: dict) -> bytes:
    return (vector.get("body") or "").encode()


def verify_vector(vector: dict) -> str:
    return vector_checker(vector).verify(
        vector["method"], vector["path"], vector["query"], vector["headers"], body_of(vector)
    )


def test_the_vectors_cover_every_version_and_digest() -> None:
    kinds = {(v["sig_version"], v["digest"]) for v in VECTORS}
    assert kinds == {(2, "sha1"), (2, "sha512"), (5, "sha512")}
    assert any("next_offset" in v["params"] for v in VECTORS)
    assert any("next_offset" not in v["params"] for v in VECTORS)


def test_the_vectors_are_what_duos_libraries_make() -> None:
    # Regenerating with the installed duo_client and duo_hmac gives the committed file: the
    # vectors are Duo's, not edited by hand.
    assert make_signature_vectors.build_vectors() == VECTOR_FILE


@pytest.mark.parametrize("vector", by_name(VECTORS))
def test_our_canonical_string_is_duos(vector) -> None:
    headers = {name.lower(): value for name, value in vector["headers"].items()}
    date = headers.get("x-duo-date") or headers["date"]
    params = parse_qs(vector["query"], keep_blank_values=True)
    host = signed_host(headers["host"])
    if vector["sig_version"] == 2:
        # A version 2 POST signs its form-encoded body as its parameters.
        form = params or parse_qs(body_of(vector).decode(), keep_blank_values=True)
        assert (
            canonical_v2(date, vector["method"], host, vector["path"], form)
            == (vector["canonical"])
        )
    else:
        x_duo = {name: value for name, value in headers.items() if name.startswith("x-duo-")}
        v5 = canonical_v5(
            date, vector["method"], host, vector["path"], params, body_of(vector), x_duo
        )
        assert v5 == vector["canonical"]


@pytest.mark.parametrize("vector", by_name(VECTORS))
def test_every_vector_is_accepted(vector) -> None:
    assert verify_vector(vector) == VECTOR_IKEY


def bump(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by the next one of its kind."""
    for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
        if text[index] in alphabet:
            replacement = alphabet[(alphabet.index(text[index]) + 1) % len(alphabet)]
            return text[:index] + replacement + text[index + 1 :]
    raise ValueError(f"{text[index]!r} in {text!r} is not a letter or a digit")


def _date_header(headers: dict) -> str:
    return next(name for name in ("x-duo-date", "Date") if name in headers)


def _change_method(vector: dict) -> None:
    vector["method"] = bump(vector["method"], 0)


def _change_host(vector: dict) -> None:
    vector["headers"]["Host"] = bump(vector["headers"]["Host"], 0)


def _change_path(vector: dict) -> None:
    vector["path"] = bump(vector["path"], 1)


def _change_parameter_name(vector: dict) -> None:
    vector["query"] = bump(vector["query"], 0)


def _change_parameter_value(vector: dict) -> None:
    query = vector["query"]
    last = max(i for i, c in enumerate(query) if c.isascii() and c.isalnum())
    vector["query"] = bump(query, last)


def _change_date(vector: dict) -> None:
    # The seconds' last digit: still a valid date, well within the clock skew.
    name = _date_header(vector["headers"])
    date = vector["headers"][name]
    vector["headers"][name] = bump(date, date.rindex(":") + 2)


def _change_signature(vector: dict) -> None:
    token = vector["headers"]["Authorization"].removeprefix("Basic ")
    ikey, _, signature = base64.b64decode(token).decode().partition(":")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    vector["headers"]["Authorization"] = (
        "Basic " + base64.b64encode(f"{ikey}:{flipped}".encode()).decode()
    )


def _change_x_duo_header(vector: dict) -> None:
    name = next(n for n in vector["headers"] if n.lower().startswith("x-duo-") and "date" not in n)
    vector["headers"][name] = bump(vector["headers"][name], 0)


def _add_x_duo_header(vector: dict) -> None:
    vector["headers"]["X-Duo-Extra"] = "injected"


def _change_body(vector: dict) -> None:
    body = vector["body"]
    vector["body"] = bump(body, max(i for i, c in enumerate(body) if c.isascii() and c.isalnum()))


CHANGES = {
    "method": (_change_method, lambda v: True),
    "host": (_change_host, lambda v: True),
    "path": (_change_path, lambda v: True),
    "parameter name": (_change_parameter_name, lambda v: v["query"] != ""),
    "parameter value": (_change_parameter_value, lambda v: v["query"] != ""),
    "date": (_change_date, lambda v: True),
    "signature": (_change_signature, lambda v: True),
    "x-duo header": (
        _change_x_duo_header,
        lambda v: any(n.lower().startswith("x-duo-") and "date" not in n for n in v["headers"]),
    ),
    # Version 2 does not sign x-duo headers; version 5 signs every one present.
    "x-duo header added": (_add_x_duo_header, lambda v: v["sig_version"] == 5),
    "body": (_change_body, lambda v: any(c.isascii() and c.isalnum() for c in v.get("body", ""))),
}


@pytest.mark.parametrize(
    ("vector", "change"),
    [
        pytest.param(vector, change, id=f"{vector['name']}-{change}")
        for vector in VECTORS
        for change, (_, applies) in CHANGES.items()
        if applies(vector)
    ],
)
def test_a_vector_with_one_thing_changed_is_refused(vector, change) -> None:
    changed = json.loads(json.dumps(vector))
    CHANGES[change][0](changed)
    assert changed != vector
    with pytest.raises(AuthError) as raised:
        verify_vector(changed)
    assert raised.value.code == 40103


@pytest.mark.parametrize("version", [5, 2])
def test_a_post_body_is_signed_as_duos_clients_sign_it(version) -> None:
    # Version 5: a JSON body, signed by its hash; version 2: form-encoded parameters.
    clock = FakeClock(1_800_000_000)
    signer = Signer(SigningConfig(IKEY, SKEY, "127.0.0.1", version, "sha512"), clock)
    headers, body = signer.post("/accounts/v1/account/create", {"name": "Acme Corp"})
    headers["Host"] = "127.0.0.1:18443"
    checker = SignatureChecker({IKEY: SKEY}, clock)
    assert checker.verify("POST", "/accounts/v1/account/create", "", headers, body) == IKEY
    changed = body.replace(b"Acme", b"Acne")
    with pytest.raises(AuthError) as raised:
        checker.verify("POST", "/accounts/v1/account/create", "", headers, changed)
    assert raised.value.code == 40103
