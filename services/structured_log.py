"""Logs as one JSON object per line in Cloud Logging's structured format.

Cloud Run turns each stdout line into a log entry: ``severity`` and ``message`` become the
entry's own, ``logging.googleapis.com/trace`` ties it to the request's trace, and other keys
land in jsonPayload, where they can be queried (window counts, timings).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)


def set_trace(header: str | None, project: str) -> None:
    """Takes the trace id from an ``X-Cloud-Trace-Context: TRACE/SPAN;o=1`` header."""
    trace_id = (header or "").split("/", 1)[0].strip()
    _trace.set(f"projects/{project}/traces/{trace_id}" if trace_id else None)


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "component": self._component,
            "logger": record.name,
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info:
            # Error Reporting picks up a stack trace that follows the message.
            entry["message"] += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(component: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, level: int, message: str, /, **fields: Any) -> None:
    """Logs ``message`` with queryable fields (any names: the parameters are positional-only,
    so a report's own ``level`` field is a field, not the log level)."""
    logger.log(level, message, extra={"json_fields": fields})
