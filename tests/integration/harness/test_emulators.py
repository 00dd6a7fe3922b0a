"""LocalCloud against the real emulators: start/stop, reuse, and one round trip per backend."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import firestore, storage

from harness.emulators import (
    ENV_VARS,
    FIRESTORE,
    PUBSUB,
    STORAGE,
    Emulator,
    EmulatorError,
    LocalCloud,
    http_request,
    reset_storage,
    storage_spec,
)
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber, storage_client

pytestmark = pytest.mark.integration


def _environ_without_emulators() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS.values()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(env: dict[str, str]) -> dict[str, tuple[int, str]]:
    urls = {
        PUBSUB: f"http://{env[ENV_VARS[PUBSUB]]}/",
        FIRESTORE: f"http://{env[ENV_VARS[FIRESTORE]]}/",
        STORAGE: f"{env[ENV_VARS[STORAGE]]}/_internal/healthcheck",
    }
    answers = {name: http_request("GET", url) for name, url in urls.items()}
    return {name: (status, body.strip()) for name, (status, body) in answers.items()}


def test_starts_all_three_and_stopping_leaves_no_process(tmp_path: Path) -> None:
    with LocalCloud(tmp_path, project="p-start", environ=_environ_without_emulators()) as cloud:
        assert set(cloud.started) == {PUBSUB, FIRESTORE, STORAGE}
        assert cloud.env[ENV_VARS[PUBSUB]].startswith("127.0.0.1:")
        assert cloud.env[ENV_VARS[FIRESTORE]].startswith("127.0.0.1:")
        assert cloud.env[ENV_VARS[STORAGE]].startswith("http://127.0.0.1:")
        assert cloud.env["GOOGLE_CLOUD_PROJECT"] == "p-start"
        answers = _answers(cloud.env)
        assert answers[PUBSUB] == (200, "Ok")
        assert answers[FIRESTORE] == (200, "Ok")
        assert answers[STORAGE][0] == 200
        pids = [emulator.pid for emulator in cloud.emulators.values()]
        for pid in pids:
            assert pid is not None
            assert os.getpgid(pid) == pid  # its own process group
        assert all((tmp_path / f"{name}.log").is_file() for name in cloud.started)
    assert not [pid for pid in pids if pid is not None and _alive(pid)]


def test_reuses_backends_given_by_env_and_leaves_them_running(
    local_cloud: LocalCloud, tmp_path: Path
) -> None:
    given = {
        ENV_VARS[PUBSUB]: local_cloud.env[ENV_VARS[PUBSUB]],
        ENV_VARS[FIRESTORE]: local_cloud.env[ENV_VARS[FIRESTORE]],
    }
    environ = {**_environ_without_emulators(), **given}
    with LocalCloud(tmp_path, environ=environ) as cloud:
        assert cloud.started == (STORAGE,)
        assert {k: cloud.env[k] for k in given} == given
        storage_pid = cloud.emulators[STORAGE].pid
        assert storage_pid is not None
    assert not _alive(storage_pid)
    answers = _answers(local_cloud.env)
    assert (answers[PUBSUB], answers[FIRESTORE]) == ((200, "Ok"), (200, "Ok"))


def test_failed_start_stops_the_others(local_cloud: LocalCloud, tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false is not None
    environ = {
        **_environ_without_emulators(),
        ENV_VARS[FIRESTORE]: local_cloud.env[ENV_VARS[FIRESTORE]],
    }
    cloud = LocalCloud(tmp_path, environ=environ, fake_gcs_binary=Path(false))
    with pytest.raises(EmulatorError, match="storage emulator exited with code 1"):
        cloud.start()
    pubsub_pid = cloud.emulators[PUBSUB].pid
    assert pubsub_pid is not None
    assert not _alive(pubsub_pid)


def test_pubsub_publish_and_pull(local_cloud: LocalCloud, pubsub_names: str) -> None:
    publisher, subscriber = pubsub_publisher(), pubsub_subscriber()
    topic = publisher.topic_path(local_cloud.project, f"topic-{pubsub_names}")
    subscription = subscriber.subscription_path(local_cloud.project, f"sub-{pubsub_names}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)

    message_id = publisher.publish(topic, b'{"n": 1}', kind="test").result(timeout=30)

    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
    [received] = response.received_messages
    assert received.message.message_id == message_id
    assert received.message.data == b'{"n": 1}'
    assert dict(received.message.attributes) == {"kind": "test"}
    subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
    publisher.stop()
    subscriber.close()


def test_firestore_transaction(firestore_db: firestore.Client) -> None:
    ref = firestore_db.collection("cursors").document("tx")
    ref.create({"n": 0})

    @firestore.transactional
    def bump(transaction: firestore.Transaction) -> int:
        n = ref.get(transaction=transaction).get("n") + 1
        transaction.update(ref, {"n": n})
        return n

    assert [bump(firestore_db.transaction()) for _ in range(3)] == [1, 2, 3]
    assert ref.get().get("n") == 3
    with pytest.raises(exceptions.AlreadyExists):
        ref.create({"n": 0})


@pytest.mark.parametrize("run", [1, 2])
def test_firestore_db_starts_empty(firestore_db: firestore.Client, run: int) -> None:
    collection = firestore_db.collection("left-behind")
    assert list(collection.stream()) == []
    collection.document("doc").set({"run": run})


def test_gcs_create_only_upload(gcs_bucket: storage.Bucket) -> None:
    gcs_bucket.blob("a.ndjson").upload_from_string(b"{}\n", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob("a.ndjson").upload_from_string(b"other\n", if_generation_match=0)
    assert gcs_bucket.blob("a.ndjson").download_as_bytes() == b"{}\n"


def test_gcs_resumable_create_only_upload(gcs_bucket: storage.Bucket) -> None:
    data = os.urandom(600 * 1024)
    # A chunk_size makes the client use a resumable upload, in three chunks here.
    gcs_bucket.blob("big.bin", chunk_size=256 * 1024).upload_from_string(
        data, if_generation_match=0
    )
    assert gcs_bucket.blob("big.bin").download_as_bytes() == data
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob("big.bin", chunk_size=256 * 1024).upload_from_string(
            data, if_generation_match=0
        )


def test_gcs_gzip_object_read_back(gcs_bucket: storage.Bucket) -> None:
    lines = b'{"event": 1}\n' * 500
    blob = gcs_bucket.blob("logs.ndjson.gz")
    blob.content_encoding = "gzip"
    blob.upload_from_string(
        gzip.compress(lines), content_type="application/x-ndjson", if_generation_match=0
    )

    stored = gcs_bucket.get_blob("logs.ndjson.gz")
    assert stored is not None
    assert (stored.content_encoding, stored.content_type) == ("gzip", "application/x-ndjson")
    assert stored.download_as_bytes() == lines  # the client decodes the gzip encoding
    assert gzip.decompress(stored.download_as_bytes(raw_download=True)) == lines


def test_reset_storage_deletes_buckets_and_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private fake-gcs-server: the reset would also empty the session's (or a reused) one.
    emulator = Emulator(storage_spec(), tmp_path)
    emulator.start()
    try:
        endpoint = f"http://{emulator.address}"
        monkeypatch.setenv(ENV_VARS[STORAGE], endpoint)
        client = storage_client("p-reset")
        client.create_bucket("doomed").blob("a.txt").upload_from_string(b"a")
        reset_storage(endpoint)
        assert list(client.list_buckets()) == []
    finally:
        emulator.stop()
