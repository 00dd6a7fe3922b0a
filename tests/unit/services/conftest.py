"""Fixtures for the services' unit tests."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services import structured_log

LogReader = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """For a test that sets logging up as a service does: logging and the trace are restored
    afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    structured_log.set_trace(None, "")


@pytest.fixture
def logs_of(restored_logging: None) -> Callable[[str], LogReader]:
    """``logs_of(component)`` sends the logs, as a service writes them (one Cloud Logging JSON
    object a line), to a buffer and returns a reader of the parsed lines."""

    def capture(component: str) -> LogReader:
        stream = io.StringIO()
        structured_log.configure(component, stream=stream)
        return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]

    return capture
