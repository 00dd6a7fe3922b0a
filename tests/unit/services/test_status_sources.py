"""``duo-telephony status`` on a fleet: each source's registry entry, and each MSP parent's
last listing of its children."""

from __future__ import annotations

import io

from services import cli, status
from services.status import render, show, show_parents
from shared.pipeline.sources import REFUSED, REFUSED_FIX, Discovery, parse_parent, trouble
from tests.fakes import FakeClock
from tests.source_examples import parent_setting
from tests.unit.services.fakes import FakeSourceRegistry
from tests.unit.services.test_status import NOW, report

PARENT = parse_parent(parent_setting(destination={"prefix": "duo-telephony/{account_id}/"}))
REFUSAL = (
    "msp: child account 'Globex' (DA2) at api-2.duosecurity.com, read with the parent's keys: "
    "Duo answered HTTP 403 code 40301 (Access forbidden): Duo does not let the parent's keys "
    "read this child (a child in another Duo deployment is refused)"
)


def entries() -> dict:
    registry = FakeSourceRegistry(FakeClock(1_800_000_000))
    children = (
        PARENT.child("DA1", "Acme", "api-1.duosecurity.com"),
        PARENT.child("DA2", "Globex", "api-2.duosecurity.com"),
        PARENT.child("DA3", "Initech", "api-3.duosecurity.com"),
    )
    registry.sync([], Discovery("msp", children))
    registry.sync([], Discovery("msp", children[:2]))
    registry.trouble("da2", trouble(REFUSED, REFUSAL, 40301, NOW, REFUSED_FIX))
    return registry.entries()


def test_a_refused_child_shows_duos_code_and_message_and_the_fix():
    lines = render(report(source="da2", registry=entries()["da2"]), NOW).splitlines()
    assert lines[-5:] == [
        "  account     child account DA2 ('Globex') of msp at api-2.duosecurity.com",
        "  lands in    gs://GCS_BUCKET/duo-telephony/DA2",
        f"  refused     since 2027-01-15T08:00:00.000+00:00 (Duo code 40301): {REFUSAL}",
        f"  fix         {REFUSED_FIX}",
        "              not planned; tried again after ACCOUNTS_REFRESH",
    ]
    well = report()["windows"] | {"failed": 0}
    out = io.StringIO()
    assert show([report(windows=well)], NOW, as_json=False, out=out) == 0
    assert show([report(windows=well, registry=entries()["da2"])], NOW, as_json=False, out=out)


def test_a_vanished_child_says_since_when_and_an_active_one_where_it_lands():
    gone = render(report(source="da3", registry=entries()["da3"]), NOW).splitlines()
    assert gone[-1].startswith("  gone since  2027-01-15T08:00:00.000+00:00: no longer")
    active = render(report(source="da1", registry=entries()["da1"]), NOW).splitlines()
    assert active[-2:] == [
        "  lands in    gs://GCS_BUCKET/duo-telephony/DA1",
        "  state       active since 2027-01-15T08:00:00.000+00:00",
    ]


def test_a_single_account_deployment_shows_as_today():
    entry = {"id": "eu-prod", "origin": "env", "state": "active", "since_ms": NOW}
    assert render(report(registry=entry), NOW) == render(report(), NOW)


def test_a_parents_failed_listing_is_shown_and_exits_1():
    out = io.StringIO()
    error = "msp: Duo refused to list the child accounts: Duo answered HTTP 403 code 40301"
    parents = {"msp": {"listed_at_ms": NOW, "children": 0, "error": error, "invalid": []}}
    assert show_parents(parents, as_json=False, out=out) == 1
    assert out.getvalue().splitlines() == [
        "msp parent msp: children listed 2027-01-15T08:00:00.000+00:00, 0 admitted",
        f"  error       {error}",
    ]
    well = {"msp": {"listed_at_ms": NOW, "children": 3, "error": None, "invalid": []}}
    assert show_parents(well, as_json=False, out=io.StringIO()) == 0


def test_a_fleet_deployment_shows_every_source_in_firestore(monkeypatch, capsys):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")
    monkeypatch.setenv("SOURCE_ID", "own")
    monkeypatch.setenv("DUO_MSP_PARENT", parent_setting())
    asked = []

    def read(project, sources, clock, answered):
        asked.append(sources)
        well = report()["windows"] | {"failed": 0}
        return [report(source="own", windows=well), report(source="da1", windows=well)]

    monkeypatch.setattr(status, "read_reports", read)
    monkeypatch.setattr(status, "read_parents", lambda project, clock: {})
    assert cli.main(["status"]) == 0
    assert asked == [None]  # not only "own": the children too


def test_how_duo_counts_a_parents_children_is_shown_with_its_evidence():
    out = io.StringIO()
    evidence = "Duo accepted 18 of the fleet's requests in a minute: Duo counts per account"
    decided = {"scope": "account", "since": NOW / 1000, "evidence": evidence, "served": 14}
    parent = {"listed_at_ms": NOW, "children": 3, "error": None, "invalid": []}
    parents = {"msp": parent | {"rate_limit_scope": decided}}
    assert show_parents(parents, as_json=False, out=out) == 0
    assert out.getvalue().splitlines()[1:] == [
        "  rate limit  counted per account since 2027-01-15T08:00:00.000+00:00",
        f"  evidence    {evidence}",
    ]
