"""Shared fixtures. The emulators start only when a test asks for ``local_cloud`` (directly or
through the fixtures below), so ``pytest tests/unit`` needs no Java."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from harness.emulators import ENV_VARS, FIRESTORE, LocalCloud, reset_firestore

if TYPE_CHECKING:
    # The Cloud client libraries take about 1 s to import: only tests that use them pay it.
    from google.cloud import firestore, storage

# Not the demo's project: resetting the test database must never touch demo data in an
# emulator that was given through FIRESTORE_EMULATOR_HOST.
TEST_PROJECT = "duo-telephony-test"


def unique_name(prefix: str) -> str:
    """A lowercase name no other test uses (Pub/Sub has no reset; bucket names are global)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The three backends for the whole session, their variables set in os.environ meanwhile.

    Backends already given by PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST or
    STORAGE_EMULATOR_HOST are reused and left running.
    """
    with (
        LocalCloud(tmp_path_factory.mktemp("local-cloud"), project=TEST_PROJECT) as cloud,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in cloud.env.items():
            patch.setenv(name, value)
        yield cloud


@pytest.fixture
def firestore_db(local_cloud: LocalCloud) -> Iterator[firestore.Client]:
    """A Firestore client on an empty database (the test project's documents are deleted)."""
    from shared.gcp.clients import firestore_client

    reset_firestore(local_cloud.env[ENV_VARS[FIRESTORE]], local_cloud.project)
    client = firestore_client(local_cloud.project)
    yield client
    client.close()


@pytest.fixture
def gcs_bucket(local_cloud: LocalCloud) -> Iterator[storage.Bucket]:
    """A new bucket with a unique name; it and its objects are deleted afterwards."""
    from shared.gcp.clients import storage_client

    client = storage_client(local_cloud.project)
    bucket = client.create_bucket(unique_name("test"))
    yield bucket
    for blob in client.list_blobs(bucket):
        blob.delete()
    bucket.delete()
    client.close()


@pytest.fixture
def pubsub_names(local_cloud: LocalCloud) -> str:
    """A suffix for this test's topic and subscription names, e.g. f"raw-{pubsub_names}"."""
    return uuid.uuid4().hex[:12]
