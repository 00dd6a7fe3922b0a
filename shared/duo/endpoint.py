"""The Duo API host setting: ``host[:port]``, HTTPS always, plain HTTP to loopback only."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")
# Duo's API hosts: api-<id>.duosecurity.com, and Duo Federal's api-<id>.duofederal.com.
_DUO_API_HOST = re.compile(r"^api-[a-z0-9]+\.(duosecurity|duofederal)\.com$")


class EndpointError(ValueError):
    pass


@dataclass(frozen=True)
class DuoEndpoint:
    scheme: str
    host: str  # what Duo signs: the host name, no port, no brackets
    port: int | None

    @classmethod
    def parse(cls, value: str, setting: str = "DUO_API_HOST") -> DuoEndpoint:
        raw = value.strip()
        scheme = "https"
        if "://" in raw:
            scheme, raw = raw.split("://", 1)
            scheme = scheme.lower()
            if scheme not in ("https", "http"):
                raise EndpointError(f"{setting}: unsupported scheme {scheme!r}; use host[:port]")
        raw = raw.rstrip("/")
        match = _HOST_PORT.match(raw)
        if not match:
            raise EndpointError(
                f"{setting}: {value!r} is not host[:port] (e.g. api-xxxxxxxx.duosecurity.com)"
            )
        host = match.group("host").strip("[]").lower()
        port = int(match.group("port")) if match.group("port") else None
        if port is not None and not 0 < port < 65536:
            raise EndpointError(f"{setting}: port {port} is out of range")
        if scheme == "http" and not _is_loopback(host):
            raise EndpointError(
                f"{setting}: plain http:// is allowed only to a loopback address "
                f"(the local simulator), not to {host!r}: Duo is reached over HTTPS"
            )
        return cls(scheme, host, port)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")

    @property
    def is_local(self) -> bool:
        """Plain http to loopback: the local simulator."""
        return self.scheme == "http"

    def __str__(self) -> str:
        return self.base_url


def is_duo_api_host(host: str) -> bool:
    """Whether ``host`` is a name Duo gives an account's API (no port, no scheme)."""
    return _DUO_API_HOST.fullmatch(host.lower()) is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
