"""Google Cloud clients that talk to the local emulators when their variables are set, and to
the real services (with Application Default Credentials) otherwise.

PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST are honoured by those client libraries
themselves; STORAGE_EMULATOR_HOST is applied here explicitly, with anonymous credentials, so
the Storage client never looks for real credentials while pointed at fake-gcs-server.
"""

from __future__ import annotations

import os
from typing import Any

from google.api_core import gapic_v1
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, pubsub_v1, storage

from shared.gcp.operations import OPERATIONS, PUBSUB_BYTES, PUBSUB_MESSAGES, count_firestore

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class _CountingPublisherClient(pubsub_v1.PublisherClient):
    """Counts each message published and its billable size (data and attributes)."""

    def publish(
        self,
        topic: str,
        data: bytes,
        ordering_key: str = "",
        retry: Any = gapic_v1.method.DEFAULT,
        timeout: Any = gapic_v1.method.DEFAULT,
        **attrs: str,
    ) -> Any:
        future = super().publish(topic, data, ordering_key, retry, timeout, **attrs)
        OPERATIONS.add(PUBSUB_MESSAGES)
        OPERATIONS.add(
            PUBSUB_BYTES,
            len(data) + len(ordering_key) + sum(len(k) + len(v) for k, v in attrs.items()),
        )
        return future


def pubsub_publisher(
    batch_settings: pubsub_v1.types.BatchSettings | None = None,
    publisher_options: pubsub_v1.types.PublisherOptions | None = None,
) -> pubsub_v1.PublisherClient:
    """A Pub/Sub publisher (emulator if PUBSUB_EMULATOR_HOST is set), counting what it
    publishes (``shared.gcp.operations``)."""
    return _CountingPublisherClient(
        batch_settings=batch_settings or pubsub_v1.types.BatchSettings(),
        publisher_options=publisher_options or pubsub_v1.types.PublisherOptions(),
    )


def pubsub_subscriber() -> pubsub_v1.SubscriberClient:
    """A Pub/Sub subscriber (emulator if PUBSUB_EMULATOR_HOST is set)."""
    return pubsub_v1.SubscriberClient()


def firestore_client(project: str, database: str | None = None) -> firestore.Client:
    """A Firestore client for ``database`` of ``project`` (None: its default database; the
    emulator if FIRESTORE_EMULATOR_HOST is set, which keeps any database named), counting its
    reads, writes and deletes (``shared.gcp.operations``)."""
    client = firestore.Client(project=project, database=database)
    # The API client is private to firestore.Client, and the only place every read and
    # write passes, transactions included; tests/integration/gcp/test_operations.py pins it.
    count_firestore(client._firestore_api)
    return client


def storage_client(project: str) -> storage.Client:
    """A Cloud Storage client for ``project`` (fake-gcs-server if STORAGE_EMULATOR_HOST is
    set: a URL such as http://127.0.0.1:4443; a bare host:port is taken as http)."""
    host = os.environ.get(STORAGE_EMULATOR_ENV)
    if not host:
        return storage.Client(project=project)
    if "://" not in host:
        host = f"http://{host}"
    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
    )
