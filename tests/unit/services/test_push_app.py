"""The push endpoint's answers tell Pub/Sub what to do: 204 acknowledges, 500 redelivers.

A message that can never be valid is acknowledged (never retried) with one error log naming it;
a failure that may pass later (the handler raised) gets a 500 so Pub/Sub delivers it again.
"""

import base64
import io
import json
import logging

import pytest

from services import push_app, structured_log
from shared.pipeline.messages import MessageError, RecordBatch, WindowTask, encode

TASK = WindowTask("eu-prod", 1_700_000_000_000, 1_700_003_600_000)
BATCH = RecordBatch("eu-prod", TASK.window_id, 0, [{"telephony_id": "t-1", "ts": "x" * 20}])
MESSAGE_ID = "9876543210123"
SUBSCRIPTION = "projects/acme-prod/subscriptions/duo-telephony-windows-push"


class Handler:
    def __init__(self, error=None):
        self.error = error
        self.received = []

    def __call__(self, message):
        self.received.append(message)
        if self.error is not None:
            raise self.error


@pytest.fixture
def logs():
    """Captures the structured log lines; restores logging and the trace afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    structured_log.configure("fetcher", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:], level = saved
    root.setLevel(level)
    structured_log.set_trace(None, "")


@pytest.fixture
def stopping():
    yield push_app.stopping
    push_app.stopping.clear()


def client_for(handler):
    app = push_app.create_app("fetcher", "acme-prod", {"/windows": (WindowTask, handler)})
    return app.test_client()


def push(client, data, message_id=MESSAGE_ID, headers=None):
    body = {
        "message": {"data": base64.b64encode(data).decode(), "messageId": message_id},
        "subscription": SUBSCRIPTION,
    }
    return client.post("/windows", json=body, headers=headers or {})


def errors(lines):
    return [line for line in lines if line["severity"] == "ERROR"]


def test_a_valid_push_is_handled_and_acknowledged(logs):
    handler = Handler()
    response = push(client_for(handler), encode(TASK))
    assert response.status_code == 204
    assert handler.received == [TASK]
    assert errors(logs()) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"garbage", "not JSON"),
        (json.dumps({"type": "window-task", "version": 1}).encode(), "required"),
        (encode(BATCH), "expected a WindowTask, got a RecordBatch"),
    ],
)
def test_an_invalid_message_is_acknowledged_with_one_error_naming_it(logs, data, reason):
    handler = Handler()
    response = push(client_for(handler), data)
    assert response.status_code == 204
    assert handler.received == []
    [error] = errors(logs())
    assert error["message_id"] == MESSAGE_ID
    assert error["subscription"] == SUBSCRIPTION
    assert reason in error["message"]
    assert error["component"] == "fetcher"


def test_a_message_error_from_the_handler_is_acknowledged(logs):
    handler = Handler(MessageError("window is older than Duo's 180 days"))
    response = push(client_for(handler), encode(TASK))
    assert response.status_code == 204
    assert handler.received == [TASK]
    [error] = errors(logs())
    assert error["message_id"] == MESSAGE_ID
    assert "older than Duo's 180 days" in error["message"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": b"not json at all", "content_type": "application/json"},
        {"json": {"message": {"data": "%%% not base64", "messageId": MESSAGE_ID}}},
        {"json": ["not", "an", "envelope"]},
    ],
)
def test_a_request_that_is_not_a_valid_envelope_is_acknowledged(logs, request_kwargs):
    handler = Handler()
    response = client_for(handler).post("/windows", **request_kwargs)
    assert response.status_code == 204
    assert handler.received == []
    assert len(errors(logs())) == 1


def test_a_handler_failure_answers_500_so_pubsub_redelivers(logs):
    handler = Handler(RuntimeError("Firestore is unavailable"))
    response = push(client_for(handler), encode(TASK))
    assert response.status_code == 500
    [error] = errors(logs())
    assert MESSAGE_ID in error["message"]
    assert "Traceback" in error["message"]
    assert "RuntimeError: Firestore is unavailable" in error["message"]


def test_logs_of_a_push_carry_its_trace(logs):
    handler = Handler()
    push(
        client_for(handler),
        b"garbage",
        headers={"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/1;o=1"},
    )
    [error] = errors(logs())
    assert error["logging.googleapis.com/trace"] == (
        "projects/acme-prod/traces/0af7651916cd43dd8448eb211c80319c"
    )


def test_healthz_is_ok_until_the_instance_is_stopping(stopping):
    client = client_for(Handler())
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")
    stopping.set()
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (503, "stopping")


def test_each_route_takes_its_own_message_type(logs):
    windows, batches = Handler(), Handler()
    app = push_app.create_app(
        "fetcher",
        "acme-prod",
        {"/windows": (WindowTask, windows), "/batches": (RecordBatch, batches)},
    )
    client = app.test_client()
    body = {"message": {"data": base64.b64encode(encode(BATCH)).decode(), "messageId": "1"}}
    assert client.post("/batches", json=body).status_code == 204
    assert (windows.received, batches.received) == ([], [BATCH])
    assert client.get("/batches").status_code == 405
