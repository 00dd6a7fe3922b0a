"""Reads the Duo secret key from Secret Manager, so it is never a plain environment variable."""

from __future__ import annotations


def read_secret_version(name: str) -> str:
    """The payload of a secret version ``projects/P/secrets/S/versions/V``, as text. The client
    is imported here: only the fetcher on Cloud Run needs it."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(name=name).payload.data.decode("utf-8")
