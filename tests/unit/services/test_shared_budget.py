"""An MSP parent's children sharing one Duo budget: the planner divides it (each child's live
window spans ceil(N / R) minutes, a share of the children planned each minute) and the
fetcher draws every child's requests from one limiter keyed by the parent."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from services.fetcher.duo_clients import DuoClients
from services.planner.budget import shared_waits
from services.planner.discovery import planned_sources
from services.planner.main import planner_app
from services.settings import PlannerSettings, fetcher_settings
from shared.gcp.secret_manager import CachedSecrets
from shared.gcp.source_registry import CachedEntries
from shared.pipeline.sources import Discovery, ParentSpec, parse_parent
from tests.fakes import FakeClock
from tests.source_examples import parent_setting
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
    scheduler_call,
)

MINUTE = 60_000


class Window(NamedTuple):
    source: str
    mintime: int
    maxtime: int


CHILDREN = [f"DA{i:02d}" for i in range(20)]


def settings_for(rate_limit: str, per_minute: float | None) -> PlannerSettings:
    return PlannerSettings(
        "p",
        ("own",),
        "windows",
        lookback_seconds=3600,
        parallelism=1,
        parent=parse_parent(parent_setting(rate_limit=rate_limit)),
        rate_per_minute=per_minute,
        # No window is fetched here, so every account would be quiet: read as busy ones are.
        quiet_read_every_ms=MINUTE,
    )


def listing(parent: ParentSpec) -> Discovery:
    return Discovery(
        parent.id,
        tuple(parent.child(i, i, f"api-{i.lower()}.duosecurity.com") for i in CHILDREN),
    )


def minutes_of_planning(settings: PlannerSettings, minutes: int, found_rate=None):
    """The windows each planner run created (not those resent), run once a minute, by run."""
    clock = FakeClock(start=1_800_000_000.0 - 1_800_000_000.0 % 60 + 30)
    registry = FakeSourceRegistry(clock)
    events: list = []
    windows = FakeWindowStore(clock, events)
    cursors = FakeCursorStore(windows, clock)
    publisher = FakePublisher(events)
    runs = []
    # The scheduler's call and the pushes of its plan tasks, as in production: the waits are
    # computed once a run and ride on the plan tasks.
    client = planner_app(
        settings,
        cursors,
        windows,
        publisher,
        clock,
        sources=lambda: planned_sources(settings, registry, listing, clock),
        record_wake=registry.wake,
        waits=lambda planned: shared_waits(
            settings, clock, planned, found_rate or (lambda key: 1 / 0)
        ),
    ).test_client()
    for _ in range(minutes):
        before = set(windows.docs)
        assert scheduler_call(client, publisher) == 200
        created = sorted(set(windows.docs) - before)
        runs.append(
            [
                Window(s, windows.docs[s, w]["mintime"], windows.docs[s, w]["maxtime"])
                for s, w in created
            ]
        )
        clock.advance(60)
    return runs


def test_a_shared_budget_reads_each_child_every_ceil_n_over_r_minutes_a_share_each_minute():
    # 20 children sharing 6 requests a minute: each read every ceil(20 / 6) = 4 minutes.
    runs = minutes_of_planning(settings_for("parent", 6.0), minutes=25)
    spans: dict[str, list[int]] = {}
    for run in runs[1:]:  # the first run plans each account's backfill
        for task in run:
            spans.setdefault(task.source, []).append(task.maxtime - task.mintime)
        children_live = [t for t in run if t.source != "own"]
        assert len(children_live) <= 6  # the live windows ask no more than the budget
    assert spans.pop("own") == [MINUTE] * 24  # the own account keeps its own budget
    assert sorted(spans) == [c.lower() for c in CHILDREN]
    for child, lengths in spans.items():
        assert max(lengths) <= 4 * MINUTE, child  # read at least every 4 minutes
        assert lengths[1:] == [4 * MINUTE] * (len(lengths) - 1), child  # and no more often
    # Each minute plans its share: 20 children over 4 minutes, 5 a minute.
    assert Counter(len([t for t in run if t.source != "own"]) for run in runs[2:]) == {5: 23}


def test_a_found_shared_rate_is_read_once_a_run_from_the_parents_budget():
    keys: list[str] = []

    def found(key: str) -> float:
        keys.append(key)
        return 10.0  # 20 children: each every 2 minutes

    runs = minutes_of_planning(settings_for("auto", 600.0), minutes=6, found_rate=found)
    assert set(keys) == {"msp:children"} and len(keys) == 6
    assert {t.maxtime - t.mintime for run in runs[2:] for t in run if t.source != "own"} == {
        2 * MINUTE
    }


def test_children_with_a_budget_each_are_read_every_minute():
    runs = minutes_of_planning(settings_for("account", 6.0), minutes=4)
    assert [len(run) for run in runs[1:]] == [21, 21, 21]


class Documents:
    """Firestore for the rate limiters these tests build but never use: the documents named."""

    def __init__(self) -> None:
        self.named: set[str] = set()

    def collection(self, _name: str) -> Documents:
        return self

    def document(self, name: str) -> Documents:
        self.named.add(name)
        return self


def limiter_documents(rate_limit: str) -> set[str]:
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    registry.sync([], listing(parse_parent(parent_setting(rate_limit=rate_limit))))
    env = {"GOOGLE_CLOUD_PROJECT": "p", "DUO_MSP_PARENT": parent_setting()}
    db = Documents()
    clients = DuoClients(
        fetcher_settings(env, lambda n: ""),
        db,
        clock,
        CachedEntries(registry, clock),
        CachedSecrets(lambda name: "S" * 40, clock),
    )
    for child in CHILDREN[:3]:
        clients.api(child.lower())
        clients.api(child.lower(), live=True)
    return db.named


def test_the_fetcher_draws_shared_childrens_requests_from_the_parents_one_budget():
    assert limiter_documents("parent") == {"msp:children"}
    assert limiter_documents("account") == {"da00", "da01", "da02"}
    # ``auto``: from both, and the decision which of the two Duo counts (rate_scope).
    assert limiter_documents("auto") == {"msp:children", "da00", "da01", "da02", "msp:scope"}
