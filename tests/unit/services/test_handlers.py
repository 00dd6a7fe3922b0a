"""The three services' endpoints, through Flask's test client, around their real work on fakes.

What Pub/Sub and Cloud Scheduler read from the answer: 204 acknowledges a message, 500 makes
Pub/Sub deliver it again and Cloud Scheduler show the run as failed.
"""

from __future__ import annotations

import base64
from typing import Any

from flask.testing import FlaskClient

from services.fetcher.duo_clients import DuoClients
from services.fetcher.main import fetcher_app
from services.fetcher.window_fetch import CHECK_EVENT, WindowFetcher
from services.planner.main import planner_app
from services.settings import FetcherSettings, PlannerSettings
from services.writer.main import writer_app
from shared.clock import now_ms
from shared.duo.errors import DuoTransientError
from shared.gcp.cursor_store import new_cursor
from shared.pipeline.messages import PlanTask, RecordBatch, SpanCheck, WindowTask, encode
from tests.fakes import FakeClock
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakeDuo,
    FakePublisher,
    FakeWindowStore,
    FakeWrite,
    paged,
    scheduler_call,
    telephony_item,
)

PROJECT = "acme-prod"
NOW_MS = now_ms(FakeClock())
HOUR = 3_600_000
TASK = WindowTask("eu-prod", NOW_MS - 2 * HOUR, NOW_MS - HOUR - 1)
BATCH = RecordBatch("eu-prod", TASK.window_id, 0, [telephony_item("t-1", TASK.mintime)])
MESSAGE_ID = "4815162342"
ANSWERS = paged([[telephony_item("t-1", TASK.mintime)], [telephony_item("t-2", TASK.maxtime)]])


def push(client: FlaskClient, message: WindowTask | SpanCheck | RecordBatch | bytes) -> int:
    data = message if isinstance(message, bytes) else encode(message)
    envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": MESSAGE_ID}}
    return client.post("/", json=envelope).status_code


def errors(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["severity"] == "ERROR"]


class Fetcher:
    """The fetcher's app on fakes, with one planned window."""

    def __init__(self, answers: dict[str | None, Any] = ANSWERS, duo_for: Any = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.clock = FakeClock()
        self.store = FakeWindowStore(self.clock, self.events)
        self.store.add(TASK)
        self.publisher = FakePublisher(self.events)
        fetcher = WindowFetcher(
            self.store,
            self.publisher,
            duo_for or (lambda source, live: FakeDuo(answers, self.events, self.clock)),
            self.clock,
            lease_seconds=600,
            time_budget_seconds=240,
        )
        self.client = fetcher_app(PROJECT, fetcher).test_client()


def test_the_fetcher_acknowledges_a_window_it_fetched(logs_of):
    read = logs_of("fetcher")
    fetcher = Fetcher()
    assert push(fetcher.client, TASK) == 204
    assert fetcher.store.doc(TASK)["state"] == "fetched"
    assert [batch.page for batch in fetcher.publisher.batches] == [0, 1]
    assert errors(read()) == []


def test_the_fetcher_drops_a_message_that_is_not_a_window_task_and_names_it(logs_of):
    read = logs_of("fetcher")
    fetcher = Fetcher()
    assert push(fetcher.client, BATCH) == 204
    assert push(fetcher.client, b"{not json") == 204
    assert [line["message_id"] for line in errors(read())] == [MESSAGE_ID, MESSAGE_ID]
    assert fetcher.events == []


def test_a_window_of_a_source_not_configured_is_dropped_and_named(logs_of):
    read = logs_of("fetcher")
    # The real lookup: a deployment without the task's Duo account (it touches no database).
    settings = FetcherSettings(PROJECT, {}, "windows", "batches", 30, 1, 240, 600, False)
    fetcher = Fetcher(duo_for=DuoClients(settings, None, FakeClock()).api)
    assert push(fetcher.client, TASK) == 204
    [error] = errors(read())
    assert error["message_id"] == MESSAGE_ID
    assert "source 'eu-prod' is not configured" in error["message"]
    assert fetcher.store.doc(TASK)["attempts"] == 0


def test_a_fetcher_failure_answers_500_so_pubsub_delivers_the_task_again(logs_of):
    read = logs_of("fetcher")
    fetcher = Fetcher()
    fetcher.publisher.failing_pages = {0}
    assert push(fetcher.client, TASK) == 500
    assert MESSAGE_ID in errors(read())[0]["message"]


def test_a_window_duo_failed_is_acknowledged_the_planner_sends_it_again_when_due(logs_of):
    read = logs_of("fetcher")
    fetcher = Fetcher({None: DuoTransientError("Duo answered HTTP 503")})
    assert push(fetcher.client, TASK) == 204
    [error] = errors(read())
    assert (error["outcome"], error["error"]) == ("failed", "Duo answered HTTP 503")
    assert fetcher.store.doc(TASK)["state"] == "failed"


def test_the_fetcher_acknowledges_a_late_record_check_and_logs_what_it_found(logs_of):
    read = logs_of("fetcher")
    fetcher = Fetcher({None: {"items": [], "metadata": {"total_objects": 0}}})
    fetcher.store.docs[TASK.source, TASK.window_id]["state"] = "done"
    fetcher.store.cursors[TASK.source] = new_cursor(TASK.mintime, TASK.maxtime, (15 * 60_000,))
    assert push(fetcher.client, SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime)) == 204
    assert errors(read()) == []
    [line] = [line for line in read() if line["message"].startswith(CHECK_EVENT)]
    # Nothing landed and Duo counts nothing from the span's start past its end: one count.
    assert (line["outcome"], line["level"], line["requests"], line["bisected"]) == (
        "matched",
        0,
        1,
        0,
    )


