"""The whole pipeline as it runs in production: three services as separate processes, wired
by push subscriptions on the Pub/Sub emulator, Firestore and Storage emulators, and the Duo
simulator. Every test ends by comparing the bucket with the simulator's ground truth."""

from __future__ import annotations

import gzip
import json
import random
import time
import uuid
from pathlib import Path

import pytest
from google.cloud import firestore

from harness.catchup import LocalStack, RunOptions, catch_up, local_stack
from harness.pubsub_setup import ensure_pull_subscription
from shared.clock import SystemClock
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber, storage_client
from shared.gcp.window_store import WindowStore
from shared.secops.udm_mapping import to_udm

pytestmark = pytest.mark.integration


def options(**overrides) -> RunOptions:
    settings = {
        "records": 6000,
        "days": 1.0,
        "rate_limit": 600,
        "bucket": f"pipeline-{uuid.uuid4().hex[:10]}",
        "plan_every": 2.0,
        "timeout": 300.0,
    }
    return RunOptions(**(settings | overrides))


def quiet(_line: str) -> None:
    pass


def windows(stack: LocalStack) -> list[dict]:
    db = firestore.Client(project=stack.pipeline.config.project)
    store = WindowStore(db, SystemClock())
    return [
        doc.to_dict() | {"id": doc.id}
        for doc in store.windows(stack.pipeline.config.source).stream()
    ]


def blobs(stack: LocalStack) -> dict[str, int]:
    """Object name -> generation, for this run's source."""
    client = storage_client(stack.pipeline.config.project)
    return {
        blob.name: blob.generation
        for blob in client.list_blobs(stack.options.bucket, prefix=f"{stack.options.prefix}/")
        if f"_{stack.pipeline.config.source}_" in blob.name
    }


def copy_subscription(stack: LocalStack, topic: str) -> str:
    """A pull subscription that keeps a copy of every message published to ``topic``."""
    project = stack.pipeline.config.project
    publisher = pubsub_publisher()
    return ensure_pull_subscription(
        pubsub_subscriber(), project, f"{topic}-copy", publisher.topic_path(project, topic)
    )


def drain(subscription: str) -> list[bytes]:
    subscriber = pubsub_subscriber()
    messages = []
    while True:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 1000}, timeout=10
        )
        if not response.received_messages:
            return messages
        messages += [m.message.data for m in response.received_messages]
        subscriber.acknowledge(
            request={
                "subscription": subscription,
                "ack_ids": [m.ack_id for m in response.received_messages],
            }
        )


def test_a_catch_up_lands_every_record_exactly_once_at_close_to_minimum_cost(
    local_cloud, tmp_path: Path
):
    with local_stack(options(records=8000, days=2), tmp_path, quiet) as stack:
        summary = catch_up(stack, quiet)
        objects = blobs(stack)
        empty_windows = len([w for w in windows(stack) if w["records"] == 0])
    assert summary.expected == 8000
    assert summary.records == 8000
    assert summary.missing == 0 and summary.duplicated == 0
    # 8 full pages, at most one partial page per parallel window, and the steady-state windows
    # planned while the catch-up ran.
    assert summary.duo_requests <= 8 + 4 + empty_windows
    assert summary.rate_limited == 0
    assert all(name.endswith(".ndjson") for name in objects)
    assert sorted(objects) == sorted(objects, key=lambda name: name.rsplit("/", 1)[1][:22])


def test_429_storms_and_5xx_bursts_delay_but_lose_nothing(local_cloud, tmp_path: Path):
    # One window of four pages against a budget of three requests a minute: the fourth page
    # meets a 429 for sure. The planner runs once a minute, as Cloud Scheduler does; planning
    # faster would spend the tiny budget on new windows and starve the catch-up.
    run = options(
        records=4000,
        parallelism=1,
        rate_limit=3,
        fail_rate=0.2,
        malformed_rate=0.1,
        plan_every=60.0,
        timeout=600.0,
    )
    # The pipeline is told the account allows far more than the simulator does: a 429 storm.
    with local_stack(run, tmp_path, quiet, {"DUO_RATE_LIMIT_PER_MINUTE": "600"}) as stack:
        summary = catch_up(stack, quiet)
    assert summary.rate_limited > 0
    assert summary.records == summary.expected == 4000
    assert summary.missing == 0 and summary.duplicated == 0


