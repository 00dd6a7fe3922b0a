"""The operation counts against the emulators: each Firestore call counted as Firestore bills
it, each published message with its size, and a timeCreated fake-gcs-server sets at upload."""

from __future__ import annotations

import time

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.gcp import operations
from shared.gcp.clients import pubsub_publisher
from shared.gcp.operations import Operations, count_firestore
from tests.conftest import unique_name

pytestmark = pytest.mark.integration


@pytest.fixture
def tally(firestore_db: firestore.Client) -> Operations:
    counted = Operations()
    # A fresh API client for the test's own tally (the fixture's counts in the process's).
    firestore_db._firestore_api_internal = None
    count_firestore(firestore_db._firestore_api, counted)
    return counted


def test_writes_reads_and_deletes_are_counted_as_firestore_bills_them(
    firestore_db: firestore.Client, tally: Operations
) -> None:
    things = firestore_db.collection("things")
    things.document("a").set({"n": 1})
    batch = firestore_db.batch()
    batch.set(things.document("b"), {"n": 2})
    batch.set(things.document("c"), {"n": 3})
    batch.delete(things.document("a"))
    batch.commit()
    assert tally.snapshot() == {"firestore_writes": 3, "firestore_deletes": 1}

    things.document("b").get()
    things.document("nothing-here").get()  # a lookup of a missing document: one read
    assert tally.snapshot()["firestore_reads"] == 2
    assert len(list(things.stream())) == 2  # two documents returned: two reads
    assert tally.snapshot()["firestore_reads"] == 4
    # Nothing returned: still one read.
    assert list(things.where(filter=FieldFilter("n", ">", 10)).stream()) == []
    assert tally.snapshot()["firestore_reads"] == 5
    assert things.count().get()[0][0].value == 2  # an aggregation: one read
    assert tally.snapshot()["firestore_reads"] == 6


def test_a_transaction_s_reads_and_writes_are_counted(
    firestore_db: firestore.Client, tally: Operations
) -> None:
    ref = firestore_db.collection("things").document("t")
    ref.set({"n": 1})

    @firestore.transactional
    def bump(transaction: firestore.Transaction) -> None:
        n = ref.get(transaction=transaction).get("n")
        transaction.update(ref, {"n": n + 1})

    bump(firestore_db.transaction())
    assert tally.snapshot() == {"firestore_writes": 2, "firestore_reads": 1}


def test_published_messages_are_counted_with_their_data_and_attributes(local_cloud) -> None:
    client = pubsub_publisher()
    topic = client.topic_path(local_cloud.project, unique_name("ops"))
    client.create_topic(name=topic)
    before = operations.OPERATIONS.snapshot()
    client.publish(topic, b"12345", kind="ab").result(timeout=30)
    after = operations.OPERATIONS.snapshot()
    assert after["pubsub_messages"] - before.get("pubsub_messages", 0) == 1
    assert after["pubsub_bytes"] - before.get("pubsub_bytes", 0) == 5 + 4 + 2


def test_fake_gcs_server_sets_time_created_at_upload(gcs_bucket) -> None:
    # The benchmark's freshness is measured to an object's timeCreated: it must be the moment
    # of the upload, to the millisecond (a clock of whole seconds would not do).
    before = time.time()
    blob = gcs_bucket.blob("t.ndjson")
    blob.upload_from_string(b"{}\n", if_generation_match=0)
    after = time.time()
    blob.reload()
    assert before - 0.005 <= blob.time_created.timestamp() <= after + 0.005


def test_the_services_firestore_client_counts_into_the_process_tally(
    firestore_db: firestore.Client,
) -> None:
    before = operations.OPERATIONS.snapshot().get("firestore_writes", 0)
    firestore_db.collection("things").document("w").set({"n": 1})
    assert operations.OPERATIONS.snapshot()["firestore_writes"] == before + 1