class Writer:
    def __init__(self, write_error: Exception | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.store = FakeWindowStore(FakeClock(), self.events)
        self.client = writer_app(
            PROJECT, FakeWrite(self.events, error=write_error), self.store
        ).test_client()


def test_the_writer_acknowledges_a_batch_it_landed():
    writer = Writer()
    assert push(writer.client, BATCH) == 204
    assert writer.events == [("write", 0), ("marker", 0)]


def test_a_write_failure_answers_500_and_leaves_no_marker(logs_of):
    read = logs_of("writer")
    writer = Writer(ConnectionError("Storage timed out"))
    assert push(writer.client, BATCH) == 500
    assert writer.store.markers == {}
    assert "ConnectionError: Storage timed out" in errors(read())[0]["message"]


def test_the_writer_drops_a_message_that_is_not_a_batch_and_names_it(logs_of):
    read = logs_of("writer")
    writer = Writer()
    assert push(writer.client, TASK) == 204
    [error] = errors(read())
    assert error["message_id"] == MESSAGE_ID
    assert writer.events == []


class Planner:
    def __init__(self, sources: tuple[str, ...], plan_slice: int = 25) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.clock = FakeClock()
        windows = FakeWindowStore(self.clock, self.events)
        self.publisher = FakePublisher(self.events)
        settings = PlannerSettings(
            PROJECT, sources, "windows", 6 * 3600, 2, 600, plan_slice=plan_slice
        )
        cursors = FakeCursorStore(windows, self.clock)
        app = planner_app(settings, cursors, windows, self.publisher, self.clock)
        self.client = app.test_client()

    def run(self) -> int:
        return scheduler_call(self.client, self.publisher)

    def plan(self, message: PlanTask | bytes) -> int:
        data = message if isinstance(message, bytes) else encode(message)
        envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": MESSAGE_ID}}
        return self.client.post("/plan", json=envelope).status_code


def test_the_schedulers_call_hands_the_sources_out_in_slices_and_plans_none_itself():
    sources = tuple(f"account-{n}" for n in range(7))
    planner = Planner(sources, plan_slice=3)
    response = planner.client.post("/run")
    assert response.status_code == 200
    assert response.get_json() == {"sources": 7, "slices": 3}
    assert [plan.sources for plan in planner.publisher.plans] == [
        sources[0:3],
        sources[3:6],
        sources[6:],
    ]
    assert planner.publisher.tasks == []  # the slices are planned by /plan, not in the call


def test_a_plan_task_plans_each_of_its_sources():
    planner = Planner(("emea", "amer"))
    assert planner.run() == 200
    assert sorted(task.source for task in planner.publisher.tasks) == [
        "amer",
        "amer",
        "emea",
        "emea",
    ]


def test_a_source_that_fails_does_not_stop_the_others_of_its_slice_nor_redeliver_it(logs_of):
    read = logs_of("planner")
    planner = Planner(("broken", "healthy"))
    planner.publisher.failing_sources = {"broken"}
    assert planner.run() == 200  # scheduler_call asserts each plan task was acknowledged
    assert {task.source for task in planner.publisher.tasks} == {"healthy"}
    [error] = errors(read())
    assert "planning source broken failed" in error["message"]


def test_an_invalid_plan_task_is_dropped_and_named(logs_of):
    read = logs_of("planner")
    planner = Planner(("emea",))
    body = b'{"type":"plan-task","version":1,"sources":[],"waits":{}}'
    assert planner.plan(body) == 204
    [error] = errors(read())
    assert error["message_id"] == MESSAGE_ID
    assert "plan-task v1 invalid at sources" in error["message"]
    assert planner.publisher.tasks == []


def test_a_planner_run_sends_again_the_windows_no_fetcher_took_within_the_lease():
    planner = Planner(("emea",))
    planner.run()
    first = list(planner.publisher.tasks)
    planner.clock.advance(600 + 1)
    assert planner.run() == 200
    again = planner.publisher.tasks[len(first) :]
    assert len(first) == 2
    assert again[:-1] == first
    assert again[-1].mintime == first[-1].maxtime  # planned on from where the last run ended
