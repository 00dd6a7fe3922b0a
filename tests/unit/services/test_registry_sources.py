"""The planner's sources run after run (``RegistrySources``): the registry synced at the first
run, every ACCOUNTS_REFRESH, after another planner's listing and when a troubled entry is due
to be tried again, and between those only the entries whose wake has come read, with what a
read of the whole registry would have given."""

from __future__ import annotations

import json
import logging

import pytest

from services.planner.discovery import RegistrySources, RunSources
from shared.clock import now_ms
from shared.pipeline.sources import REFUSED, active, trouble
from shared.pipeline.wake import due
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeSourceRegistry
from tests.unit.services.test_sources_wiring import Lister, msp_settings

SOURCES_FILE = "sources.json"

MINUTE = 60


class CountingRegistry(FakeSourceRegistry):
    """The fake registry, counting its syncs."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.syncs = 0

    def sync(self, *args, **kwargs):
        self.syncs += 1
        return super().sync(*args, **kwargs)


def whole_read(registry: FakeSourceRegistry, clock: FakeClock) -> RunSources:
    """The run's sources from every entry, as a run reading the whole registry finds them."""
    entries = registry.entries()
    sources = active(entries)
    return RunSources([s for s in sources if due(entries[s], now_ms(clock))], sources)


@pytest.fixture
def settings(tmp_path):
    def write(entries) -> str:
        path = tmp_path / SOURCES_FILE
        path.write_text(json.dumps(entries))
        return str(path)

    return msp_settings(write)


@pytest.fixture
def fleet(settings):
    clock = FakeClock()
    registry = CountingRegistry(clock)
    lister = Lister("DA1", "DA2", "DA3")
    return clock, registry, lister, RegistrySources(settings, registry, lister, clock)


def test_between_syncs_a_run_reads_the_due_entries_and_finds_what_a_whole_read_does(fleet, caplog):
    clock, registry, lister, sources = fleet
    assert sources() == RunSources(["da1", "da2", "da3", "own"], ["da1", "da2", "da3", "own"])
    registry.wake("da1", now_ms(clock) + 5 * MINUTE * 1000)
    registry.trouble("da2", trouble(REFUSED, "Duo answered 403", 40301, now_ms(clock), "fix"))
    for _ in range(10):
        clock.advance(MINUTE)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert sources() == whole_read(registry, clock)
        assert "registry: 1 accounts refused" in caplog.messages
        assert "registry: 3 accounts active" in caplog.messages
        if registry.entry("da1")["wake_at_ms"] <= now_ms(clock):
            registry.wake("da1", now_ms(clock) + 5 * MINUTE * 1000)
    assert registry.syncs == 1
    assert lister.calls == 1


def test_the_registry_is_synced_every_refresh_and_a_refused_source_tried_again_on_time(fleet):
    clock, registry, lister, sources = fleet
    sources()
    clock.advance(30 * MINUTE)
    for source in ("own", "da2"):
        registry.trouble(source, trouble(REFUSED, "Duo answered 403", 40301, now_ms(clock), "-"))
    clock.advance(30 * MINUTE)
    assert sources().due == ["da1", "da3"]  # the refresh's listing: neither is due yet
    assert (registry.syncs, lister.calls) == (2, 2)
    clock.advance(29 * MINUTE)
    assert sources().due == ["da1", "da3"]
    assert registry.syncs == 2
    clock.advance(MINUTE)  # the configured one an hour after it was refused, not at the refresh
    assert sources().due == ["da1", "da3", "own"]
    assert registry.syncs == 3
    clock.advance(MINUTE)  # the child at its parent's next listing, as a sync each run would
    assert sources().due == ["da1", "da3", "own"]
    assert registry.syncs == 3
    clock.advance(29 * MINUTE)
    assert sources().due == ["da1", "da2", "da3", "own"]
    assert (registry.syncs, lister.calls) == (4, 3)


def test_another_planners_listing_is_synced_at_the_next_run(fleet, settings):
    clock, registry, _, sources = fleet
    sources()
    clock.advance(10 * MINUTE)
    # Another planner lists the parent's children, a new one among them.
    registry.sync(settings.configured, Lister("DA1", "DA2", "DA3", "DA4")(settings.parent), "msp")
    clock.advance(MINUTE)
    assert sources().due == ["da1", "da2", "da3", "da4", "own"]
    assert registry.syncs == 3


def test_a_gone_entry_given_a_wake_by_a_run_still_counts_once(fleet, caplog):
    clock, registry, lister, sources = fleet
    sources()
    lister.ids = ["DA1", "DA2"]
    clock.advance(60 * MINUTE)
    sources()  # the listing: da3 gone
    registry.wake("da3", now_ms(clock))  # a run that began before it went gone
    clock.advance(MINUTE)
    with caplog.at_level(logging.INFO):
        assert sources() == RunSources(["da1", "da2", "own"], ["da1", "da2", "own"])
    assert "registry: 1 accounts gone" in caplog.messages
    assert registry.syncs == 2