def test_gzip_objects_of_enriched_records(local_cloud, tmp_path: Path):
    with local_stack(options(records=2500, gzip=True, enrich=True), tmp_path, quiet) as stack:
        summary = catch_up(stack, quiet)
        client = storage_client(stack.pipeline.config.project)
        names = sorted(blobs(stack))
        first = (
            client.bucket(stack.options.bucket).blob(names[0]).download_as_bytes(raw_download=True)
        )
        host = stack.duo.api_host.split("//")[1].split(":")[0]
    assert summary.missing == 0 and summary.duplicated == 0 and summary.records == 2500
    assert all(name.endswith(".ndjson.gz") for name in names)
    record = json.loads(gzip.decompress(first).splitlines()[0])
    assert list(record)[-2:] == ["eventtype", "host"]
    assert record["eventtype"] == "telephony" and record["host"] == host
    assert to_udm(record)["metadata"]["eventType"] == "USER_UNCATEGORIZED"


def test_redelivered_and_reordered_messages_change_nothing(local_cloud, tmp_path: Path):
    with local_stack(options(records=4000), tmp_path, quiet) as stack:
        topics = stack.pipeline.config.topics
        batch_copies = copy_subscription(stack, topics.batches)
        task_copies = copy_subscription(stack, topics.windows)
        summary = catch_up(stack, quiet)
        before = blobs(stack)
        requests_before = stack.duo.simulator.api.stats()["requests"]
        batches, tasks = drain(batch_copies), drain(task_copies)
        assert len(batches) >= 4 and len(tasks) >= 4
        # Every batch and task twice, in a random order: what at-least-once delivery may do.
        replay = [(topics.batches, b) for b in batches] * 2 + [
            (topics.windows, t) for t in tasks
        ] * 2
        random.Random(3).shuffle(replay)
        publisher = pubsub_publisher()
        project = stack.pipeline.config.project
        futures = [publisher.publish(publisher.topic_path(project, t), d) for t, d in replay]
        for future in futures:
            future.result(timeout=30)
        handled = _wait_for_log_lines(
            stack, "writer", "already landed", len(batches) * 2, timeout=120
        )
        after = blobs(stack)
        requests_after = stack.duo.simulator.api.stats()["requests"]
    assert summary.missing == 0 and summary.duplicated == 0
    assert handled >= len(batches) * 2
    assert after == before  # same objects, same generations: nothing rewritten
    # Finished windows are not fetched again (only newly planned ones may cost requests).
    assert requests_after - requests_before <= 2


def test_a_fetcher_killed_mid_window_resumes_from_its_checkpoint(local_cloud, tmp_path: Path):
    run = options(records=9000, parallelism=1, slow=0.7)
    short_lease = {"FETCH_TIME_BUDGET": "3s", "WINDOW_LEASE": "15s"}
    with local_stack(run, tmp_path, quiet, short_lease) as stack:
        stack.pipeline.trigger_planner()
        first = _wait_for_window(stack, lambda w: w["pages"] >= 2, timeout=60)
        stack.pipeline.kill_service("fetcher")
        killed_at = _window(stack, first["id"])
        stack.pipeline.start_service("fetcher")
        summary = catch_up(stack, quiet)
        finished = _window(stack, first["id"])
        all_windows = windows(stack)
        requests = stack.duo.simulator.api.stats()["requests"]
        log = (tmp_path / "fetcher.log").read_text()
    assert summary.records == summary.expected == 9000
    assert summary.missing == 0 and summary.duplicated == 0
    assert killed_at["pages"] >= 2 and finished["pages"] == 9
    assert finished["attempts"] >= 2
    # Nine pages for the big window, one per other window, and at most one page re-fetched.
    assert requests <= 9 + (len(all_windows) - 1) + 1
    assert "handed_on" in log


