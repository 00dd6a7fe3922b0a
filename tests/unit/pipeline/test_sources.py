"""The sources registry's rules: the sources file, the MSP parent, and reconciliation."""

from __future__ import annotations

import json

import pytest

from shared.pipeline.sources import (
    ACTIVE,
    BROKEN,
    CHILD,
    GONE,
    REFUSED,
    Destination,
    Discovery,
    SourcesError,
    SourceSpec,
    active,
    child_source_id,
    discovery_due,
    parse_parent,
    parse_sources_file,
    reconcile,
    trouble,
)
from shared.pipeline.wake import EVERY_RUN, WAKE_AT
from tests.source_examples import SECRET, file_entry, parent_setting

HOUR = 3_600_000
NOW = 1_800_000_000_000
# A gone entry loses its wake: the planner's minute never reads it again.
GONE_NOW = {"state": GONE, "since_ms": NOW + 1, WAKE_AT: None}


parent = parent_setting


def test_sources_file_entries_with_their_destinations():
    specs = parse_sources_file(
        json.dumps([file_entry("a"), file_entry("b", destination={"bucket": "cust-b"})])
    )
    assert [s.id for s in specs] == ["a", "b"]
    assert specs[0].destination == Destination()
    assert specs[1].destination == Destination("cust-b", None)
    assert specs[1].skey_secret == SECRET.format("b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "DUO_SOURCES_FILE is not JSON"),
        ('{"id": "a"}', "DUO_SOURCES_FILE must be a JSON list"),
        (json.dumps([file_entry("a"), file_entry("a")]), "DUO_SOURCES_FILE[1].id: source 'a'"),
        (json.dumps([file_entry("A b")]), "DUO_SOURCES_FILE[0].id: 'A b'"),
        (json.dumps([file_entry("a", ikey="")]), "DUO_SOURCES_FILE[0].ikey is required"),
        (
            json.dumps([file_entry("a", skey_secret="the-key-itself")]),
            "DUO_SOURCES_FILE[0].skey_secret is not a secret version",
        ),
        (
            json.dumps([file_entry("a", destination={"prefix": "x/{account_id}"})]),
            "DUO_SOURCES_FILE[0].destination.prefix: 'x/{account_id}': no placeholders",
        ),
        (
            json.dumps([file_entry("a", destination={"bucket": "Not A Bucket"})]),
            "DUO_SOURCES_FILE[0].destination.bucket",
        ),
    ],
)
def test_a_bad_sources_file_is_one_line_naming_the_entry(text, message):
    with pytest.raises(SourcesError) as raised:
        parse_sources_file(text)
    assert str(raised.value).startswith(message)
    assert "the-key-itself" not in str(raised.value)


def test_a_parent_admits_children_by_allow_and_deny_lists():
    spec = parse_parent(parent(allow=["Acme*", "DA2"], deny=["DA3", "*test*"]))
    assert spec.admits("DA1", "Acme Corp")
    assert spec.admits("DA2", "Other")
    assert not spec.admits("DA3", "Acme Three")  # denied by id
    assert not spec.admits("DA4", "Acme test")  # denied by name
    assert not spec.admits("DA5", "Globex")  # not allowed
    assert parse_parent(parent()).admits("DA5", "Globex")  # no allow list: every child


def test_a_child_is_read_at_its_host_with_the_parents_keys_under_its_template():
    spec = parse_parent(parent(destination={"prefix": "duo-telephony/{account_id}/"}))
    child = spec.child("DASIM000000000000001", "Acme", "api-child1.duosecurity.com")
    assert child.id == "dasim000000000000001"
    assert child.origin == CHILD
    assert (child.api_host, child.ikey, child.skey_secret) == (
        "api-child1.duosecurity.com",
        "DIPARENTXXXXXXXXXXXX",
        SECRET.format("parent"),
    )
    assert (child.parent, child.parent_api_host) == ("msp", "api-parent.duosecurity.com")
    assert child.destination == Destination(None, "duo-telephony/DASIM000000000000001")
    assert SourceSpec.from_fields(child.fields()) == child


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"deny": "DA1"}, "DUO_MSP_PARENT.deny must be a list"),
        ({"destination": {"prefix": "x/{customer}"}}, "DUO_MSP_PARENT.destination.prefix"),
        ({"skey_secret": "plain"}, "DUO_MSP_PARENT.skey_secret is not a secret version"),
        (
            {"rate_limit": "shared"},
            "DUO_MSP_PARENT.rate_limit: 'shared' must be one of account, parent, auto",
        ),
    ],
)
def test_a_bad_parent_is_one_line_naming_the_setting(extra, message):
    with pytest.raises(SourcesError, match=message.replace(".", r"\.")):
        parse_parent(parent(**extra))


def test_a_child_id_that_cannot_be_a_source_id_is_refused_by_name():
    assert child_source_id("DA12") == "da12"
    with pytest.raises(SourcesError, match="child account id 'DA_1'"):
        child_source_id("DA_1")


def children(*ids: str) -> Discovery:
    spec = parse_parent(parent())
    return Discovery(
        "msp", tuple(spec.child(i, i, f"api-{i.lower()}.duosecurity.com") for i in ids)
    )


def apply(stored: dict, updates: dict) -> dict:
    merged = {k: dict(v) for k, v in stored.items()}
    for source, update in updates.items():
        merged.setdefault(source, {}).update(update)
    return merged


