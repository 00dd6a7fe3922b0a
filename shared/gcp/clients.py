"""Google Cloud clients that talk to the local emulators when their variables are set, and to
the real services (with Application Default Credentials) otherwise.

PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST are honoured by those client libraries
themselves; STORAGE_EMULATOR_HOST is applied here explicitly, with anonymous credentials, so
the Storage client never looks for real credentials while pointed at fake-gcs-server.
"""

from __future__ import annotations

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, pubsub_v1, storage

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def pubsub_publisher(
    batch_settings: pubsub_v1.types.BatchSettings | None = None,
    publisher_options: pubsub_v1.types.PublisherOptions | None = None,
) -> pubsub_v1.PublisherClient:
    """A Pub/Sub publisher (emulator if PUBSUB_EMULATOR_HOST is set)."""
    return pubsub_v1.PublisherClient(
        batch_settings=batch_settings or pubsub_v1.types.BatchSettings(),
        publisher_options=publisher_options or pubsub_v1.types.PublisherOptions(),
    )


def pubsub_subscriber() -> pubsub_v1.SubscriberClient:
    """A Pub/Sub subscriber (emulator if PUBSUB_EMULATOR_HOST is set)."""
    return pubsub_v1.SubscriberClient()


def firestore_client(project: str) -> firestore.Client:
    """A Firestore client for ``project`` (emulator if FIRESTORE_EMULATOR_HOST is set)."""
    return firestore.Client(project=project)


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
