"""``duo-telephony verify SOURCE``: audits what the SecOps feed will read under a prefix.

SOURCE is ``gs://bucket/prefix`` (every object under ``prefix/``, as the feed reads it) or a
local directory holding a copy of such a prefix (its ``*.ndjson`` and ``*.ndjson.gz`` files,
named relative to it). Objects are streamed one at a time, sorted by name, one line at a time
(plain or gzip, recognised by magic bytes), and checked for these defects:

- ``bad_line``: a line that is not one JSON object, or a record without a ``telephony_id`` or a
  readable ``ts``;
- ``oversized_line``: a line over :data:`~shared.pipeline.objects.MAX_LINE_BYTES` (dropped);
- ``duplicate_id``: a ``telephony_id`` on more than one line, in one object or across objects
  (SecOps would ingest it twice);
- ``bad_name``: an object name outside the writer's layout (:func:`parse_object_name`);
- ``before_object`` / ``outside_window``: a record whose ``ts`` is earlier than the first ts
  its object's name gives, or not inside its window's ``[mintime, maxtime)`` (windows are
  half-open: each starts where the one before it ends).

It also reports the gaps in time coverage between the windows named by the objects, per source,
and the UDM event type of every record. Gaps are not defects: a window with no records leaves
no object, so a gap is either a time without events or missing data, and whether the windows
are contiguous cannot be proven from the bucket alone (``duo-telephony status`` knows).

Memory is the set of ``telephony_id`` values seen, each with its first location: about
:data:`BYTES_PER_RECORD` bytes per record (~150 MB for a million records), plus the duplicates
found, the windows, and at most ``--examples`` examples of each other defect.

Exit code: 0 when there is no defect, 1 when there is any, 2 when the source cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.clock import EPOCH
from shared.duo.records import RecordError, record_id, record_time_us
from shared.pipeline.ids import parse_window_id
from shared.pipeline.objects import MAX_LINE_BYTES, ObjectName, parse_object_name
from shared.secops.record_source import SourceError, SourceLine, read_records
from shared.secops.udm_mapping import MappingError, to_udm

DEFECT_KINDS: dict[str, str] = {
    "bad_line": "lines that are not one JSON record with a telephony_id and a valid ts",
    "oversized_line": f"lines over {MAX_LINE_BYTES:,} bytes, which the feed drops",
    "duplicate_id": "telephony_ids on more than one line, which SecOps would ingest twice",
    "bad_name": "objects whose name does not follow the pipeline's layout",
    "before_object": "records earlier than the first ts their object's name gives",
    "outside_window": "records whose ts is outside their object's window",
}
DEFAULT_EXAMPLES = 10
# Measured with tracemalloc for a million 36-character ids: the dict entry, the id string and
# the packed location.
BYTES_PER_RECORD = 150
GAP_ADVICE = "either no events, or missing data: check `duo-telephony status`"
CONTIGUITY_NOTE = (
    "windows that got no records leave no object, so gaps are not defects and whether the "
    "windows are contiguous cannot be proven from the bucket alone"
)
FILE_SUFFIXES = (".ndjson", ".ndjson.gz")

# A location (object index, line number) packed into one int: half the memory of a tuple.
_LINE_BITS = 32


@dataclass
class Defects:
    """One kind of defect: how many were found and the first examples."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Gap:
    """Time between a source's windows that no object covers: ``[start_ms, end_ms)``."""

    source: str
    start_ms: int
    end_ms: int


