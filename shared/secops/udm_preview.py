"""``duo-telephony udm SOURCE``: what SecOps will make of raw records, before they are ingested.

``--format json`` prints one UDM event per record as NDJSON, in input order; ``--format table``
prints how many events of each type there will be and which UDM fields will stay empty.
Each bad line (or record whose time cannot be read) is reported on stderr as
``origin:line: reason`` and the rest is still mapped. Exit code: 0 when every line mapped,
1 when any line was bad, 2 when the source itself could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from shared.secops.record_source import SourceError, SourceLine, read_records
from shared.secops.udm_mapping import FILLABLE_FIELDS, MappingError, empty_fields, to_udm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a local file or gs://bucket/prefix (every object under it, by name): NDJSON or "
        "a Duo API response body, plain or gzip",
    )
    parser.add_argument(
        "--format",
        choices=("json", "table"),
        default="json",
        help="json: the UDM events as NDJSON (default); table: event types and empty fields",
    )


def run(args: argparse.Namespace) -> int:
    lines = read_records(args.source)
    try:
        if args.format == "table":
            summary = summarize(lines, sys.stderr)
            sys.stdout.write(render_table(summary))
            bad = summary.bad_lines
        else:
            bad = write_events(lines, sys.stdout, sys.stderr)
    except (OSError, SourceError) as exc:
        print(f"duo-telephony udm: cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    return 1 if bad else 0


def map_lines(lines: Iterable[SourceLine]) -> Iterator[tuple[SourceLine, dict[str, Any] | None]]:
    """Each line with its UDM event, or with None after an error has been set on the line."""
    for line in lines:
        if line.record is None:
            yield line, None
            continue
        try:
            yield line, to_udm(line.record)
        except MappingError as exc:
            yield SourceLine(line.origin, line.line_no, error=str(exc), item_no=line.item_no), None


def write_events(lines: Iterable[SourceLine], out: TextIO, err: TextIO) -> int:
    """Writes the UDM events to ``out`` as NDJSON and errors to ``err``; the number of errors."""
    bad = 0
    for line, event in map_lines(lines):
        if event is None:
            bad += 1
            _report(line, err)
        else:
            out.write(json.dumps(event) + "\n")
    return bad


@dataclass
class Summary:
    """What a source will become in SecOps, counted over its mapped events."""

    events: int = 0
    bad_lines: int = 0
    event_types: Counter[str] = field(default_factory=Counter)
    empty_fields: Counter[str] = field(default_factory=Counter)


def summarize(lines: Iterable[SourceLine], err: TextIO) -> Summary:
    """Counts event types and empty UDM fields; errors are written to ``err`` and counted."""
    summary = Summary()
    for line, event in map_lines(lines):
        if event is None:
            summary.bad_lines += 1
            _report(line, err)
            continue
        summary.events += 1
        summary.event_types[event["metadata"]["eventType"]] += 1
        summary.empty_fields.update(empty_fields(event))
    return summary


def render_table(summary: Summary) -> str:
    """The summary as a plain-text table; percentages are of the mapped events."""
    width = max(len(path) for path in FILLABLE_FIELDS)
    rows = [
        f"events: {summary.events}",
        f"bad lines: {summary.bad_lines}",
        "",
        f"{'event type':<{width}}  {'count':>7}  {'percent':>7}",
    ]
    for event_type, count in sorted(summary.event_types.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append(_row(event_type, count, summary.events, width))
    rows += ["", f"{'UDM field left empty':<{width}}  {'count':>7}  {'percent':>7}"]
    for path in FILLABLE_FIELDS:
        rows.append(_row(path, summary.empty_fields[path], summary.events, width))
    return "\n".join(rows) + "\n"


def _row(label: str, count: int, total: int, width: int) -> str:
    percent = f"{100 * count / total:.1f}%" if total else "-"
    return f"{label:<{width}}  {count:>7}  {percent:>7}"


def _report(line: SourceLine, err: TextIO) -> None:
    err.write(f"{line.location}: {line.error}\n")
