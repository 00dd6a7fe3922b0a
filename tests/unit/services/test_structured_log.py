"""Logs are one JSON object per line in Cloud Logging's structured format."""

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from services import structured_log
from shared.duo.secret import Secret

SECRET = "sKeY-Leak-Canary-7f3a9c2e1b84d"


@pytest.fixture
def lines():
    """Logs of the component ``writer``, read back as parsed lines."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    structured_log.configure("writer", stream=stream)

    def read():
        raw = stream.getvalue().splitlines()
        return [json.loads(line) for line in raw]

    yield read
    root.handlers[:], level = saved
    root.setLevel(level)
    structured_log.set_trace(None, "")


log = logging.getLogger("shared.test_structured_log")


def test_one_json_object_per_line_with_the_cloud_logging_fields(lines):
    log.info("wrote %d records", 12)
    log.warning("slow page")
    first, second = lines()
    assert first["severity"] == "INFO"
    assert first["message"] == "wrote 12 records"
    assert first["component"] == "writer"
    assert first["logger"] == "shared.test_structured_log"
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert (second["severity"], second["message"]) == ("WARNING", "slow page")


def test_time_is_the_records_own_in_utc():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
    record.created = 1_800_000_000.25
    entry = json.loads(structured_log.CloudLoggingFormatter("planner").format(record))
    assert datetime.fromisoformat(entry["time"]) == datetime(2027, 1, 15, 8, 0, 0, 250_000, UTC)
    assert entry["time"].endswith("+00:00")


def test_event_fields_land_at_the_top_level(lines):
    structured_log.event(
        log,
        logging.INFO,
        "window fetched",
        window_id="1700000000000-1700003600000",
        records=1000,
        seconds=1.5,
        pages=[1, 2],
    )
    [entry] = lines()
    assert entry["message"] == "window fetched"
    assert entry["window_id"] == "1700000000000-1700003600000"
    assert entry["records"] == 1000
    assert entry["seconds"] == 1.5
    assert entry["pages"] == [1, 2]


def test_fields_that_are_not_json_are_written_as_text(lines):
    moment = datetime(2027, 1, 15, 8, tzinfo=UTC)
    structured_log.event(log, logging.INFO, "planned", until=moment)
    [entry] = lines()
    assert entry["until"] == str(moment)


def test_the_trace_header_ties_the_logs_to_the_request(lines):
    structured_log.set_trace("abc123/456;o=1", "acme-prod")
    log.info("inside the request")
    structured_log.set_trace(None, "acme-prod")
    log.info("outside any request")
    structured_log.set_trace("", "acme-prod")
    log.info("empty header")
    inside, outside, empty = lines()
    assert inside["logging.googleapis.com/trace"] == "projects/acme-prod/traces/abc123"
    assert "logging.googleapis.com/trace" not in outside
    assert "logging.googleapis.com/trace" not in empty


def test_an_exception_puts_the_stack_trace_after_the_message_on_one_line(lines):
    try:
        raise ValueError("page token did not move")
    except ValueError:
        log.exception("window failed")
    [entry] = lines()  # the traceback's new lines are escaped inside the one JSON line
    assert entry["severity"] == "ERROR"
    message = entry["message"]
    assert message.startswith("window failed\nTraceback (most recent call last):\n")
    assert message.rstrip().endswith("ValueError: page token did not move")
    assert "test_an_exception_puts_the_stack_trace" in message


def test_a_secret_logged_by_mistake_stays_masked(lines):
    skey = Secret(SECRET)
    log.info("skey is %s", skey)
    log.info("skey repr %r", skey)
    log.info(f"skey in an f-string {skey}")
    structured_log.event(log, logging.WARNING, "config", skey=skey, nested={"skey": skey})
    entries = lines()
    assert len(entries) == 4
    for entry in entries:
        assert "Secret('********')" in json.dumps(entry)
        assert SECRET not in json.dumps(entry)
    assert entries[3]["skey"] == "Secret('********')"


def test_configure_replaces_earlier_handlers_and_sets_the_level():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        structured_log.configure("writer", stream=first)
        structured_log.configure("writer", stream=second, level=logging.WARNING)
        log.info("dropped")
        log.warning("kept")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in second.getvalue().splitlines()] == ["kept"]
