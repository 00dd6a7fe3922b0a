"""Messages between the services: what one sends the other decodes unchanged, and a message that
can never be valid is refused with a MessageError naming the problem and the message."""

import base64
import json

import pytest

from shared.pipeline.ids import window_id
from shared.pipeline.messages import (
    MessageError,
    PlanTask,
    RecordBatch,
    WindowTask,
    decode,
    decode_push,
    encode,
)
from shared.pipeline.rate_share import SharedRead
from shared.pipeline.schemas import MAX_PLAN_SLICE

MINTIME = 1_700_000_000_000
MAXTIME = 1_700_003_600_000
WINDOW_ID = "1700000000000-1700003600000"
MESSAGE_ID = "17042394781234"


def record(number):
    return {
        "telephony_id": f"5bf1a860-fe39-49e3-be29-{number:012d}",
        "ts": "2023-11-14T22:13:20.000000+00:00",
        "type": "sms",
        "context": "authentication",
        "phone": "+3312345678",
        "credits": 1,
    }


def window_body(**changes):
    body = {
        "type": "window-task",
        "version": 1,
        "source": "eu-prod",
        "window_id": WINDOW_ID,
        "mintime": MINTIME,
        "maxtime": MAXTIME,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def batch_body(**changes):
    body = {
        "type": "record-batch",
        "version": 1,
        "source": "eu-prod",
        "window_id": WINDOW_ID,
        "page": 3,
        "records": [record(1), record(2)],
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def refused(data, message_id=MESSAGE_ID):
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    with pytest.raises(MessageError) as caught:
        decode(data, message_id)
    assert caught.value.message_id == message_id
    assert str(message_id) in str(caught.value)
    return caught.value.reason


# --- round trips and ids ----------------------------------------------------------------------


def test_window_task_round_trip():
    task = WindowTask("eu-prod", MINTIME, MAXTIME)
    data = encode(task)
    assert json.loads(data) == window_body()
    assert decode(data, MESSAGE_ID) == task


def test_record_batch_round_trip_keeps_every_record_field():
    records = [record(1), {**record(2), "phone": "+81 3-1234-5678", "note": "Zoë 東京"}]
    batch = RecordBatch("eu-prod", WINDOW_ID, 3, records)
    decoded = decode(encode(batch), MESSAGE_ID)
    assert decoded == batch
    assert decoded.records == records
    assert decoded.batch_id == f"{WINDOW_ID}-p00003"


def test_an_empty_batch_is_valid():
    batch = RecordBatch("eu-prod", WINDOW_ID, 0, [])
    assert decode(encode(batch)) == batch


def test_window_id_is_deterministic_and_sorts_by_time():
    assert window_id(MINTIME, MAXTIME) == WINDOW_ID
    assert WindowTask("eu-prod", MINTIME, MAXTIME).window_id == WINDOW_ID
    assert WindowTask("us-prod", MINTIME, MAXTIME).window_id == WINDOW_ID
    assert window_id(MINTIME, MAXTIME + 1) != WINDOW_ID
    # Zero-padded, so ids sort as their times do.
    early = window_id(999_999_999_999, 1_000_000_000_000)
    assert early == "0999999999999-1000000000000"
    assert early < WINDOW_ID


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not json", b"{'type': 'window-task'}", b"\xff\xfe{}"])
def test_a_body_that_is_not_json_is_refused(data):
    assert "not JSON" in refused(data)


@pytest.mark.parametrize("body", [[window_body()], "window-task", 42, None])
def test_a_body_that_is_not_an_object_is_refused(body):
    assert "not a JSON object" in refused(body)


@pytest.mark.parametrize(
    "body",
    [
        window_body(version=3),
        window_body(version="1"),
        window_body(version=...),
        window_body(type="window"),
        window_body(type=...),
        batch_body(version=0),
    ],
)
def test_an_unknown_type_or_version_is_refused(body):
    assert "unknown message type/version" in refused(body)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (window_body(source=...), "source"),
        (window_body(window_id=...), "window_id"),
        (window_body(maxtime=...), "maxtime"),
        (batch_body(page=...), "page"),
        (batch_body(records=...), "records"),
    ],
)
def test_a_missing_field_is_named(body, named):
    reason = refused(body)
    assert named in reason
    assert "required" in reason