def test_a_fetcher_stopped_with_sigterm_hands_its_window_on(local_cloud, tmp_path: Path):
    run = options(records=9000, parallelism=1, slow=0.7)
    short_lease = {"FETCH_TIME_BUDGET": "4s", "WINDOW_LEASE": "15s"}
    with local_stack(run, tmp_path, quiet, short_lease) as stack:
        stack.pipeline.trigger_planner()
        first = _wait_for_window(stack, lambda w: w["pages"] >= 2, timeout=60)
        stack.pipeline.services["fetcher"].stop()  # SIGTERM, as Cloud Run scales in
        stopped = _window(stack, first["id"])
        log_at_stop = (tmp_path / "fetcher.log").read_text()
        stack.pipeline.start_service("fetcher")
        summary = catch_up(stack, quiet)
        all_windows = windows(stack)
        requests = stack.duo.simulator.api.stats()["requests"]
    assert f"window {first['id']} handed_on" in log_at_stop
    assert stopped["state"] == "planned" and stopped["next_offset"] is not None
    assert summary.records == summary.expected == 9000
    assert summary.missing == 0 and summary.duplicated == 0
    # A clean hand-over re-fetches nothing.
    assert requests <= 9 + (len(all_windows) - 1)


def test_a_writer_that_keeps_failing_loses_nothing_once_fixed(local_cloud, tmp_path: Path):
    run = options(records=3000)
    broken = {
        "GCS_BUCKET": f"missing-{uuid.uuid4().hex[:10]}",
        "FETCH_TIME_BUDGET": "3s",
        "WINDOW_LEASE": "15s",
    }
    with local_stack(run, tmp_path, quiet, broken) as stack:
        stack.pipeline.trigger_planner()
        failures = _wait_for_log_lines(stack, "writer", "Pub/Sub will redeliver", 8, timeout=120)
        before_fix = blobs(stack)
        # Redelivered, dead-lettered or fetched again once the lease is over: either way the
        # fixed writer lands every batch, once.
        stack.pipeline.start_service("writer", {"GCS_BUCKET": stack.options.bucket})
        summary = catch_up(stack, quiet)
    assert failures >= 8 and before_fix == {}
    assert summary.records == summary.expected == 3000
    assert summary.missing == 0 and summary.duplicated == 0


def test_a_message_that_can_never_be_valid_is_dropped_with_its_id(local_cloud, tmp_path: Path):
    with local_stack(options(records=100), tmp_path, quiet) as stack:
        project = stack.pipeline.config.project
        topics = stack.pipeline.config.topics
        dead = copy_subscription(stack, topics.dead_letters)
        publisher = pubsub_publisher()
        message_id = publisher.publish(
            publisher.topic_path(project, topics.windows), b'{"type": "window-task"}'
        ).result(timeout=30)
        _wait_for_log_lines(stack, "fetcher", message_id, 1, timeout=60)
        time.sleep(3)
        dead_letters = drain(dead)
        summary = catch_up(stack, quiet)
    entry = next(
        json.loads(line)
        for line in (tmp_path / "fetcher.log").read_text().splitlines()
        if message_id in line
    )
    assert entry["severity"] == "ERROR" and entry["message_id"] == message_id
    assert "invalid" in entry["message"]
    assert dead_letters == []
    assert summary.missing == 0 and summary.records == 100


def _window(stack: LocalStack, window_id: str) -> dict:
    return next(w for w in windows(stack) if w["id"] == window_id)


def _wait_for_window(stack: LocalStack, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [w for w in windows(stack) if predicate(w)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("no window reached the expected state")


def _wait_for_log_lines(
    stack: LocalStack, service: str, needle: str, count: int, timeout: float
) -> int:
    path = stack.pipeline.log_dir / f"{service}.log"
    deadline = time.monotonic() + timeout
    while True:
        seen = path.read_text().count(needle)
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)
