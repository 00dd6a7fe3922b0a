"""``duo-telephony status`` as a new user meets it, on the emulators: with no source set it
shows every source the planner created; pointed at the wrong endpoint it says so in one line."""

from __future__ import annotations

import json

import pytest
from google.cloud import firestore

from harness.emulators import ENV_VARS, PUBSUB
from services.cli import main
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
        cursors.plan(source, lookback_ms=3_600_000, parallelism=1)

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


def test_status_reads_the_database_firestore_database_names(command_env, local_cloud, capsys):
    from harness.emulators import FIRESTORE, reset_firestore
    from shared.gcp.clients import firestore_client

    host, project = local_cloud.env[ENV_VARS[FIRESTORE]], local_cloud.project
    reset_firestore(host, project)
    reset_firestore(host, project, "duo-telephony")
    named = firestore_client(project, "duo-telephony")
    clock = FakeClock()
    CursorStore(named, WindowStore(named, clock), clock).plan("named", 3_600_000, 1)
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
