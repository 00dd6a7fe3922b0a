"""Verifies Duo HMAC request signatures the way Duo's servers do, independently of our client.

The canonical strings are built here from Duo's documentation and nothing else: no code of
``shared.duo.signing`` and not ``duo_hmac``, which our client signs with. A mistake in our
client's signing therefore shows as a 401 from the simulator instead of being repeated on both
sides. tests/fixtures/duo_signature_vectors.json (requests signed by Duo's own libraries) holds
this module to Duo's reference.

Accepted: version 5 (seven-line canonical string, HMAC-SHA512, line 7 hashing every ``x-duo-*``
header present) and version 2 (five lines, HMAC-SHA1 per Duo's documentation or HMAC-SHA512 as
Duo's clients sign). The date is ``X-Duo-Date`` when present, else ``Date``. A POST (the
Accounts API) signs its body: version 5 by its hash (Duo's clients send JSON), version 2 as the
parameters a form-encoded body holds.

Check order (Duo's own order is not documented): credentials present and well-formed (40101) ->
integration key known (40102) -> date present and parseable (40105) -> signature (40103) ->
date within 5 minutes of our clock (40105). Checking the signature before the skew means a
forged request learns nothing about our clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

from shared.clock import Clock
from shared.duo.secret import Secret

MAX_CLOCK_SKEW_SECONDS = 300.0
_FORM = "application/x-www-form-urlencoded"
_X_DUO_PREFIX = "x-duo-"
# RFC 3986's unreserved characters, the only ones Duo leaves unencoded (OAuth 1.0's rule).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class AuthError(Exception):
    """A request whose credentials Duo would refuse, with Duo's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return self.code // 100


MISSING_CREDENTIALS = (40101, "Missing request credentials")
INVALID_IKEY = (40102, "Invalid integration key in request credentials")
INVALID_SIGNATURE = (40103, "Invalid signature in request credentials")
INVALID_DATE = (40105, "Request has invalid date/timestamp")


def signed_host(host_header: str) -> str:
    """The host name a client signs: Duo's clients sign the host without the port."""
    host = host_header.strip()
    if host.startswith("["):  # IPv6 literal, e.g. [::1]:8443
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _percent_encode(text: str) -> str:
    # Upper-case hex over the UTF-8 bytes, as Duo's documentation shows (':' is %3A).
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def canonical_params(params: Mapping[str, Iterable[str]]) -> str:
    """Duo's parameter line: ``key=value`` pairs encoded, sorted by key then value, ``&``-joined."""
    encoded = sorted(
        (_percent_encode(key), sorted(_percent_encode(value) for value in values))
        for key, values in params.items()
    )
    return "&".join(f"{key}={value}" for key, values in encoded for value in values)


def canonical_v2(
    date: str, method: str, host: str, path: str, params: Mapping[str, Iterable[str]]
) -> str:
    """Version 2: date, method, host, path and parameters, one per line."""
    return "\n".join([date, method.upper(), host.lower(), path, canonical_params(params)])


def _x_duo_digest(headers: Mapping[str, str]) -> str:
    lowered = sorted((name.lower(), value) for name, value in headers.items())
    joined = "\0".join(part for pair in lowered for part in pair)
    return hashlib.sha512(joined.encode("utf-8")).hexdigest()


def canonical_v5(
    date: str,
    method: str,
    host: str,
    path: str,
    params: Mapping[str, Iterable[str]],
    body: bytes,
    x_duo_headers: Mapping[str, str],
) -> str:
    """Version 5: version 2's lines, then the SHA-512 of the body and of the x-duo headers."""
    return "\n".join(
        [
            canonical_v2(date, method, host, path, params),
            hashlib.sha512(body).hexdigest(),
            _x_duo_digest(x_duo_headers),
        ]
    )


def _parse_authorization(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    ikey, sep, signature = decoded.partition(":")
    if not sep or not ikey or not signature:
        return None
    return ikey, signature


def _parse_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" (what Duo's clients send) parses as a naive datetime meaning UTC.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _hexdigests(skey: Secret, canonical: str, digests: tuple[str, ...]) -> list[str]:
    key = skey.reveal().encode()
    return [hmac.new(key, canonical.encode(), getattr(hashlib, d)).hexdigest() for d in digests]


class SignatureChecker:
    """Checks one request's credentials against the known integration keys."""

    def __init__(
        self,
        keys: Mapping[str, Secret],
        clock: Clock,
        max_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        self._keys = dict(keys)
        self._clock = clock
        self._max_skew = max_skew_seconds

    def verify(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes = b""
    ) -> str:
        """The integration key of an authentic request; raises AuthError otherwise. A POST's
        form-encoded body holds parameters, which version 2 signs as parameters; version 5
        signs the body by its hash (Duo's clients send a JSON body)."""
        lower = {name.lower(): value for name, value in headers.items()}
        credentials = _parse_authorization(lower.get("authorization"))
        if credentials is None:
            raise AuthError(*MISSING_CREDENTIALS)
        ikey, signature = credentials
        skey = self._keys.get(ikey)
        if skey is None:
            raise AuthError(*INVALID_IKEY)
        date = lower.get("x-duo-date") or lower.get("date")
        sent_at = _parse_date(date)
        if date is None or sent_at is None:
            raise AuthError(*INVALID_DATE)

        params = parse_qs(query, keep_blank_values=True)
        form = params
        if lower.get("content-type", "").split(";")[0].strip().lower() == _FORM:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = {key: params.get(key, []) + form.get(key, []) for key in {*params, *form}}
        host = signed_host(lower.get("host", ""))
        x_duo = {name: value for name, value in lower.items() if name.startswith(_X_DUO_PREFIX)}
        v5 = canonical_v5(date, method, host, path, params, body, x_duo)
        v2 = canonical_v2(date, method, host, path, form)
        candidates = _hexdigests(skey, v5, ("sha512",)) + _hexdigests(skey, v2, ("sha1", "sha512"))
        given = signature.lower().encode()
        # Compare with every candidate (no early exit) so timing tells nothing about which.
        matches = [hmac.compare_digest(given, expected.encode()) for expected in candidates]
        if not any(matches):
            raise AuthError(*INVALID_SIGNATURE)

        if abs(self._clock.now() - sent_at) > self._max_skew:
            raise AuthError(*INVALID_DATE)
        return ikey
