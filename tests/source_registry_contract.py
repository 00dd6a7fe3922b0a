"""The sources registry's contract, held by the Firestore store (on the emulator) and by the
services' fake alike: a test class subclasses ``RegistryContract`` and gives the ``registry``
fixture (a store on an empty database) and the ``clock`` it reads."""

from __future__ import annotations

import json

from shared.clock import now_ms
from shared.pipeline.sources import (
    ACTIVE,
    GONE,
    REFUSED,
    Discovery,
    parse_parent,
    parse_sources_file,
    trouble,
)
from shared.pipeline.wake import EVERY_RUN, WAKE_AT
from tests.source_examples import SECRET, file_entry, parent_setting

HOUR = 3_600_000
PARENT = parse_parent(parent_setting(destination={"prefix": "customers/{account_id}"}))
FILE = parse_sources_file(json.dumps([file_entry("own")]))


def listing(*ids: str, error: str | None = None) -> Discovery:
    children = tuple(PARENT.child(i, f"name {i}", f"api-{i.lower()}.duosecurity.com") for i in ids)
    return Discovery("msp", children, error=error)


class RegistryContract:
    def test_sync_keeps_each_sources_spec_and_state(self, registry, clock):
        synced = registry.sync(FILE, listing("DA1", "DA2"))
        assert synced == registry.entries()
        assert sorted(synced) == ["da1", "da2", "own"]
        child = registry.entry("da1")
        assert child["state"] == ACTIVE
        assert child["since_ms"] == now_ms(clock)
        assert child["skey_secret"] == SECRET.format("parent")  # a name, never the key
        assert child["destination"] == {"bucket": None, "prefix": "customers/DA1"}
        assert registry.parent("msp")["children"] == 2
        assert registry.counts() == {ACTIVE: 3}

    def test_a_vanished_child_is_gone_and_a_failed_listing_keeps_the_rest(self, registry, clock):
        registry.sync(FILE, listing("DA1", "DA2"))
        clock.advance(HOUR / 1000)
        registry.sync(FILE, listing("DA1"))
        assert registry.entry("da2")["state"] == GONE
        assert registry.entry("da2")["since_ms"] == now_ms(clock)
        assert registry.entry("da2")["account_id"] == "DA2"  # its spec kept, to come back
        registry.sync(FILE, listing(error="msp: Duo refused to list the child accounts"))
        assert registry.entry("da1")["state"] == ACTIVE
        assert registry.parent("msp")["error"].startswith("msp: Duo refused")
        assert registry.counts() == {ACTIVE: 2, GONE: 1}

    def test_trouble_marks_only_its_source_and_never_creates_one(self, registry, clock):
        registry.sync(FILE, listing("DA1"))
        refused = trouble(REFUSED, "Duo answered HTTP 403 code 40301", 40301, 7, "the fix")
        assert registry.trouble("da1", refused)
        assert registry.entry("da1")["state"] == REFUSED
        assert registry.entry("da1")["code"] == 40301
        assert registry.entry("own")["state"] == ACTIVE
        assert not registry.trouble("nobody", refused)
        assert registry.entry("nobody") is None

    def test_a_sources_wake_is_its_own_and_kept_by_the_sync(self, registry, clock):
        registry.sync(FILE, listing("DA1"))
        wake = now_ms(clock) + 300_000
        registry.wake("da1", wake)
        clock.advance(HOUR / 1000)
        registry.sync(FILE, listing("DA1", "DA2"))
        assert registry.entry("da1")[WAKE_AT] == wake
        assert registry.entry("da2")[WAKE_AT] == EVERY_RUN  # new: due at once
        assert registry.entry("da1")["state"] == ACTIVE
        registry.wake("da1", None)  # due every run again
        assert registry.entry("da1")[WAKE_AT] == EVERY_RUN
        registry.wake("nobody", wake)
        assert registry.entry("nobody") is None

    def test_due_reads_the_entries_whose_wake_came_and_every_troubled_one(self, registry, clock):
        registry.sync(FILE, listing("DA1", "DA2", "DA3"))
        now = now_ms(clock)
        assert sorted(registry.due(now)) == ["da1", "da2", "da3", "own"]  # new: due at once
        registry.wake("da1", now + 300_000)
        registry.wake("da2", now + 300_000)
        registry.trouble("da2", trouble(REFUSED, "Duo answered HTTP 403", 40301, now, "fix"))
        registry.sync(FILE, listing("DA1", "DA2"))  # DA3 gone
        assert sorted(registry.due(now)) == ["da2", "own"]
        assert registry.due(now)["da2"]["state"] == REFUSED
        assert sorted(registry.due(now + 300_000)) == ["da1", "da2", "own"]