@pytest.mark.parametrize(
    "body", [window_body(priority="high"), batch_body(next_offset="1700000000000,abc")]
)
def test_an_extra_field_is_named(body):
    reason = refused(body)
    assert ("priority" in reason) or ("next_offset" in reason)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (window_body(mintime=str(MINTIME)), "mintime"),
        (window_body(mintime=None), "mintime"),
        (window_body(maxtime=float(MAXTIME)), "maxtime"),
        (window_body(mintime=float(MINTIME)), "mintime"),
        (window_body(source="EU_Prod"), "source"),
        (window_body(source=7), "source"),
        (window_body(window_id="w-1"), "window_id"),
        (batch_body(page="3"), "page"),
        (batch_body(page=3.0), "page"),
        (batch_body(page=-1), "page"),
        (batch_body(records={"telephony_id": "x"}), "records"),
        (batch_body(records=["x"]), "records/0"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(body, named):
    assert named in refused(body)


def test_mintime_in_seconds_instead_of_milliseconds_is_refused():
    seconds = (1_700_000_000, 1_700_003_600)
    body = window_body(mintime=seconds[0], maxtime=seconds[1], window_id=window_id(*seconds))
    assert "mintime" in refused(body)


@pytest.mark.parametrize(("mintime", "maxtime"), [(MAXTIME, MINTIME), (MINTIME, MINTIME)])
def test_an_inverted_or_empty_window_is_refused(mintime, maxtime):
    body = window_body(mintime=mintime, maxtime=maxtime, window_id=window_id(mintime, maxtime))
    assert "ordered" in refused(body)


def test_a_window_id_that_does_not_match_the_bounds_is_refused():
    body = window_body(window_id=window_id(MINTIME, MAXTIME + 1000))
    assert "window_id does not match" in refused(body)


def test_a_batch_of_more_than_a_thousand_records_is_refused():
    full = batch_body(records=[record(n) for n in range(1000)])
    assert decode(json.dumps(full).encode()).records == full["records"]
    reason = refused(batch_body(records=[record(n) for n in range(1001)]))
    assert "records" in reason


WITHOUT_ID = {key: value for key, value in record(3).items() if key != "telephony_id"}


@pytest.mark.parametrize("bad", [WITHOUT_ID, {**record(3), "telephony_id": ""}])
def test_a_record_without_a_telephony_id_is_refused_with_its_position(bad):
    reason = refused(batch_body(records=[record(1), record(2), bad]))
    assert "records/2" in reason


def test_a_refusal_without_an_id_says_so():
    with pytest.raises(MessageError) as caught:
        decode(b"not json")
    assert caught.value.message_id is None
    assert "(no id)" in str(caught.value)


# --- push envelopes ---------------------------------------------------------------------------


def envelope(data, **message):
    return {
        "message": {"data": data, "publishTime": "2023-11-14T22:13:20.123Z", **message},
        "subscription": "projects/acme-prod/subscriptions/duo-telephony-windows-push",
    }


def b64(data):
    return base64.b64encode(data).decode()


def test_a_push_envelope_is_unwrapped():
    task = WindowTask("eu-prod", MINTIME, MAXTIME)
    assert decode_push(envelope(b64(encode(task)), messageId=MESSAGE_ID)) == (MESSAGE_ID, task)
    # Pub/Sub sends the id under both spellings; either is enough.
    assert decode_push(envelope(b64(encode(task)), message_id="9")) == ("9", task)


@pytest.mark.parametrize(
    "body", [None, [], "message", {}, {"msg": {}}, {"message": "data"}, {"message": None}]
)
def test_something_that_is_not_an_envelope_is_refused(body):
    with pytest.raises(MessageError, match="not a Pub/Sub push envelope") as caught:
        decode_push(body)
    assert caught.value.message_id is None


@pytest.mark.parametrize("data", ["%%% not base64 %%%", "eyJ0eXBlIj", 12345, None])
def test_data_that_is_not_base64_is_refused_with_the_message_id(data):
    with pytest.raises(MessageError) as caught:
        decode_push(envelope(data, messageId=MESSAGE_ID))
    assert caught.value.message_id == MESSAGE_ID
    assert "base64" in caught.value.reason
    assert MESSAGE_ID in str(caught.value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b64(b"garbage"), "not JSON"), (b64(json.dumps(window_body(page=1)).encode()), "page")],
)
def test_a_bad_body_inside_a_good_envelope_carries_the_message_id(data, problem):
    with pytest.raises(MessageError) as caught:
        decode_push(envelope(data, messageId=MESSAGE_ID))
    assert caught.value.message_id == MESSAGE_ID
    assert problem in caught.value.reason


