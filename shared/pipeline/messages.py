"""The Pub/Sub messages between the services: versioned JSON, validated against JSON Schemas.

A message that breaks its schema can never become valid, so receivers acknowledge it and log
an error naming it instead of letting Pub/Sub redeliver it forever.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import jsonschema

from shared.pipeline.ids import batch_id, parse_window_id, window_id
from shared.pipeline.rate_share import SharedRead
from shared.pipeline.repair import Span
from shared.pipeline.schemas import PLAN_TASK, RECORD_BATCH, SCHEMAS, SPAN_CHECK, WINDOW_TASK


class MessageError(ValueError):
    """A message that can never be valid; ``message_id`` names it in logs."""

    def __init__(self, reason: str, message_id: str | None = None) -> None:
        super().__init__(f"message {message_id or '(no id)'}: {reason}")
        self.message_id = message_id
        self.reason = reason


@dataclass(frozen=True)
class WindowTask:
    source: str
    mintime: int
    maxtime: int
    # When the read starts (ms), not before: a live window of a child sharing its parent's
    # budget is read at its time of the budget's period (rate_share); None: at once.
    start_at_ms: int | None = field(default=None, compare=False)

    @property
    def window_id(self) -> str:
        return window_id(self.mintime, self.maxtime)

    def to_json(self) -> dict[str, Any]:
        body = {
            "type": WINDOW_TASK,
            "version": 1 if self.start_at_ms is None else 2,
            "source": self.source,
            "window_id": self.window_id,
            "mintime": self.mintime,
            "maxtime": self.maxtime,
        }
        if self.start_at_ms is not None:
            body["start_at_ms"] = self.start_at_ms
        return body


@dataclass(frozen=True)
class SpanCheck:
    """A span of a source's finished windows whose records are counted again by Duo, at a
    check ``level`` (0: minutes after they finished, 1: a day after): records Duo published
    late show as a difference, and the windows that differ are read again."""

    source: str
    level: int
    mintime: int
    maxtime: int

    @property
    def span(self) -> Span:
        return Span(self.level, self.mintime, self.maxtime)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": SPAN_CHECK,
            "version": 2,
            "source": self.source,
            "level": self.level,
            "mintime": self.mintime,
            "maxtime": self.maxtime,
        }


@dataclass(frozen=True)
class PlanTask:
    """Sources to plan now: a slice of those the scheduler's run found (services/planner)."""

    sources: tuple[str, ...]
    # The part of each of them sharing its MSP parent's budget, by source.
    waits: Mapping[str, SharedRead] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": PLAN_TASK,
            "version": 1,
            "sources": list(self.sources),
            "waits": {source: asdict(read) for source, read in self.waits.items()},
        }


@dataclass(frozen=True)
class RecordBatch:
    source: str
    window_id: str
    page: int
    records: list[dict[str, Any]]
    # The token the page was read from (None: the read's start) and the token after it (None:
    # the last page); its marker keeps them, so a lost neighbour is read again from them.
    # None: not known (a version 1 message).
    offsets: tuple[str | None, str | None] | None = None

    @property
    def batch_id(self) -> str:
        return batch_id(self.window_id, self.page)

    def to_json(self) -> dict[str, Any]:
        body = {
            "type": RECORD_BATCH,
            "version": 1 if self.offsets is None else 2,
            "source": self.source,
            "window_id": self.window_id,
            "page": self.page,
            "records": self.records,
        }
        if self.offsets is not None:
            body["offset"], body["next_offset"] = self.offsets
        return body


Message = WindowTask | SpanCheck | PlanTask | RecordBatch


def encode(message: Message) -> bytes:
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes, message_id: str | None = None) -> Message:
    """Parses and validates one message body; raises MessageError saying what is wrong."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise MessageError(f"body is not JSON ({error})", message_id) from None
    if not isinstance(body, dict):
        raise MessageError("body is not a JSON object", message_id)
    key = (body.get("type"), body.get("version"))
    if key not in SCHEMAS:
        raise MessageError(f"unknown message type/version {key!r}", message_id)
    error = jsonschema.exceptions.best_match(_validator(key).iter_errors(body))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise MessageError(f"{key[0]} v{key[1]} invalid at {where}: {error.message}", message_id)
    if body["type"] == WINDOW_TASK:
        task = WindowTask(body["source"], body["mintime"], body["maxtime"], body.get("start_at_ms"))
        if task.maxtime <= task.mintime or task.window_id != body["window_id"]:
            raise MessageError("window_id does not match an ordered [mintime, maxtime]", message_id)
        return task
    if body["type"] == SPAN_CHECK:
        if body["version"] == 1:
            # Sent before the checks went by span: its windows' span, which the check finds
            # its level past (the planner sends the span again from where the level is).
            mintime = parse_window_id(body["windows"][0])[0]
            maxtime = parse_window_id(body["windows"][-1])[1]
            return SpanCheck(body["source"], body["level"], mintime, maxtime)
        if body["maxtime"] <= body["mintime"]:
            raise MessageError("span-check: maxtime is not after mintime", message_id)
        return SpanCheck(body["source"], body["level"], body["mintime"], body["maxtime"])
    if body["type"] == PLAN_TASK:
        waits = {source: SharedRead(**read) for source, read in body["waits"].items()}
        return PlanTask(tuple(body["sources"]), waits)
    offsets = (body["offset"], body["next_offset"]) if body["version"] >= 2 else None
    return RecordBatch(body["source"], body["window_id"], body["page"], body["records"], offsets)


def decode_push(envelope: Any) -> tuple[str | None, Message]:
    """Unwraps a Pub/Sub push request body; returns (message id, message)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise MessageError("not a Pub/Sub push envelope (no 'message' object)")
    message = envelope["message"]
    message_id = message.get("messageId") or message.get("message_id")
    try:
        data = base64.b64decode(message.get("data", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise MessageError("data is not base64", message_id) from None
    return message_id, decode(data, message_id)


# JSON Schema counts 1.0 as an integer; a time or page number sent as a float is refused here,
# as it would fail later (in window ids and batch ids) and be redelivered forever.
_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


@cache
def _validator(key: tuple[str, int]) -> jsonschema.protocols.Validator:
    return _StrictValidator(SCHEMAS[key])
