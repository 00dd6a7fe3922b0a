"""Reads the Duo secret key from Secret Manager, so it is never a plain environment variable."""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.clock import Clock
from shared.duo.secret import Secret


def read_secret_version(name: str) -> str:
    """The payload of a secret version ``projects/P/secrets/S/versions/V``, as text. The client
    is imported here: only the fetcher on Cloud Run needs it."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(name=name).payload.data.decode("utf-8")


class SecretUnavailableError(RuntimeError):
    """A secret version could not be read; the message names it, never its payload."""


class CachedSecrets:
    """Secret versions by name, each read at most once per ``ttl_seconds``: many sources share
    one (an MSP parent's key reads every child), and Secret Manager bills each access."""

    def __init__(
        self,
        read: Callable[[str], str],
        clock: Clock,
        ttl_seconds: float = 600.0,
    ) -> None:
        self._read = read
        self._clock = clock
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Secret]] = {}

    def get(self, name: str) -> Secret:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self._clock.now() - cached[0] < self._ttl:
            return cached[1]
        try:
            secret = Secret(self._read(name).strip())
        except Exception as error:  # the reader's errors carry no secret material
            raise SecretUnavailableError(
                f"could not read the secret {name}: {type(error).__name__}"
            ) from None
        with self._lock:
            self._cache[name] = (self._clock.now(), secret)
        return secret