def test_new_sources_and_children_are_active_since_first_seen():
    a = parse_sources_file(json.dumps([file_entry("a")]))
    stored = apply({}, reconcile(a, children("DA1"), {}, NOW))
    assert {s: (d["state"], d["since_ms"]) for s, d in stored.items()} == {
        "a": (ACTIVE, NOW),
        "da1": (ACTIVE, NOW),
    }
    assert active(stored) == ["a", "da1"]
    assert reconcile(a, children("DA1"), stored, NOW + 1) == {}  # nothing changed


def test_a_vanished_child_is_gone_since_and_comes_back_where_it_stopped():
    stored = apply({}, reconcile([], children("DA1", "DA2"), {}, NOW))
    stored = apply(stored, reconcile([], children("DA1"), stored, NOW + HOUR))
    assert (stored["da2"]["state"], stored["da2"]["since_ms"]) == (GONE, NOW + HOUR)
    assert active(stored) == ["da1"]
    again = reconcile([], children("DA1"), stored, NOW + 2 * HOUR)
    assert again == {}  # still gone, still since when it went
    stored = apply(stored, reconcile([], children("DA1", "DA2"), stored, NOW + 3 * HOUR))
    assert stored["da2"]["state"] == ACTIVE


def test_a_failed_listing_or_no_listing_this_run_keeps_every_child():
    stored = apply({}, reconcile([], children("DA1"), {}, NOW))
    assert reconcile([], Discovery("msp", error="40301"), stored, NOW + HOUR) == {}
    assert reconcile([], None, stored, NOW + HOUR, parent="msp") == {}


def test_the_children_of_a_parent_no_longer_configured_are_gone():
    stored = apply({}, reconcile([], children("DA1"), {}, NOW))
    assert reconcile([], None, stored, NOW + 1) == {"da1": GONE_NOW}
    assert reconcile([], None, stored, NOW + 1, parent="other")["da1"]["state"] == GONE


def test_every_entry_not_gone_has_a_wake_and_a_gone_one_none():
    # The planner's minute reads the entries by their wake: one without is never planned.
    ab = parse_sources_file(json.dumps([file_entry("a"), file_entry("b")]))
    stored = apply({}, reconcile(ab, None, {}, NOW))
    assert {doc[WAKE_AT] for doc in stored.values()} == {EVERY_RUN}  # new: due at once
    del stored["a"][WAKE_AT]  # stored before the wake was a time
    stored["b"] |= {"state": GONE, WAKE_AT: NOW}  # gone before a gone entry lost it
    updates = reconcile(ab[:1], None, stored, NOW + 1)
    assert updates["a"][WAKE_AT] == EVERY_RUN and "state" not in updates["a"]
    assert updates["b"] == {WAKE_AT: None}


def test_a_source_removed_from_the_file_is_gone_and_the_others_untouched():
    ab = parse_sources_file(json.dumps([file_entry("a"), file_entry("b")]))
    stored = apply({}, reconcile(ab, None, {}, NOW))
    assert reconcile(ab[:1], None, stored, NOW + 1) == {"b": GONE_NOW}


def test_a_child_with_a_configured_sources_id_is_not_read_and_both_are_named():
    da1 = parse_sources_file(json.dumps([file_entry("da1")]))
    stored = apply({}, reconcile(da1, children("DA1"), {}, NOW))
    assert stored["da1"]["origin"] == "file"
    assert stored["da1"]["state"] == ACTIVE
    assert stored["da1"]["conflict"].startswith(
        "source da1: configured in DUO_SOURCES_FILE and discovered as child account DA1 of msp"
    )
    stored = apply(stored, reconcile(da1, children(), stored, NOW + HOUR))
    assert stored["da1"]["conflict"] is None


def test_a_refused_child_waits_for_the_refresh_and_the_others_are_planned():
    stored = apply({}, reconcile([], children("DA1", "DA2"), {}, NOW))
    stored = apply(stored, {"da2": trouble(REFUSED, "Duo answered 403", 40301, NOW + 1, "fix")})
    assert active(stored) == ["da1"]
    assert reconcile([], children("DA1", "DA2"), stored, NOW + HOUR) == {}
    retried = reconcile([], children("DA1", "DA2"), stored, NOW + HOUR + 1)
    assert retried["da2"]["state"] == ACTIVE and retried["da2"]["error"] is None


def test_a_broken_source_is_tried_again_as_soon_as_its_configuration_changes():
    a = parse_sources_file(json.dumps([file_entry("a")]))
    stored = apply({}, reconcile(a, None, {}, NOW))
    stored = apply(stored, {"a": trouble(BROKEN, "no such secret", None, NOW, None)})
    assert reconcile(a, None, stored, NOW + 1) == {}
    fixed = parse_sources_file(json.dumps([file_entry("a", skey_secret=SECRET.format("a2"))]))
    assert reconcile(fixed, None, stored, NOW + 1)["a"]["state"] == ACTIVE


def test_discovery_runs_every_refresh():
    assert discovery_due(None, NOW, HOUR)
    assert not discovery_due({"listed_at_ms": NOW}, NOW + HOUR - 1, HOUR)
    assert discovery_due({"listed_at_ms": NOW}, NOW + HOUR, HOUR)
    assert discovery_due({"listed_at_ms": NOW, "error": "40301"}, NOW + 1, HOUR)
