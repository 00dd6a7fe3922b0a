"""``duo-telephony status`` exit codes, for scripts and probes: 0 all is well, 1 a window failed
or a source has no cursor yet, 2 the configuration is wrong."""

from __future__ import annotations

import io
import json
import threading
from threading import Event
from typing import Any

import pytest

from services import cli, status
from shared.clock import Clock, now_ms
from tests.fakes import FakeClock

NOW = now_ms(FakeClock())
SETTINGS = (
    "GOOGLE_CLOUD_PROJECT",
    "DUO_SOURCES",
    "SOURCE_ID",
    "LOOKBACK",
    "PLAN_DELAY",
    "PLAN_PARALLELISM",
    "WINDOW_LEASE",
    "WINDOW_TOPIC",
    "FIRESTORE_EMULATOR_HOST",
)


def report(
    source: str = "eu-prod",
    *,
    exists: bool = True,
    failed: int = 0,
    quarantined: int = 0,
    stalled: int = 0,
) -> dict[str, Any]:
    return {
        "source": source,
        "exists": exists,
        "watermark_ms": NOW - 300_000 if exists else None,
        "planned_until_ms": NOW - 120_000 if exists else None,
        "windows": {
            "planned": 1,
            "fetching": 1,
            "fetched": 0,
            "done": 40,
            "failed": failed,
            "quarantined": quarantined,
        },
        "records": 1234,
        "rereads": 0,
        "checks": 0,
        "repairs": 0,
        "quarantined": [],
        "stalled": [
            {"window_id": f"w{n}", "bucket_waits": 5, "error": "Forbidden"} for n in range(stalled)
        ],
        "retention_lost_ms": [],
        "last_error": None,
        "gap_ms": None,
    }


@pytest.mark.parametrize(
    ("reports", "code"),
    [
        ([report()], 0),
        ([report("emea"), report("amer")], 0),
        ([report(failed=1)], 1),
        ([report(quarantined=1)], 1),
        ([report(stalled=1)], 1),  # a fetched window waits, run after run, for the bucket
        ([report(exists=False)], 1),
        ([report("emea"), report("amer", failed=3)], 1),
        ([report("emea", exists=False), report("amer")], 1),
    ],
)
def test_the_exit_code_says_whether_every_source_is_well(reports, code):
    assert status.show(reports, NOW, as_json=False, out=io.StringIO()) == code


def test_each_source_is_printed_as_text():
    out = io.StringIO()
    status.show([report("emea"), report("amer", exists=False)], NOW, as_json=False, out=out)
    text = out.getvalue()
    assert text.startswith(status.render(report("emea"), NOW) + "\n")
    assert "source amer: no cursor yet" in text


def test_json_prints_the_reports_as_they_are():
    out = io.StringIO()
    reports = [report("emea"), report("amer", failed=2)]
    assert status.show(reports, NOW, as_json=True, out=out) == 1
    assert json.loads(out.getvalue()) == reports


