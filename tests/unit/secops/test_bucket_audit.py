"""``duo-telephony verify`` on local directories: planted defects, gaps, event types, exit codes."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from shared.pipeline.ids import window_id
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import MAX_LINE_BYTES, ObjectName, encode_batch
from shared.secops.bucket_audit import audit

BASE = datetime(2024, 5, 1, 10, tzinfo=UTC)
SOURCE = "main"


def ms(minutes: float) -> int:
    return (BASE + timedelta(minutes=minutes) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def record(n: int, minutes: float, **extra: Any) -> dict[str, Any]:
    """A raw Duo v2 item ``id-NNNN`` at BASE + ``minutes``."""
    return {
        "context": "authentication",
        "credits": 1,
        "phone": "+12125556707",
        "telephony_id": f"id-{n:04d}",
        "ts": (BASE + timedelta(minutes=minutes)).isoformat(timespec="microseconds"),
        "type": "sms",
        **extra,
    }


def write_window(
    root: Path,
    start: float,
    end: float,
    records: list[dict[str, Any]],
    *,
    source: str = SOURCE,
    gzip: bool = False,
) -> list[Path]:
    """The objects the writer makes of one page of the window [start, end) (minutes)."""
    batch = RecordBatch(source, window_id(ms(start), ms(end)), 0, records)
    paths = []
    for obj in encode_batch(batch, "", gzip):
        path = root / obj.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.data)
        paths.append(path)
    return paths


def verify(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify", *args])
    return code, capsys.readouterr().out


def clean_bucket(root: Path) -> None:
    """Two sources, a window over two hours, gzip and plain objects: 7 records, 3 objects."""
    write_window(root, 0, 60, [record(1, 1), record(2, 30)])
    write_window(root, 60, 180, [record(3, 61), record(4, 121)], gzip=True)
    write_window(root, 0, 60, [record(5, 2), record(6, 3), record(7, 59)], source="other")


def test_a_bucket_the_writer_made_passes(tmp_path: Path, capsys) -> None:
    clean_bucket(tmp_path)
    (tmp_path / "README.txt").write_text("not an object the audit reads")
    code, out = verify(str(tmp_path), capsys=capsys)
    report = audit(str(tmp_path))
    assert code == 0
    assert (report.objects, report.records, report.defect_count) == (3, 7, 0)
    stored = sum(p.stat().st_size for p in tmp_path.rglob("*.ndjson*"))
    assert report.bytes == stored
    assert "defects: 0 - the feed can read everything" in out
    assert f"bytes    {stored:,} (as stored)" in out
    assert report.gaps == []
    assert report.coverage == {"main": (2, ms(0), ms(180)), "other": (1, ms(0), ms(60))}


def test_planted_defects_are_each_named_with_their_object_and_line(tmp_path: Path, capsys) -> None:
    clean_bucket(tmp_path)
    # A record fetched twice (two windows) and one written twice in one object.
    [first] = write_window(tmp_path, 180, 240, [record(8, 200), record(1, 201), record(8, 202)])
    first_name = first.relative_to(tmp_path).as_posix()
    # A broken line and records before their object's first ts / outside their window, appended
    # to an object.
    [hour14] = write_window(tmp_path, 250, 300, [record(9, 255)])
    hour14_name = hour14.relative_to(tmp_path).as_posix()
    with hour14.open("ab") as stream:
        stream.write(b'{"telephony_id": "id-0010", \n')
        stream.write(json.dumps(record(11, 305)).encode() + b"\n")  # next hour, outside window
        stream.write(json.dumps(record(12, 245)).encode() + b"\n")  # this hour, before window
    # A line the feed would drop, in a gzip object: counted decompressed.
    huge = record(13, 400, padding="x" * MAX_LINE_BYTES)
    window = window_id(ms(360), ms(420))
    name = ObjectName("", BASE + timedelta(minutes=400), SOURCE, window, 0, True)
    oversized = tmp_path / name.name
    oversized.parent.mkdir(parents=True)
    oversized.write_bytes(gzip.compress(json.dumps(huge).encode() + b"\n"))
    # An object outside the layout.
    badly_named = tmp_path / "2024/05/01/10/export.ndjson"
    badly_named.write_text(json.dumps(record(14, 5)) + "\n")

    code, out = verify(str(tmp_path), "--json", capsys=capsys)
    report = json.loads(out)
    kinds = report["defects"]["by_kind"]

    assert code == 1
    assert not report["ok"]
    assert {kind: d["count"] for kind, d in kinds.items()} == {
        "bad_line": 1,
        "oversized_line": 1,
        "duplicate_id": 2,
        "bad_name": 1,
        "before_object": 1,
        "outside_window": 2,
    }
    assert report["defects"]["total"] == 8
    assert report["objects"] == 7 and report["records"] == 7 + 3 + 3 + 1 + 1
    [bad] = kinds["bad_line"]["examples"]
    assert (bad["object"], bad["line"]) == (hour14_name, 2)
    assert bad["reason"].startswith("not valid JSON")
    [big] = kinds["oversized_line"]["examples"]
    assert big["object"] == name.name and big["line"] == 1
    assert f"{len(json.dumps(huge)) + 1:,} bytes" in big["reason"]
    duplicates = {d["telephony_id"]: d["locations"] for d in kinds["duplicate_id"]["examples"]}
    assert duplicates == {
        "id-0001": [
            {
                "object": "2024/05/01/10/20240501T100100000000Z_main_1714557600000-1714561200000"
                "_p00000.ndjson",
                "line": 1,
            },
            {"object": first_name, "line": 2},
        ],
        "id-0008": [{"object": first_name, "line": 1}, {"object": first_name, "line": 3}],
    }
    [named] = kinds["bad_name"]["examples"]
    assert named["object"] == "2024/05/01/10/export.ndjson"
    [early] = kinds["before_object"]["examples"]
    assert (early["object"], early["line"]) == (hour14_name, 4)
    assert "is before the object's 2024-05-01T14:15:00+00:00" in early["reason"]
    assert [(w["object"], w["line"]) for w in kinds["outside_window"]["examples"]] == [
        (hour14_name, 3),
        (hour14_name, 4),
    ]


def test_the_text_report_shows_examples_up_to_the_limit(tmp_path: Path, capsys) -> None:
    [path] = write_window(tmp_path, 0, 60, [record(1, 1)])
    with path.open("ab") as stream:
        stream.write(b"[1]\n{}\nnot json\n")
    code, out = verify(str(tmp_path), "--examples", "1", capsys=capsys)
    name = path.relative_to(tmp_path).as_posix()
    assert code == 1
    assert "defects: 3 - exit code 1" in out
    assert "  bad_line: 3  (lines that are not one JSON record" in out
    assert f"    {name}:2: a JSON array, not an object\n    ... and 2 more\n" in out
    assert "  duplicate_id: 0  (" in out


def test_lines_that_are_not_one_record_each_are_bad(tmp_path: Path) -> None:
    [path] = write_window(tmp_path, 0, 60, [record(1, 1)])
    body = {"stat": "OK", "response": {"items": [record(2, 2), record(3, 3)]}}
    with path.open("ab") as stream:
        stream.write(json.dumps(body).encode() + b"\n")
        stream.write(json.dumps({"ts": record(4, 4)["ts"]}).encode() + b"\n")
        stream.write(json.dumps(record(5, 5, ts="noon")).encode() + b"\n")
    pretty = (
        tmp_path
        / "2024/05/01/10/20240501T100600000000Z_main_1714557600000-1714561200000_p00001.ndjson"
    )
    pretty.write_text(json.dumps(record(6, 6), indent=2))
    report = audit(str(tmp_path))
    reasons = [(e["object"], e["line"], e["reason"]) for e in report.defects["bad_line"].examples]
    name = path.relative_to(tmp_path).as_posix()
    assert reasons == [
        (name, 2, "a Duo API response body, not one record per line"),
        (name, 3, "an item without a telephony_id: {'ts': '2024-05-01T10:04:00.000000+00:00'}"),
        (name, 4, "item 'id-0005' has no valid ts: 'noon'"),
        (pretty.relative_to(tmp_path).as_posix(), 1, "a multi-line JSON document, not NDJSON"),
    ]
    assert report.records == 3  # the response body and the document are no records


def test_gaps_between_windows_are_reported_but_are_no_defects(tmp_path: Path, capsys) -> None:
    write_window(tmp_path, 0, 60, [record(1, 1)])
    write_window(tmp_path, 60, 120, [record(2, 61)])
    # 120 to 180 has no object; a window inside another hides no gap.
    write_window(tmp_path, 180, 300, [record(3, 181)])
    write_window(tmp_path, 200, 210, [record(4, 201)])
    write_window(tmp_path, 420, 480, [record(5, 421)])
    code, out = verify(str(tmp_path), capsys=capsys)
    report = audit(str(tmp_path))
    assert code == 0
    assert [(g.start_ms, g.end_ms) for g in report.gaps] == [(ms(120), ms(180)), (ms(300), ms(420))]
    assert "time coverage by source (from the window ids in object names), gaps: 2\n" in out
    assert "  main: 5 windows from 2024-05-01T10:00:00.000Z to 2024-05-01T18:00:00.000Z\n" in out
    assert (
        "    no objects from 2024-05-01T12:00:00.000Z to 2024-05-01T13:00:00.000Z (1:00:00): "
        "either no events, or missing data: check `duo-telephony status`\n"
    ) in out
    assert "cannot be proven from the bucket alone" in out


def test_event_types_of_enriched_and_raw_records(tmp_path: Path, capsys) -> None:
    enriched = {"eventtype": "telephony", "host": "api-xxxxxxxx.duosecurity.com"}
    write_window(
        tmp_path,
        0,
        60,
        [
            record(1, 1, **enriched),
            record(2, 2, **enriched),
            record(3, 3),
            record(4, 4, host="h", context=""),
        ],
    )
    code, out = verify(str(tmp_path), "--json", capsys=capsys)
    assert code == 0
    assert json.loads(out)["event_types"] == {
        "USER_UNCATEGORIZED": 2,
        "GENERIC_EVENT": 1,
        "STATUS_UPDATE": 1,
    }
    _, text = verify(str(tmp_path), capsys=capsys)
    assert "  USER_UNCATEGORIZED            2   50.0%\n" in text
    assert "memory: the set of telephony_ids, about 150 bytes per record" in text


@pytest.mark.parametrize("source", ["missing-dir", "empty-dir", "gs://"])
def test_a_source_that_cannot_be_read_exits_2(tmp_path: Path, capsys, source: str) -> None:
    (tmp_path / "empty-dir").mkdir()
    path = source if source.startswith("gs://") else str(tmp_path / source)
    code = main(["verify", path])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith(f"duo-telephony verify: cannot read {path}: ")
