"""The Storage gate against the Storage emulator: it passes requests through, and holds an
object's first upload until a second one arrives, so two create-only uploads really race."""

from __future__ import annotations

import threading

import pytest
from google.api_core.exceptions import PreconditionFailed
from google.cloud import storage

from harness.emulators import ENV_VARS, STORAGE, LocalCloud
from harness.storage_gate import StorageGate
from shared.gcp.clients import storage_client

pytestmark = pytest.mark.integration


def test_two_create_only_uploads_of_one_object_race_and_one_wins(
    local_cloud: LocalCloud, gcs_bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StorageGate(local_cloud.env[ENV_VARS[STORAGE]]) as gate:
        monkeypatch.setenv(ENV_VARS[STORAGE], gate.url)
        through = storage_client(local_cloud.project).bucket(gcs_bucket.name)
        race = gate.race(lambda name: name == "raced.txt")
        outcomes: list[str] = []

        def upload(data: bytes) -> None:
            blob = through.blob("raced.txt")
            try:
                blob.upload_from_string(data, if_generation_match=0)
                outcomes.append("created")
            except PreconditionFailed:
                outcomes.append("refused")

        first = threading.Thread(target=upload, args=(b"one",))
        first.start()
        # The first is held: nothing is created until the second arrives.
        first.join(timeout=1)
        assert first.is_alive() and gcs_bucket.get_blob("raced.txt") is None
        through.blob("other.txt").upload_from_string(b"not raced")  # passed straight on
        second = threading.Thread(target=upload, args=(b"two",))
        second.start()
        assert race.wait_raced(timeout=10) == "raced.txt"
        first.join(timeout=10)
        second.join(timeout=10)
    assert sorted(outcomes) == ["created", "refused"]
    assert gcs_bucket.get_blob("other.txt").download_as_bytes() == b"not raced"
