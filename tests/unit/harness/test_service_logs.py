"""The one reader of the services' log files."""

from __future__ import annotations

from pathlib import Path

from harness.service_logs import log_entries, read_log, structured_lines

OBJECT = '{"severity": "INFO", "message": "window 1-2 fetched"}\n'


def test_only_json_object_lines_are_read_each_with_its_text() -> None:
    lines = [
        "--- gunicorn ...\n",
        OBJECT,
        "Traceback (most recent call last):\n",
        '{"severity": "INFO", "message": "cut short by a SIG',
        "[1, 2]\n",  # JSON, but no log entry
        '{"message": "b"}\n',
    ]
    assert list(structured_lines(lines)) == [
        (OBJECT, {"severity": "INFO", "message": "window 1-2 fetched"}),
        ('{"message": "b"}\n', {"message": "b"}),
    ]
    assert list(log_entries(lines)) == [
        {"severity": "INFO", "message": "window 1-2 fetched"},
        {"message": "b"},
    ]


def test_a_broken_character_does_not_stop_the_reading(tmp_path: Path) -> None:
    log = tmp_path / "fetcher.log"
    log.write_bytes(b'{"message": "caf\xc3\n' + OBJECT.encode())
    assert list(log_entries(read_log(log))) == [
        {"severity": "INFO", "message": "window 1-2 fetched"}
    ]
