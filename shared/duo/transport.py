"""HTTP to Duo: one pooled session, bounded timeouts, TLS verification that cannot be turned off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    ) -> None:
        self.endpoint = endpoint
        self._timeouts = timeouts
        self._session = session or requests.Session()
        self._user_agent = user_agent

    def get(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Sends one GET and returns (status, body); network failures become transient errors."""
        try:
            response = self._session.get(
                self.endpoint.base_url + path,
                params=dict(params),
                headers={"User-Agent": self._user_agent, **headers},
                timeout=(self._timeouts.connect, self._timeouts.read),
                verify=True,
                allow_redirects=False,
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