# --- plan tasks -------------------------------------------------------------------------------


def plan_body(sources, waits=None):
    return {"type": "plan-task", "version": 1, "sources": sources, "waits": waits or {}}


def read(wait_ms=0, start_at_ms=1_800_000_020_000, next_run_ms=1_800_000_180_000):
    return {"wait_ms": wait_ms, "start_at_ms": start_at_ms, "next_run_ms": next_run_ms}


def test_plan_task_round_trip():
    waits = {
        "di1234567890": SharedRead(0, 1_800_000_020_000, 1_800_000_180_000),
        "di2": SharedRead(240_000, None, 1_800_000_060_000, checks=0),
    }
    plan = PlanTask(("eu-prod", "di1234567890", "di2"), waits)
    assert decode(encode(plan)) == plan


def test_a_plan_task_from_before_the_checks_turns_lets_each_child_send_a_check():
    plan = decode(json.dumps(plan_body(["eu-prod"], {"eu-prod": read()})).encode())
    assert plan.waits["eu-prod"].checks == 1


def test_a_window_task_with_its_start_round_trips_as_version_2_and_one_without_as_1():
    timed = WindowTask("eu-prod", 1_800_000_000_000, 1_800_000_240_000, 1_800_000_500_000)
    assert timed.to_json()["version"] == 2
    assert decode(encode(timed)).start_at_ms == 1_800_000_500_000
    untimed = WindowTask("eu-prod", 1_800_000_000_000, 1_800_000_240_000)
    assert untimed.to_json()["version"] == 1 and "start_at_ms" not in untimed.to_json()
    assert decode(encode(untimed)).start_at_ms is None


@pytest.mark.parametrize(
    ("waits", "named"),
    [
        ({"eu-prod": read(wait_ms=-1)}, "waits/eu-prod/wait_ms"),
        ({"eu-prod": read(wait_ms=1.5)}, "waits/eu-prod/wait_ms"),
        ({"eu-prod": read(start_at_ms=5)}, "waits/eu-prod/start_at_ms"),
        ({"eu-prod": read() | {"checks": -1}}, "waits/eu-prod/checks"),
        ({"eu-prod": 240_000}, "waits/eu-prod"),
        ({"no t": read()}, "waits"),
    ],
)
def test_a_plan_task_with_a_wait_that_is_not_a_span_is_refused_naming_it(waits, named):
    reason = refused(plan_body(["eu-prod"], waits))
    assert f"plan-task v1 invalid at {named}" in reason


@pytest.mark.parametrize(
    ("sources", "named"),
    [
        ([], "sources"),
        (["eu-prod", "eu-prod"], "sources"),
        (["eu-prod", "not a source id"], "sources/1"),
        (["eu-prod", 7], "sources/1"),
        ([f"account-{n}" for n in range(MAX_PLAN_SLICE + 1)], "sources"),
    ],
)
def test_a_plan_task_that_can_never_be_planned_is_refused_naming_the_field(sources, named):
    reason = refused(plan_body(sources))
    assert f"plan-task v1 invalid at {named}:" in reason
