"""``duo-telephony status`` as a new user meets it, on the emulators: with no source set it
shows every source the planner created; pointed at the wrong endpoint it says so in one line."""

from __future__ import annotations

import json
import socket
import time

import pytest
from google.cloud import firestore

from harness.emulators import ENV_VARS, PUBSUB
from services import status
from services.cli import main
from shared.duo.paging import DuoTotal
from shared.gcp.cursor_store import CursorStore
from shared.gcp.window_store import WindowStore
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def command_env(local_cloud, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", local_cloud.project)
    for name in ("SOURCE_ID", "DUO_SOURCES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_with_no_source_set_every_planned_source_is_shown(
    command_env, firestore_db: firestore.Client, capsys
) -> None:
    clock = FakeClock()
    cursors = CursorStore(firestore_db, WindowStore(firestore_db, clock), clock)
    for source in ("emea", "amer"):
        cursors.step(source, lookback_ms=3_600_000, parallelism=1)

    assert main(["status", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(report["source"] for report in shown) == ["amer", "emea"]
    assert all(report["exists"] and report["windows"]["planned"] == 1 for report in shown)


def test_status_pointed_at_the_wrong_emulator_says_so_in_one_line(
    command_env, local_cloud, capsys
) -> None:
    pubsub = local_cloud.env[ENV_VARS[PUBSUB]]
    command_env.setenv("FIRESTORE_EMULATOR_HOST", pubsub)

    assert main(["status"]) == 2
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    expected = f"duo-telephony status: could not read Firestore (the emulator at {pubsub})"
    assert out.startswith(expected)


def test_status_shows_the_backfill_read_against_duos_count(
    command_env, firestore_db: firestore.Client, capsys
) -> None:
    clock = FakeClock()
    windows = WindowStore(firestore_db, clock)
    [task] = CursorStore(firestore_db, windows, clock).step("emea", 3_600_000, parallelism=1).tasks
    claim = windows.claim("emea", task.window_id, 60)
    clock.advance(30)
    claim = windows.checkpoint(claim, "1,a", 1000, 60, read=1000, total=DuoTotal(4000))
    clock.advance(30)
    windows.checkpoint(claim, "2,b", 1000, 60, read=1000, total=DuoTotal(4000))
    command_env.setattr(status, "SystemClock", lambda: clock)
    clock.advance(60)

    assert main(["status", "--source", "emea"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 2,000 records in the two minutes since the claim: 2,000 to go, two minutes.
    assert lines[-1] == (
        "  backfill    [#####.....] 2,000 / 4,000 records (50 %), 1,000/min, ~2 min left"
    )


def test_status_against_a_closed_port_names_firestore_within_its_deadline(monkeypatch, capsys):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed)
    monkeypatch.setenv("SOURCE_ID", "emea")

    started = time.monotonic()
    assert main(["status"]) == 2
    assert time.monotonic() - started < status.READ_DEADLINE_SECONDS + 5
    assert capsys.readouterr().out.startswith(
        f"duo-telephony status: could not read Firestore (the emulator at {closed})"
    )


def test_status_reads_the_database_firestore_database_names(command_env, local_cloud, capsys):
    from harness.emulators import FIRESTORE, reset_firestore
    from shared.gcp.clients import firestore_client

    host, project = local_cloud.env[ENV_VARS[FIRESTORE]], local_cloud.project
    reset_firestore(host, project)
    reset_firestore(host, project, "duo-telephony")
    named = firestore_client(project, "duo-telephony")
    clock = FakeClock()
    CursorStore(named, WindowStore(named, clock), clock).step("named", 3_600_000, 1)
    try:
        command_env.setenv("FIRESTORE_DATABASE", "duo-telephony")
        assert main(["status", "--json"]) == 0
        assert [r["source"] for r in json.loads(capsys.readouterr().out)] == ["named"]
        command_env.delenv("FIRESTORE_DATABASE")
        assert main(["status"]) == 1  # the default database has no source
        assert "no source in Firestore" in capsys.readouterr().out
    finally:
        reset_firestore(host, project, "duo-telephony")
        named.close()
