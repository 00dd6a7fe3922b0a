"""JSON Schemas of the messages between the services, built from the pipeline's own constants
so a pattern or a limit is never written twice."""

from __future__ import annotations

from typing import Any

from shared.duo.paging import MAX_TOKEN_LENGTH
from shared.duo.telephony import PAGE_LIMIT
from shared.pipeline.ids import MAX_PAGE, MIN_EPOCH_MS, SOURCE_ID_PATTERN, WINDOW_ID_PATTERN

WINDOW_TASK = "window-task"
RECORD_BATCH = "record-batch"
SPAN_CHECK = "span-check"
PLAN_TASK = "plan-task"
# Finished windows checked together against Duo's count, at most (a longer span's check goes on
# from there with the next).
MAX_CHECK_WINDOWS = 500
# Sources planned by one plan task, at most (PLAN_SLICE's bound).
MAX_PLAN_SLICE = 100

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SOURCE = {"type": "string", "pattern": f"^{SOURCE_ID_PATTERN}$"}
_WINDOW_ID = {"type": "string", "pattern": f"^{WINDOW_ID_PATTERN}$"}
_EPOCH_MS = {"type": "integer", "minimum": MIN_EPOCH_MS}
# A late-record check's place in REPAIR_CHECKS (at most 9 ages).
_CHECK_LEVEL = {"type": "integer", "minimum": 0, "maximum": 9}
# Duo's paging token, kept verbatim (null: the start, or the end, of a read).
_TOKEN = {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_TOKEN_LENGTH}
_BATCH = {
    "source": _SOURCE,
    "window_id": _WINDOW_ID,
    "page": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
    "records": {
        "type": "array",
        "maxItems": PAGE_LIMIT,
        "items": {
            "type": "object",
            "required": ["telephony_id", "ts"],
            "properties": {
                "telephony_id": {"type": "string", "minLength": 1},
                "ts": {"type": "string", "minLength": 20},
            },
        },
    },
}


def _envelope(kind: str, version: int, title: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": _DRAFT,
        "$id": f"duo-telephony/{kind}.v{version}.json",
        "title": title,
        "type": "object",
        "required": ["type", "version", *fields],
        "additionalProperties": False,
        "properties": {"type": {"const": kind}, "version": {"const": version}, **fields},
    }


SCHEMAS: dict[tuple[str, int], dict[str, Any]] = {
    (WINDOW_TASK, 1): _envelope(
        WINDOW_TASK,
        1,
        "A time window of one Duo account's telephony logs to fetch",
        {"source": _SOURCE, "window_id": _WINDOW_ID, "mintime": _EPOCH_MS, "maxtime": _EPOCH_MS},
    ),
    (WINDOW_TASK, 2): _envelope(
        WINDOW_TASK,
        2,
        "A time window of one Duo account's telephony logs to fetch, not before its time",
        {
            "source": _SOURCE,
            "window_id": _WINDOW_ID,
            "mintime": _EPOCH_MS,
            "maxtime": _EPOCH_MS,
            "start_at_ms": _EPOCH_MS,
        },
    ),
    (SPAN_CHECK, 1): _envelope(
        SPAN_CHECK,
        1,
        "Finished, contiguous windows to check again against Duo's count of their span",
        {
            "source": _SOURCE,
            "level": _CHECK_LEVEL,
            "windows": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CHECK_WINDOWS,
                "items": _WINDOW_ID,
            },
        },
    ),
    (SPAN_CHECK, 2): _envelope(
        SPAN_CHECK,
        2,
        "A span of finished windows to check again against Duo's count of it",
        {
            "source": _SOURCE,
            "level": _CHECK_LEVEL,
            "mintime": _EPOCH_MS,
            "maxtime": _EPOCH_MS,
        },
    ),
    (PLAN_TASK, 1): _envelope(
        PLAN_TASK,
        1,
        "A slice of the sources the scheduler's run found, for one planner to plan",
        {
            "sources": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_PLAN_SLICE,
                "uniqueItems": True,
                "items": _SOURCE,
            },
            # The part of each child sharing its MSP parent's Duo budget in this run
            # (rate_share.SharedRead), by source; the others wait for none.
            "waits": {
                "type": "object",
                "propertyNames": _SOURCE,
                "additionalProperties": {
                    "type": "object",
                    "required": ["wait_ms", "start_at_ms", "next_run_ms"],
                    "additionalProperties": False,
                    "properties": {
                        "wait_ms": {"type": "integer", "minimum": 0},
                        "start_at_ms": {"anyOf": [_EPOCH_MS, {"type": "null"}]},
                        "next_run_ms": _EPOCH_MS,
                        "checks": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    ),
    (RECORD_BATCH, 1): _envelope(
        RECORD_BATCH,
        1,
        "One page of telephony records fetched from a window, to be written to Cloud Storage",
        _BATCH,
    ),
    (RECORD_BATCH, 2): _envelope(
        RECORD_BATCH,
        2,
        "One page of telephony records fetched from a window, to be written to Cloud Storage, "
        "with the paging tokens it was read between",
        _BATCH | {"offset": _TOKEN, "next_offset": _TOKEN},
    ),
}
