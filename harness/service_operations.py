"""The operations the services counted (``shared.gcp.operations``), read back from their
logs, and the bytes they logged (Cloud Logging bills what it ingests).

Each worker writes its running totals after every request it serves (see
``harness/gunicorn_conf.py``), so a worker's totals at a moment are those of its last line
before it, and a service's are the sum over its workers (a killed worker's count ends with
its last line; a restarted one starts again from zero under a new pid). Each line names the
request that wrote it too: its start and end, from which ``harness.instance_time`` models what
Cloud Run bills."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from harness.service_logs import log_entries, structured_lines

# Marks the lines the harness's gunicorn settings write; service log lines never carry it.
MARKER = "harness_operations"
LOG_BYTES = "log_bytes"


@dataclass(frozen=True)
class Totals:
    pid: int
    at: float  # epoch seconds
    counts: dict[str, int]
    request: tuple[float, float] | None = None  # the request's start and end (epoch seconds)


def totals_line(
    pid: int, at: float, counts: dict[str, int], request: tuple[float, float] | None = None
) -> str:
    line: dict[str, object] = {MARKER: counts, "pid": pid, "at": round(at, 3)}
    if request is not None:
        line["request"] = [round(moment, 3) for moment in request]
    return json.dumps(line) + "\n"


def parse(lines: Iterable[str]) -> list[Totals]:
    found = []
    for entry in log_entries(lines):
        try:
            request = entry.get("request")
            found.append(
                Totals(
                    int(entry["pid"]),
                    float(entry["at"]),
                    dict(entry[MARKER]),
                    (float(request[0]), float(request[1])) if request else None,
                )
            )
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # a service's own line
    return found


def at(totals: list[Totals], moment: float) -> dict[str, int]:
    """The service's totals at ``moment``: each worker's last totals up to then, added up."""
    latest: dict[int, Totals] = {}
    for entry in totals:
        if entry.at <= moment and (entry.pid not in latest or entry.at >= latest[entry.pid].at):
            latest[entry.pid] = entry
    summed: Counter[str] = Counter()
    for entry in latest.values():
        summed.update(entry.counts)
    return dict(summed)


def between(totals: list[Totals], start: float, end: float) -> dict[str, int]:
    """What the service did from ``start`` to ``end``."""
    before, after = at(totals, start), at(totals, end)
    return {name: after[name] - before.get(name, 0) for name in after}


def requests_between(
    totals: list[Totals], start: float | None, end: float
) -> list[tuple[float, float]] | None:
    """The start and end of each request that ended from ``start`` (None: the beginning) to
    ``end``, as ``between`` counts them; None when the lines name no request (logs written
    before they did)."""
    if totals and all(entry.request is None for entry in totals):
        return None
    return [
        entry.request
        for entry in totals
        if entry.request is not None and (start is None or start < entry.at) and entry.at <= end
    ]


def log_bytes(lines: Iterable[str], start: float | None, end: float) -> int:
    """Bytes of the service's own structured log lines (those with a ``time``) written from
    ``start`` (None: the beginning) to ``end``: what Cloud Logging would ingest from it."""
    size = 0
    for line, entry in structured_lines(lines):
        try:
            moment = datetime.fromisoformat(entry["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if (start is None or start <= moment) and moment <= end:
            size += len(line.encode())
    return size