@dataclass
class AuditReport:
    """What :func:`audit` found; ``exit_code`` is 0 without defects, 1 with any."""

    source: str
    objects: int = 0
    records: int = 0
    bytes: int = 0
    defects: dict[str, Defects] = field(
        default_factory=lambda: {kind: Defects() for kind in DEFECT_KINDS}
    )
    # Per source: (windows seen, first mintime, last maxtime); gaps between those windows.
    coverage: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    event_types: Counter[str] = field(default_factory=Counter)

    @property
    def defect_count(self) -> int:
        return sum(defects.count for defects in self.defects.values())

    @property
    def exit_code(self) -> int:
        return 1 if self.defect_count else 0

    @property
    def memory_note(self) -> str:
        return (
            f"memory: the set of telephony_ids, about {BYTES_PER_RECORD} bytes per record "
            f"(~{BYTES_PER_RECORD} MB for a million records); "
            f"~{self.records * BYTES_PER_RECORD / 1e6:,.1f} MB here"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.exit_code == 0,
            "objects": self.objects,
            "records": self.records,
            "bytes": self.bytes,
            "defects": {
                "total": self.defect_count,
                "by_kind": {
                    kind: {"count": d.count, "examples": d.examples}
                    for kind, d in self.defects.items()
                },
            },
            "coverage": {
                "sources": {
                    source: {"windows": windows, "from": _iso(start), "to": _iso(end)}
                    for source, (windows, start, end) in self.coverage.items()
                },
                "gaps": [
                    {"source": gap.source, "from": _iso(gap.start_ms), "to": _iso(gap.end_ms)}
                    for gap in self.gaps
                ],
                "gap_count": len(self.gaps),
                "note": f"gaps: {GAP_ADVICE}; {CONTIGUITY_NOTE}",
            },
            "event_types": dict(self.event_types.most_common()),
            "memory_note": self.memory_note,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="gs://bucket/prefix (what the feed reads), or a local directory holding a copy "
        "of the prefix (DIR/YYYY/MM/DD/HH/*.ndjson[.gz])",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--examples",
        type=_non_negative,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"examples kept per defect kind (default {DEFAULT_EXAMPLES}; 0: all)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        report = audit(args.source, examples=args.examples)
    except (OSError, SourceError) as exc:
        print(f"duo-telephony verify: cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render(report))
    return report.exit_code


def audit(source: str, *, examples: int = DEFAULT_EXAMPLES) -> AuditReport:
    """Audits every object under ``gs://bucket/prefix`` or in a local directory.

    ``examples`` bounds the examples kept per defect kind (0 keeps all). Raises
    :class:`SourceError` or :class:`OSError` when the source cannot be read.
    """
    if source.startswith("gs://"):
        bucket, _, prefix = source.removeprefix("gs://").partition("/")
        prefix = prefix.strip("/")
        # The trailing slash: the feed reads prefix/, not prefix-other/.
        uri = f"gs://{bucket}/{prefix}/" if prefix else f"gs://{bucket}"
        checker = _Checker(source, prefix, examples)
        in_bucket = f"gs://{bucket}/"
        lines = read_records(
            uri, on_object=lambda origin, size: checker.start(origin[len(in_bucket) :], size)
        )
        for line in lines:
            checker.check(line)
        return checker.finish()
    root = Path(source)
    if not root.is_dir():
        raise SourceError(f"{source} is neither gs://bucket/prefix nor a directory")
    # The directory stands for the prefix: names relative to it start with YYYY/.
    checker = _Checker(source, "", examples)

    def start(origin: str, size: int) -> None:
        checker.start(_relative_name(root, Path(origin)), size)

    for path in _local_files(root):
        for line in read_records(str(path), on_object=start):
            checker.check(line)
    return checker.finish()


def _local_files(root: Path) -> list[Path]:
    """The NDJSON files under ``root``, in the order a bucket lists their names."""
    found = [p for p in root.rglob("*") if p.name.endswith(FILE_SUFFIXES) and p.is_file()]
    if not found:
        raise SourceError(f"no *.ndjson or *.ndjson.gz files under {root}")
    return sorted(found, key=lambda path: _relative_name(root, path))


def _relative_name(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


class _Checker:
    """The audit's state while the objects stream by: :meth:`start` each object, then
    :meth:`check` each of its lines."""

    def __init__(self, source: str, prefix: str, examples: int) -> None:
        self.report = AuditReport(source)
        self._prefix = prefix
        self._examples = examples
        self._names: list[str] = []
        self._object: ObjectName | None = None
        self._first_us = 0
        self._window = (0, 0)
        self._first_seen: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        self._windows: dict[str, set[tuple[int, int]]] = {}

    def start(self, name: str, size: int) -> None:
        self._names.append(name)
        self.report.objects += 1
        self.report.bytes += size
        try:
            self._object = parse_object_name(name, self._prefix)
        except ValueError as exc:
            self._object = None
            self._add("bad_name", {"object": name, "reason": str(exc)})
            return
        self._first_us = (self._object.first_ts - EPOCH) // timedelta(microseconds=1)
        self._window = parse_window_id(self._object.window_id)
        self._windows.setdefault(self._object.source, set()).add(self._window)

    def check(self, line: SourceLine) -> None:
        # A Duo response body is one line giving many items: judge the line once.
        first_of_line = line.item_no in (None, 1)
        if first_of_line and line.line_bytes is not None and line.line_bytes > MAX_LINE_BYTES:
            reason = f"{line.line_bytes:,} bytes; the feed accepts at most {MAX_LINE_BYTES:,}"
            self._line_defect("oversized_line", line, reason)
        if line.error is not None:
            self._line_defect("bad_line", line, line.error)
            return
        if line.item_no is not None or line.line_bytes is None:
            if first_of_line:
                reason = (
                    "a Duo API response body, not one record per line"
                    if line.item_no is not None
                    else "a multi-line JSON document, not NDJSON"
                )
                self._line_defect("bad_line", line, reason)
            return
        record: dict[str, Any] = line.record or {}
        self.report.records += 1
        try:
            telephony_id = record_id(record)
            ts_us = record_time_us(record)
            event_type = to_udm(record)["metadata"]["eventType"]
        except (RecordError, MappingError) as exc:
            self._line_defect("bad_line", line, str(exc))
            return
        self.report.event_types[event_type] += 1
        self._see(telephony_id, line.line_no)
        if self._object is not None:
            self._check_time(self._object, line, record["ts"], ts_us)

    def finish(self) -> AuditReport:
        for telephony_id, locations in self._duplicates.items():
            found = [{"object": name, "line": n} for name, n in map(self._location, locations)]
            self._add("duplicate_id", {"telephony_id": telephony_id, "locations": found})
        for source in sorted(self._windows):
            windows = sorted(self._windows[source])
            # A running end, so that a window inside an earlier one hides no gap.
            covered_to = windows[0][1]
            for mintime, maxtime in windows[1:]:
                if mintime > covered_to:
                    self.report.gaps.append(Gap(source, covered_to, mintime))
                covered_to = max(covered_to, maxtime)
            self.report.coverage[source] = (len(windows), windows[0][0], covered_to)
        return self.report

    def _check_time(self, obj: ObjectName, line: SourceLine, ts: str, ts_us: int) -> None:
        if ts_us < self._first_us:
            first = obj.first_ts.isoformat()
            self._line_defect("before_object", line, f"ts {ts} is before the object's {first}")
        mintime, maxtime = self._window
        if not mintime <= ts_us // 1000 < maxtime:
            reason = (
                f"ts {ts} is outside the window {obj.window_id} "
                f"({_iso(mintime)} to {_iso(maxtime)}, that end excluded)"
            )
            self._line_defect("outside_window", line, reason)

    def _see(self, telephony_id: str, line_no: int) -> None:
        location = (len(self._names) - 1) << _LINE_BITS | line_no
        first = self._first_seen.setdefault(telephony_id, location)
        if first != location:
            self._duplicates.setdefault(telephony_id, [first]).append(location)

    def _location(self, packed: int) -> tuple[str, int]:
        index, line_no = divmod(packed, 1 << _LINE_BITS)
        return self._names[index], line_no

    def _line_defect(self, kind: str, line: SourceLine, reason: str) -> None:
        example = {"object": self._names[-1], "line": line.line_no, "reason": reason}
        if line.item_no is not None:
            example["item"] = line.item_no
        self._add(kind, example)

    def _add(self, kind: str, example: dict[str, Any]) -> None:
        defects = self.report.defects[kind]
        defects.count += 1
        if not self._examples or len(defects.examples) < self._examples:
            defects.examples.append(example)


def render(report: AuditReport) -> str:
    """The report as readable text."""
    rows = [
        f"audit of {report.source}",
        f"  objects  {report.objects:,}",
        f"  records  {report.records:,}",
        f"  bytes    {report.bytes:,} (as stored)",
        "",
        f"defects: {report.defect_count:,}"
        + (" - exit code 1" if report.defect_count else " - the feed can read everything"),
    ]
    for kind, defects in report.defects.items():
        rows.append(f"  {kind}: {defects.count:,}  ({DEFECT_KINDS[kind]})")
        rows += [f"    {_example(example)}" for example in defects.examples]
        if defects.count > len(defects.examples):
            rows.append(f"    ... and {defects.count - len(defects.examples):,} more")
    rows += [
        "",
        "time coverage by source (from the window ids in object names), "
        f"gaps: {len(report.gaps):,}",
    ]
    for source, (windows, start, end) in report.coverage.items():
        rows.append(f"  {source}: {windows:,} windows from {_iso(start)} to {_iso(end)}")
        for gap in (gap for gap in report.gaps if gap.source == source):
            span = timedelta(milliseconds=gap.end_ms - gap.start_ms)
            rows.append(
                f"    no objects from {_iso(gap.start_ms)} to {_iso(gap.end_ms)} ({span}): "
                f"{GAP_ADVICE}"
            )
    rows += [
        f"  note: {CONTIGUITY_NOTE}",
        "",
        "UDM event types (what SecOps will make of the records):",
    ]
    mapped = sum(report.event_types.values())
    for event_type, count in report.event_types.most_common():
        rows.append(f"  {event_type:<20} {count:>10,}  {100 * count / mapped:5.1f}%")
    rows += ["", report.memory_note]
    return "\n".join(rows) + "\n"


def _example(example: dict[str, Any]) -> str:
    if "telephony_id" in example:
        found = ", ".join(f"{where['object']}:{where['line']}" for where in example["locations"])
        return f"{example['telephony_id']}: {found}"
    if "line" not in example:
        return f"{example['object']}: {example['reason']}"
    item = f" item {example['item']}" if "item" in example else ""
    return f"{example['object']}:{example['line']}{item}: {example['reason']}"


def _iso(ms: int) -> str:
    return (
        (EPOCH + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value
