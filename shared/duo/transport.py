"""HTTP to Duo: one pooled session, bounded timeouts, TLS verification that cannot be turned off."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from shared.duo.endpoint import DuoEndpoint
from shared.duo.errors import DuoTransientError


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0


class DuoHttp:
    def __init__(
        self,
        endpoint: DuoEndpoint,
        timeouts: Timeouts = Timeouts(),
        session: requests.Session | None = None,
        user_agent: str = "duo-telephony",
        host_header: str | None = None,
    ) -> None:
        """``host_header``: the Duo host a local endpoint (the simulator) stands in for, sent
        as ``Host``, as if that host's name resolved to the simulator."""
        if host_header is not None and not endpoint.is_local:
            raise ValueError(f"a Host header is sent only to the local simulator, not {endpoint}")
        self.endpoint = endpoint
        self._timeouts = timeouts
        self._session = session or requests.Session()
        self._user_agent = user_agent
        self._host = {"Host": host_header} if host_header else {}

    def get(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Sends one GET and returns (status, body); network failures become transient errors."""
        return self._send(self._session.get, path, headers, params=dict(params))

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """Sends one POST with its (signed) body, as ``get`` sends a GET."""
        return self._send(self._session.post, path, headers, data=body)

    def _send(
        self,
        send: Callable[..., requests.Response],
        path: str,
        headers: Mapping[str, str],
        **content: Any,
    ) -> tuple[int, bytes]:
        try:
            response = send(
                self.endpoint.base_url + path,
                headers={"User-Agent": self._user_agent, **self._host, **headers},
                timeout=(self._timeouts.connect, self._timeouts.read),
                verify=True,
                allow_redirects=False,
                **content,
            )
            return response.status_code, response.content
        except requests.Timeout as error:
            raise DuoTransientError(f"Duo at {self.endpoint} timed out: {error}") from None
        except requests.RequestException as error:
            raise DuoTransientError(
                f"could not reach Duo at {self.endpoint}: {type(error).__name__}: {error}"
            ) from None

    def close(self) -> None:
        self._session.close()
