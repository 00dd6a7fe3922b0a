"""A planner run over several Duo accounts, on the Firestore and Pub/Sub emulators."""

from __future__ import annotations

import pytest

from harness.pubsub_setup import ensure_pull_subscription, ensure_topic
from services.planner.run import run_planner
from services.settings import PlannerSettings
from shared.duo.paging import DuoTotal
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber
from shared.gcp.cursor_store import CursorStore
from shared.gcp.publisher import Publisher
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import decode
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration


def published_tasks(subscription: str) -> list:
    subscriber = pubsub_subscriber()
    response = subscriber.pull(
        request={"subscription": subscription, "max_messages": 100}, timeout=10
    )
    return [decode(m.message.data) for m in response.received_messages]


def setup(local_cloud, firestore_db, pubsub_names, sources):
    project = local_cloud.project
    topic_name = f"windows-{pubsub_names}"
    topic = ensure_topic(pubsub_publisher(), project, topic_name)
    copies = ensure_pull_subscription(pubsub_subscriber(), project, f"copy-{pubsub_names}", topic)
    clock = FakeClock()
    settings = PlannerSettings(
        project=project,
        sources=sources,
        window_topic=topic_name,
        lookback_seconds=6 * 3600,
        parallelism=2,
    )
    windows = WindowStore(firestore_db, clock)
    cursors = CursorStore(firestore_db, windows, clock)
    return (
        settings,
        cursors,
        windows,
        Publisher(pubsub_publisher(), project, topic_name),
        copies,
        clock,
    )


def test_each_source_gets_its_own_windows_and_cursor(local_cloud, firestore_db, pubsub_names):
    settings, cursors, windows, publisher, copies, clock = setup(
        local_cloud, firestore_db, pubsub_names, ("emea", "amer")
    )
    results = run_planner(settings, cursors, windows, publisher, clock)
    tasks = published_tasks(copies)
    assert [r["source"] for r in results] == ["emea", "amer"]
    assert [r["planned"] for r in results] == [2, 2]
    assert sorted(t.source for t in tasks) == ["amer", "amer", "emea", "emea"]
    for source in ("emea", "amer"):
        assert cursors.status(source)["windows"]["planned"] == 2


def test_one_broken_source_does_not_stop_the_others(local_cloud, firestore_db, pubsub_names):
    settings, cursors, windows, publisher, copies, clock = setup(
        local_cloud, firestore_db, pubsub_names, ("broken", "healthy")
    )
    cursors.cursor("broken").set({"planned_until_ms": "not a number", "watermark_ms": 0})
    results = run_planner(settings, cursors, windows, publisher, clock)
    tasks = published_tasks(copies)
    assert results[0]["source"] == "broken" and "error" in results[0]
    assert results[1]["source"] == "healthy" and results[1]["planned"] == 2
    assert {t.source for t in tasks} == {"healthy"}


def test_the_run_carries_the_progress_of_the_window_being_read(
    local_cloud, firestore_db, pubsub_names
):
    settings, cursors, windows, publisher, _, clock = setup(
        local_cloud, firestore_db, pubsub_names, ("emea",)
    )
    [first] = run_planner(settings, cursors, windows, publisher, clock)
    assert "progress_records" not in first  # nothing read yet
    task = next(iter(windows.windows("emea").list_documents()))
    claim = windows.claim("emea", task.id, 60)
    windows.checkpoint(claim, "1,a", 1000, 60, read=1000, total=DuoTotal(3000, exact=False))
    clock.advance(60)

    [result] = run_planner(settings, cursors, windows, publisher, clock)

    assert (result["progress_records"], result["progress_total"]) == (1000, 3000)
    assert result["progress_total_exact"] is False
    assert result["progress_per_minute"] == 1000  # one page, a minute after the claim
