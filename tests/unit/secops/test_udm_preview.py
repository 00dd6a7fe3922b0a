"""The ``udm`` sub-command: NDJSON events, the summary table and the exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from services.cli import main
from shared.secops.record_source import SourceLine
from shared.secops.udm_preview import Summary, render_table, summarize, write_events

# The example response of Duo's telephony v2 documentation.
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "duo-docs-telephony-v2.json"

ENRICHED = {
    "context": "authentication",
    "phone": "+17345551311",
    "telephony_id": "60799fee-f08f-4ba8-971f-4e53b3473e9a",
    "ts": "2023-01-26T20:54:12.573580+00:00",
    "type": "phone",
    "eventtype": "telephony",
    "host": "api-xxxxxxxx.duosecurity.com",
}
RAW = {"context": "enrollment", "credits": 1, "ts": "2023-03-21T22:34:49.466370+00:00"}


def lines(*records: dict | str) -> list[SourceLine]:
    """Source lines of file "f": a dict is a record, a string the error of a bad line."""
    return [
        SourceLine("f", n, error=r) if isinstance(r, str) else SourceLine("f", n, record=r)
        for n, r in enumerate(records, start=1)
    ]


def test_write_events_prints_one_event_per_record_in_order() -> None:
    out, err = io.StringIO(), io.StringIO()
    bad = write_events(lines(ENRICHED, RAW), out, err)
    events = [json.loads(row) for row in out.getvalue().splitlines()]
    assert bad == 0
    assert err.getvalue() == ""
    assert [e["metadata"]["eventType"] for e in events] == ["USER_UNCATEGORIZED", "GENERIC_EVENT"]
    assert events[0]["principal"]["hostname"] == "api-xxxxxxxx.duosecurity.com"
    assert events[1]["metadata"]["eventTimestamp"] == "2023-03-21T22:34:49.466370Z"


def test_write_events_reports_bad_lines_and_unreadable_times_on_stderr_only() -> None:
    out, err = io.StringIO(), io.StringIO()
    bad = write_events(lines(RAW, "not valid JSON (x)", {"ts": "noon"}, ENRICHED), out, err)
    assert bad == 2
    assert len(out.getvalue().splitlines()) == 2
    assert err.getvalue() == (
        "f:2: not valid JSON (x)\nf:3: ts is not an ISO 8601 date-time: 'noon'\n"
    )


def test_summarize_counts_event_types_empty_fields_and_bad_lines() -> None:
    err = io.StringIO()
    records = lines(ENRICHED, RAW, {"host": "192.0.2.10"}, "a JSON array, not an object")
    summary = summarize(records, err)
    assert summary.events == 3
    assert summary.bad_lines == 1
    assert summary.event_types == {
        "USER_UNCATEGORIZED": 1,
        "GENERIC_EVENT": 1,
        "STATUS_UPDATE": 1,
    }
    assert summary.empty_fields["principal.hostname"] == 2
    assert summary.empty_fields["principal.ip"] == 2
    assert summary.empty_fields["metadata.eventTimestamp"] == 1
    assert summary.empty_fields["securityResult.detectionFields[credits]"] == 3
    assert summary.empty_fields["securityResult.detectionFields[eventtype]"] == 2
    assert err.getvalue() == "f:4: a JSON array, not an object\n"


def test_render_table() -> None:
    summary = summarize(lines(ENRICHED, RAW, RAW, "bad"), io.StringIO())
    assert render_table(summary) == (
        "events: 3\n"
        "bad lines: 1\n"
        "\n"
        "event type                                   count  percent\n"
        "GENERIC_EVENT                                    2    66.7%\n"
        "USER_UNCATEGORIZED                               1    33.3%\n"
        "\n"
        "UDM field left empty                         count  percent\n"
        "metadata.eventTimestamp                          0     0.0%\n"
        "metadata.productEventType                        0     0.0%\n"
        "metadata.productLogId                            2    66.7%\n"
        "principal.user.phoneNumbers                      2    66.7%\n"
        "principal.user.userid                            2    66.7%\n"
        "principal.hostname                               2    66.7%\n"
        "principal.asset.hostname                         2    66.7%\n"
        "principal.ip                                     3   100.0%\n"
        "principal.asset.ip                               3   100.0%\n"
        "securityResult.detectionFields[credits]          3   100.0%\n"
        "securityResult.detectionFields[eventtype]        2    66.7%\n"
        "securityResult.summary                           2    66.7%\n"
    )


def test_render_table_of_nothing_has_no_percentages() -> None:
    table = render_table(Summary(bad_lines=2))
    assert table.startswith("events: 0\nbad lines: 2\n")
    assert "metadata.eventTimestamp                          0        -\n" in table


def test_the_command_prints_the_sample_as_three_events(capsys: pytest.CaptureFixture) -> None:
    assert main(["udm", str(SAMPLE)]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(row) for row in out.splitlines()]
    assert [e["metadata"]["productLogId"] for e in events] == [
        "220f89ff-bff8-4466-b6cb-b7787940ce68",
        "60799fee-f08f-4ba8-971f-4e53b3473e9a",
        "5bf1a860-fe39-49e3-be29-217659663a74",
    ]
    assert events[0]["metadata"]["eventTimestamp"] == "2023-03-21T22:34:49.466370Z"
    assert err == ""


def test_the_command_exits_1_on_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(json.dumps(RAW) + "\n{broken\n" + json.dumps(ENRICHED) + "\n")
    assert main(["udm", str(path)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    reason = "not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert err == f"{path}:2: {reason}\n"


def test_the_command_table_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(json.dumps(ENRICHED) + "\n[]\n")
    assert main(["udm", "--format", "table", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("events: 1\nbad lines: 1\n")
    assert "USER_UNCATEGORIZED                               1   100.0%\n" in out
    assert err == f"{path}:2: a JSON array, not an object\n"


def test_the_command_exits_2_when_the_source_cannot_be_read(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.ndjson"
    assert main(["udm", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"duo-telephony udm: cannot read {missing}: ")
