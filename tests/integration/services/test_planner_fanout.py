"""The planner's fan-out on the Firestore and Pub/Sub emulators: the scheduler's call hands a
fleet's registry out in slices on the plans topic without planning any of it, and plan tasks
that overlap (two runs, or a slice delivered twice) plan each window once."""

from __future__ import annotations

import base64
import functools
import threading
from collections import Counter

import pytest

from harness.pubsub_setup import ensure_pull_subscription, ensure_topic
from services.planner.discovery import planned_sources
from services.planner.main import planner_app
from services.settings import PlannerSettings
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber
from shared.gcp.cursor_store import CursorStore
from shared.gcp.publisher import Publisher
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import PlanTask, WindowTask, decode, encode
from shared.pipeline.sources import FILE, SourceSpec
from tests.fakes import FakeClock
from tests.integration.test_pipeline import drain

pytestmark = pytest.mark.integration


def published(subscription: str) -> list:
    """What was published on the subscription's topic: every publish was waited on before
    the request answered, so all of it is there to pull."""
    return [decode(data) for data in drain(subscription)]


class Planner:
    """The planner's app on the emulators, with topics of its own and copies of what it
    publishes on each."""

    def __init__(self, local_cloud, firestore_db, names: str, settings_changes: dict) -> None:
        project = local_cloud.project
        publisher, subscriber = pubsub_publisher(), pubsub_subscriber()
        self.copies = {}
        for kind in ("windows", "plans"):
            topic = ensure_topic(publisher, project, f"{kind}-{names}")
            self.copies[kind] = ensure_pull_subscription(
                subscriber, project, f"copy-{kind}-{names}", topic
            )
        self.clock = FakeClock()
        self.settings = PlannerSettings(
            project=project,
            sources=(),
            window_topic=f"windows-{names}",
            lookback_seconds=6 * 3600,
            parallelism=2,
            plan_topic=f"plans-{names}",
            **settings_changes,
        )
        self.windows = WindowStore(firestore_db, self.clock)
        self.cursors = CursorStore(firestore_db, self.windows, self.clock)
        registry = SourceRegistry(firestore_db, self.clock)
        sources = functools.partial(
            planned_sources, self.settings, registry, self._no_parent, self.clock
        )
        self.app = planner_app(
            self.settings,
            self.cursors,
            self.windows,
            Publisher(
                pubsub_publisher(),
                project,
                self.settings.window_topic,
                plan_topic=self.settings.plan_topic,
            ),
            self.clock,
            None,
            sources,
        )

    @staticmethod
    def _no_parent(_parent):
        raise AssertionError("no MSP parent is configured")

    def plan(self, task: PlanTask) -> int:
        data = base64.b64encode(encode(task)).decode()
        envelope = {"message": {"data": data, "messageId": "1"}}
        return self.app.test_client().post("/plan", json=envelope).status_code


def test_the_schedulers_call_hands_a_thousand_registry_sources_out_in_forty_slices(
    local_cloud, firestore_db, pubsub_names
):
    fleet = [f"account-{n:04d}" for n in range(1000)]
    planner = Planner(
        local_cloud,
        firestore_db,
        pubsub_names,
        {"file_sources": tuple(SourceSpec(source, FILE) for source in fleet), "plan_slice": 25},
    )

    response = planner.app.test_client().post("/run")

    assert response.status_code == 200
    assert response.get_json() == {"sources": 1000, "slices": 40}
    plans = published(planner.copies["plans"])
    assert len(plans) == 40 and all(isinstance(plan, PlanTask) for plan in plans)
    assert max(len(plan.sources) for plan in plans) == 25
    assert sorted(source for plan in plans for source in plan.sources) == fleet
    # The call planned nothing itself: the slices are planned by /plan.
    assert published(planner.copies["windows"]) == []


def test_overlapping_plan_tasks_plan_each_window_once(local_cloud, firestore_db, pubsub_names):
    sources = tuple(f"account-{n}" for n in range(8))
    planner = Planner(local_cloud, firestore_db, pubsub_names, {})
    # Two runs' slices naming the same sources, planned at once.
    start = threading.Barrier(2)
    answers: list[int] = []

    def deliver() -> None:
        start.wait()
        answers.append(planner.plan(PlanTask(sources)))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [204, 204]
    tasks = published(planner.copies["windows"])
    assert all(isinstance(task, WindowTask) for task in tasks)
    counts = Counter((task.source, task.window_id) for task in tasks)
    assert set(counts.values()) == {1}  # no window's task published twice
    for source in sources:
        stored = {doc.id for doc in planner.windows.windows(source).list_documents()}
        assert stored == {window for (s, window) in counts if s == source}
        assert len(stored) == 2  # 6 h of lookback in 2 windows (PLAN_PARALLELISM)
