"""Duo request signing (HMAC), versions 5 and 2.

Version 5 is Duo's official ``duo-hmac`` signer itself: it canonicalizes the request and sends
the date in ``X-Duo-Date``, which is part of the signed x-duo header hash. Version 2 is not in
``duo-hmac``, so it is built here from that library's parameter canonicalization, which every
version shares, signed with HMAC-SHA1 (Duo's documentation) or HMAC-SHA512 (Duo's clients).
Every call builds a fresh date: Duo rejects a re-used Date (40103) or one off by 5 minutes (40105).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from duo_hmac import duo_canonicalize, duo_hmac_utils
from duo_hmac.duo_hmac import DuoHmac

from shared.clock import Clock, SystemClock
from shared.duo.secret import Secret

SignatureVersion = Literal[2, 5]
Digest = Literal["sha1", "sha512"]


def rfc2822_date(epoch_seconds: float) -> str:
    """The date in the form Duo's clients send, e.g. ``Tue, 21 Aug 2012 17:29:18 -0000``."""
    return email.utils.formatdate(epoch_seconds)


def canonical_parameters(params: Mapping[str, str | list[str]]) -> str:
    """The canonical parameter line shared by every signature version."""
    return duo_canonicalize.canonicalize_parameters(duo_hmac_utils.normalize_parameters(params))


def canonical_string_v2(
    date: str, method: str, host: str, path: str, params: Mapping[str, str | list[str]]
) -> str:
    return "\n".join([date, method.upper(), host.lower(), path, canonical_parameters(params)])


def authorization(ikey: str, skey: Secret, canonical: str, digest: Digest) -> str:
    mac = hmac.new(skey.reveal().encode(), canonical.encode(), getattr(hashlib, digest))
    token = base64.b64encode(f"{ikey}:{mac.hexdigest()}".encode()).decode()
    return f"Basic {token}"


class _ClockDate:
    """Adapts our Clock to duo-hmac's date provider."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def get_rfc_2822_date_string(self) -> str:
        return rfc2822_date(self._clock.now())


@dataclass(frozen=True)
class SigningConfig:
    ikey: str
    skey: Secret
    host: str  # host name only, no port: Duo signs the host it was given, without the port
    version: SignatureVersion = 5
    digest: Digest = "sha512"  # version 2 only; version 5 is always SHA-512

    def __post_init__(self) -> None:
        if self.version not in (2, 5):
            raise ValueError(f"unsupported Duo signature version {self.version!r}: use 5 or 2")
        if self.digest not in ("sha1", "sha512"):
            raise ValueError(f"unsupported digest {self.digest!r}: use sha512 or sha1")
        if self.version == 5 and self.digest != "sha512":
            raise ValueError("signature version 5 is always HMAC-SHA512")


class Signer:
    """Builds the authentication headers of one request, with a fresh date every time."""

    def __init__(self, config: SigningConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._duo_hmac = DuoHmac(
            config.ikey, config.skey.reveal(), config.host, _ClockDate(self._clock)
        )

    def __repr__(self) -> str:
        return f"Signer(ikey={self._config.ikey!r}, host={self._config.host!r})"

    def headers(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, str]:
        if self._config.version == 5:
            _uri, _body, headers = self._duo_hmac.get_authentication_components(
                method, path, dict(params)
            )
            return headers
        date = rfc2822_date(self._clock.now())
        canonical = canonical_string_v2(date, method, self._config.host, path, params)
        return {
            "Date": date,
            "Authorization": authorization(
                self._config.ikey, self._config.skey, canonical, self._config.digest
            ),
        }

    def post(self, path: str, params: Mapping[str, str]) -> tuple[dict[str, str], bytes]:
        """The headers and body of a POST, as Duo's clients send it: version 5 sends the
        parameters as a JSON body, which it signs by its hash (duo-hmac); version 2 sends them
        form-encoded and signs them as parameters (Duo's documentation)."""
        if self._config.version == 5:
            _uri, body, headers = self._duo_hmac.get_authentication_components(
                "POST", path, dict(params)
            )
            return headers, body.encode()
        headers = self.headers("POST", path, params)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return headers, urllib.parse.urlencode(params).encode()
