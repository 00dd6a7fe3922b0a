"""The log lines the operator's queries and alerts read (docs/deploy.md, "6. Check"),
rendered as the services write them: each service's gunicorn entry point sets up its logging
(one Cloud Logging JSON object a line, whose keys land in ``jsonPayload``) around an app on
fakes. A renamed field or message would leave those queries silently empty."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services import structured_log
from services.fetcher import main as fetcher_main
from services.fetcher.window_fetch import WindowFetcher
from services.planner import main as planner_main
from services.settings import PlannerSettings
from services.writer import main as writer_main
from shared.clock import now_ms
from shared.duo.errors import DuoTransientError
from shared.pipeline.messages import RecordBatch, WindowTask, encode
from shared.pipeline.windows import QUARANTINED
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

# The messages the documented queries match (jsonPayload.message=~"...").
FETCHED = re.compile(r"^window .* fetched$")
PLANNED = re.compile(r"^planned source")
LANDED = re.compile(r"^batch .* landed$")

NOW_MS = now_ms(FakeClock())
HOUR = 3_600_000
TASK = WindowTask("eu-prod", NOW_MS - 2 * HOUR, NOW_MS - HOUR - 1)
TWO_PAGES = paged(
    [[telephony_item("t-1", TASK.mintime)], [telephony_item("t-2", TASK.maxtime - 1)]]
)
LEASE_SECONDS = 600

LogReader = Callable[[], list[dict[str, Any]]]
Serve = Callable[[ModuleType, Callable[[], Flask]], tuple[FlaskClient, LogReader]]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch, restored_logging: None) -> Serve:
    """``serve(main, factory)``: the service's entry point ``main.app()`` with ``factory``
    standing in for the one that builds Google clients; returns a client and a reader of the
    lines its logging renders."""

    def start(main: ModuleType, factory: Callable[[], Flask]) -> tuple[FlaskClient, LogReader]:
        monkeypatch.setattr(main, f"create_{main.__name__.split('.')[1]}_app", factory)
        app = main.app()
        [handler] = logging.getLogger().handlers
        assert isinstance(handler.formatter, structured_log.CloudLoggingFormatter)
        stream = io.StringIO()
        handler.setStream(stream)
        return app.test_client(), lambda: [json.loads(x) for x in stream.getvalue().splitlines()]

    return start


def push(client: FlaskClient, message: WindowTask | RecordBatch) -> None:
    data = base64.b64encode(encode(message)).decode()
    response = client.post("/", json={"message": {"data": data, "messageId": "1"}})
    assert response.status_code == 204


def serve_fetcher(
    serve: Serve,
    answers: dict[str | None, Any],
    store: FakeWindowStore | None = None,
    **duo_options: Any,
) -> tuple[FlaskClient, LogReader]:
    """The fetcher on fakes, with TASK planned (in ``store``, if given)."""
    clock = FakeClock()
    store = store or FakeWindowStore(clock, [])
    store.add(TASK)
    fetcher = WindowFetcher(
        store,
        FakePublisher([]),
        lambda source, live: FakeDuo(answers, [], clock, **duo_options),
        clock,
        lease_seconds=LEASE_SECONDS,
        time_budget_seconds=240,
    )
    return serve(fetcher_main, lambda: fetcher_main.fetcher_app("acme-prod", fetcher))


def test_a_fetched_window_gives_the_line_of_the_windows_fetched_query(serve):
    client, read = serve_fetcher(serve, TWO_PAGES, seconds_per_call=0.75, rate_limited_per_call=1)
    push(client, TASK)
    [line] = read()
    assert line["component"] == "fetcher"
    assert FETCHED.match(line["message"])
    assert line["severity"] == "INFO"
    assert {key: line[key] for key in ("outcome", "window_id", "pages", "records")} == {
        "outcome": "fetched",
        "window_id": TASK.window_id,
        "pages": 2,
        "records": 2,
    }
    assert (line["requests"], line["rate_limited"]) == (4, 2)  # one 429 before each answer
    assert (line["seconds"], line["error"]) == (1.5, None)


def test_a_failed_window_is_an_error_line_with_its_outcome_and_error(serve):
    client, read = serve_fetcher(serve, {None: DuoTransientError("Duo answered HTTP 503")})
    push(client, TASK)
    [line] = read()
    assert line["severity"] == "ERROR"  # counted by the severity>=ERROR metric
    assert not FETCHED.match(line["message"])
    assert (line["component"], line["outcome"], line["window_id"], line["error"]) == (
        "fetcher",
        "failed",
        TASK.window_id,
        "Duo answered HTTP 503",
    )


def test_a_window_delivered_again_says_it_was_skipped(serve):
    client, read = serve_fetcher(serve, TWO_PAGES)
    push(client, TASK)
    push(client, TASK)
    lines = read()
    assert [(line["outcome"], line["window_id"]) for line in lines] == [
        ("fetched", TASK.window_id),
        ("skipped", TASK.window_id),
    ]
    # The "windows fetched" query counts the window once.
    assert [bool(FETCHED.match(line["message"])) for line in lines] == [True, False]


def test_a_planner_run_gives_the_line_of_the_planner_runs_query(serve):
    clock = FakeClock()
    windows = FakeWindowStore(clock, [])
    settings = PlannerSettings("acme-prod", ("eu-prod",), "windows", 6 * 3600, 2, LEASE_SECONDS)
    cursors = FakeCursorStore(windows, clock)
    publisher = FakePublisher([])
    client, read = serve(
        planner_main,
        lambda: planner_main.planner_app(settings, cursors, windows, publisher, clock),
    )
    assert scheduler_call(client, publisher) == 200
    # A lease later, no fetcher has picked the windows up: the run sends them again.
    clock.advance(LEASE_SECONDS + 1)
    assert scheduler_call(client, publisher) == 200
    first, second = [line for line in read() if PLANNED.match(line["message"])]
    for line in (first, second):
        assert line["component"] == "planner"
        assert PLANNED.match(line["message"])
        assert line["source"] == "eu-prod"
    fields = ("planned", "republished", "lag_seconds", "quarantined")
    assert [tuple(line[key] for key in fields) for line in (first, second)] == [
        (2, 0, 6 * 3600.0, 0),  # a new source: nothing landed since the lookback's start
        (1, 2, 6 * 3600.0 + LEASE_SECONDS + 1, 0),
    ]


def test_a_planner_run_counts_the_quarantined_windows_of_its_source(serve):
    clock = FakeClock()
    windows = FakeWindowStore(clock, [])
    settings = PlannerSettings("acme-prod", ("eu-prod",), "windows", 6 * 3600, 2, LEASE_SECONDS)
    stopped = WindowTask("eu-prod", TASK.mintime - 2 * HOUR, TASK.mintime - HOUR)
    elsewhere = WindowTask("us-prod", TASK.mintime - 2 * HOUR, TASK.mintime - HOUR)
    for task in (TASK, stopped, elsewhere):
        windows.add(task)
    windows.doc(stopped)["state"] = windows.doc(elsewhere)["state"] = QUARANTINED
    publisher = FakePublisher([])
    client, read = serve(
        planner_main,
        lambda: planner_main.planner_app(
            settings, FakeCursorStore(windows, clock), windows, publisher, clock
        ),
    )
    assert scheduler_call(client, publisher) == 200
    [line] = [line for line in read() if PLANNED.match(line["message"])]
    assert (line["source"], line["quarantined"]) == ("eu-prod", 1)  # the alert reads this


def test_a_landed_batch_gives_the_line_of_the_batches_landed_query(serve):
    batch = RecordBatch("eu-prod", TASK.window_id, 0, [telephony_item("t-1", TASK.mintime)])
    store = FakeWindowStore(FakeClock(), [])
    client, read = serve(
        writer_main, lambda: writer_main.writer_app("acme-prod", FakeWrite([]), store)
    )
    push(client, batch)
    [line] = read()
    assert line["component"] == "writer"
    assert LANDED.match(line["message"])
    assert line["conflicting"] == 0