@pytest.fixture
def env(monkeypatch):
    """No settings from the machine running the tests; Firestore is never reached."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)

    def no_firestore(
        project: str, sources: list[str], clock: Clock, answered: Event
    ) -> list[dict[str, Any]]:
        raise AssertionError("status read Firestore")

    monkeypatch.setattr(status, "read_reports", no_firestore)
    monkeypatch.setattr(status, "read_parents", lambda project, clock: {})
    return monkeypatch


@pytest.mark.parametrize(
    ("settings", "args", "says"),
    [
        ({}, ["--source", "eu-prod"], "GOOGLE_CLOUD_PROJECT is required but not set"),
        (
            {"GOOGLE_CLOUD_PROJECT": "acme", "DUO_SOURCES": "[eu-prod"},
            [],
            "DUO_SOURCES is not JSON",
        ),
        ({"GOOGLE_CLOUD_PROJECT": "acme", "SOURCE_ID": "EU prod"}, [], "SOURCE_ID: 'EU prod'"),
    ],
    ids=["no project", "sources not JSON", "bad source id"],
)
def test_a_configuration_error_exits_2_naming_the_setting(env, capsys, settings, args, says):
    for name, value in settings.items():
        env.setenv(name, value)
    assert cli.main(["status", *args]) == 2
    assert says in capsys.readouterr().out


@pytest.mark.parametrize(("reports", "code"), [([report()], 0), ([report(failed=1)], 1)])
def test_the_command_exits_with_the_code_of_what_it_read(env, capsys, reports, code):
    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    asked = []

    def read(
        project: str, sources: list[str], clock: Clock, answered: Event
    ) -> list[dict[str, Any]]:
        asked.append((project, sources))
        return reports

    env.setattr(status, "read_reports", read)
    env.setattr(status, "SystemClock", FakeClock)
    assert cli.main(["status", "--source", "eu-prod"]) == code
    assert asked == [("acme-prod", ["eu-prod"])]
    assert capsys.readouterr().out == status.render(reports[0], NOW) + "\n"


def test_with_no_source_configured_every_source_in_firestore_is_shown(env, capsys):
    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    asked = []

    def read(
        project: str, sources: list[str] | None, clock: Clock, answered: Event
    ) -> list[dict[str, Any]]:
        asked.append(sources)
        return [report("emea"), report("amer")]

    env.setattr(status, "read_reports", read)
    assert cli.main(["status"]) == 0
    assert asked == [None]  # not "default": whatever the planner created
    out = capsys.readouterr().out
    assert "source emea" in out and "source amer" in out


def test_no_source_in_firestore_says_the_planner_has_not_run(env, capsys):
    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    env.setattr(status, "read_reports", lambda project, sources, clock, answered: [])
    assert cli.main(["status"]) == 1
    assert "no source in Firestore (acme-prod): the planner has not run" in capsys.readouterr().out


def test_firestore_that_cannot_be_read_is_one_line_not_a_traceback(env, capsys):
    from google.api_core.exceptions import MethodNotImplemented

    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    env.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8085")

    def wrong_server(
        project: str, sources: list[str] | None, clock: Clock, answered: Event
    ) -> list:
        raise MethodNotImplemented("Method not found: BatchGetDocuments\nmore detail")

    env.setattr(status, "read_reports", wrong_server)
    assert cli.main(["status"]) == 2
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "duo-telephony status: could not read Firestore (the emulator at 127.0.0.1:8085): "
        "501 Method not found: BatchGetDocuments"
    ]


def test_firestore_that_does_not_answer_is_reported_at_the_deadline_naming_firestore(env, capsys):
    import threading

    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    env.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    unanswered = threading.Event()

    def no_answer(project: str, sources: list[str] | None, clock: Clock, answered: Event) -> list:
        unanswered.wait(30)  # as the client retrying a closed port; released below
        return [report()]

    env.setattr(status, "read_reports", no_answer)
    env.setattr(status, "READ_DEADLINE_SECONDS", 0)  # the deadline is passed at once
    try:
        assert cli.main(["status"]) == 2
    finally:
        unanswered.set()
    assert capsys.readouterr().out.splitlines() == [
        "duo-telephony status: could not read Firestore (the emulator at 127.0.0.1:9): "
        "no answer within 0 s"
    ]


def test_a_read_within_the_deadline_gives_its_result_or_its_error():
    def broken() -> list:
        raise ValueError("bad")

    assert status.within(30, lambda: [report()]) == [report()]
    with pytest.raises(ValueError, match="bad"):
        status.within(30, broken)


def test_sources_are_read_in_order_several_at_a_time():
    meet = threading.Barrier(3)

    def read(item: str) -> str:
        if item in ("a", "b", "c"):
            meet.wait(timeout=5)  # broken, and the test fails, unless three run at once
        return item.upper()

    assert status.overlapped(read, list("abcdefg"), 3) == list("ABCDEFG")


def test_a_read_that_fails_fails_them_all():
    def read(item: str) -> str:
        if item == "b":
            raise RuntimeError("Firestore said no")
        return item

    with pytest.raises(RuntimeError, match="Firestore said no"):
        status.overlapped(read, ["a", "b", "c"], 2)


def test_a_read_firestore_never_answers_leaves_only_daemon_threads_behind():
    # The command exits once `within` gives up; a non-daemon reader would hold it for the
    # client's own retries.
    stuck = threading.Event()
    inside = threading.Barrier(3)  # both readers and the test

    def read(item: str) -> str:
        inside.wait(timeout=5)
        stuck.wait()
        return item

    with pytest.raises(status.NoAnswer):
        status.within(0, lambda: status.overlapped(read, ["a", "b"], 2))
    try:
        inside.wait(timeout=5)
        readers = [t for t in threading.enumerate() if t.name == "status-source"]
        assert readers and all(t.daemon for t in readers)
    finally:
        stuck.set()
