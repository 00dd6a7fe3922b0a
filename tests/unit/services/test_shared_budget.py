"""An MSP parent's children sharing one Duo budget: the planner divides it (each child's live
window spans ceil(N / R) minutes, a share of the children planned each minute) and the
fetcher draws every child's requests from one limiter keyed by the parent."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from harness.fleet_reads import reads
from services.fetcher.duo_clients import DuoClients
from services.fetcher.window_fetch import WindowFetcher
from services.planner.budget import shared_reads
from services.planner.discovery import planned_sources
from services.planner.main import planner_app
from services.settings import PlannerSettings, fetcher_settings
from shared.duo.api import CallStats
from shared.gcp.secret_manager import CachedSecrets
from shared.gcp.source_registry import CachedEntries
from shared.pipeline.messages import WindowTask
from shared.pipeline.rate_share import CHECK_REQUESTS
from shared.pipeline.sources import Discovery, ParentSpec, parse_parent
from tests.fakes import FakeClock
from tests.source_examples import parent_setting
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
    scheduler_call,
    telephony_item,
)

MINUTE = 60_000


class Window(NamedTuple):
    source: str
    mintime: int
    maxtime: int


CHILDREN = [f"DA{i:02d}" for i in range(20)]


def settings_for(
    rate_limit: str, per_minute: float | None, quiet_ms: int = MINUTE
) -> PlannerSettings:
    return PlannerSettings(
        "p",
        ("own",),
        "windows",
        lookback_seconds=3600,
        parallelism=1,
        parent=parse_parent(parent_setting(rate_limit=rate_limit)),
        rate_per_minute=per_minute,
        # No window is fetched by most tests here, so every account would be quiet: read as
        # busy ones are.
        quiet_read_every_ms=quiet_ms,
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
        waits=lambda active: shared_reads(
            settings, clock, active, found_rate or (lambda key: 1 / 0)
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
        # Its reads 3 min 55 s apart (a margin for a read's own delays), so a window a minute
        # shorter now and then, and no more often.
        assert set(lengths[1:]) <= {3 * MINUTE, 4 * MINUTE}, child
    # Each minute plans its share: 20 children over 3 min 55 s, 5 or 6 a minute.
    assert Counter(len([t for t in run if t.source != "own"]) for run in runs[2:]) == {5: 21, 6: 2}


class OneRecordDuo:
    """Duo's telephony endpoint with one record at the start of every window read, each call
    taking 0.3 s of the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.stats = CallStats()

    def get(self, path: str, params: dict[str, str], parse):
        self.stats.requests += 1
        self.clock.advance(0.3)
        start = int(params["mintime"])
        record = telephony_item(f"t{start}", start)
        return parse({"items": [record], "metadata": {"next_offset": None}})


class Fleet:
    """The planner called at the top of each minute, as Cloud Scheduler does, plans a
    parent's children sharing its budget, skipping the runs a source's wake says are idle;
    the fetcher reads every window task it publishes, each at its time (its start, sleeping
    the clock; in the order of their times, as fetchers reading in parallel do: the planner's
    threads publish a run's windows in any order), from a Duo with a record in every window (every
    child is busy), and each batch lands at once."""

    def __init__(self, settings: PlannerSettings) -> None:
        self.clock = FakeClock(start=1_800_000_000.0 - 1_800_000_000.0 % 60 + 60)
        self.registry = FakeSourceRegistry(self.clock)
        events: list = []
        self.windows = FakeWindowStore(self.clock, events)
        self.publisher = FakePublisher(events)
        self.children_counted: list[int] = []
        self.planned: Counter = Counter()  # the runs each source was planned in
        # Per run, the children's reads it planned and the late-record checks it sent.
        self.asked: list[tuple[int, int]] = []

        def waits(active: list[str]):
            reads = shared_reads(settings, self.clock, active, lambda key: 1 / 0)
            self.children_counted.append(len(reads))
            return reads

        def sources():
            listed = planned_sources(settings, self.registry, listing, self.clock)
            self.planned.update(listed.due)
            return listed

        self.client = planner_app(
            settings,
            FakeCursorStore(self.windows, self.clock),
            self.windows,
            self.publisher,
            self.clock,
            sources=sources,
            record_wake=self.registry.wake,
            waits=waits,
        ).test_client()
        self.fetcher = WindowFetcher(
            self.windows,
            self.publisher,
            lambda source, live: OneRecordDuo(self.clock),
            self.clock,
            lease_seconds=60,
            time_budget_seconds=240,
        )

    def minutes(self, count: int) -> None:
        """``count`` planner calls a minute apart, each followed by the reads it planned that
        start before the next call; the others are read after it."""
        pending: list[WindowTask] = []
        run_at = self.clock.now()
        for _ in range(count):
            self.clock.advance(max(0.0, run_at - self.clock.now()))
            sent, checked = len(self.publisher.tasks), len(self.publisher.checks)
            assert scheduler_call(self.client, self.publisher) == 200
            pending += self.publisher.tasks[sent:]
            self.asked.append(
                (
                    sum(t.start_at_ms is not None for t in self.publisher.tasks[sent:]),
                    sum(c.source != "own" for c in self.publisher.checks[checked:]),
                )
            )
            run_at += 60
            due = sorted(
                (t for t in pending if (t.start_at_ms or 0) < run_at * 1000),
                key=lambda t: t.start_at_ms or 0,
            )
            pending = [t for t in pending if t not in due]
            for task in due:
                landed = len(self.publisher.batches)
                self.fetcher.fetch(task)
                for batch in self.publisher.batches[landed:]:
                    self.windows.record_batch(batch, [batch.batch_id])

    def gaps(self, source: str):
        return reads(
            doc for (s, _), doc in self.windows.docs.items() if s == source.lower()
        ).longest_gap_ms


def test_fetched_children_are_read_every_ceil_n_over_r_minutes_and_skip_their_idle_runs():
    # 20 children sharing 6 requests a minute: each read at least every 4 minutes, as busy
    # accounts are (no record, but read every minute when the budget allows).
    fleet = Fleet(settings_for("parent", 6.0, quiet_ms=5 * MINUTE))
    fleet.minutes(40)
    # N is the registry's children every run, not the few whose run is due.
    assert set(fleet.children_counted) == {len(CHILDREN)}
    for child in CHILDREN:
        assert fleet.gaps(child) <= 4 * MINUTE, child
    # Each child is planned in the run of its read, the one after (its window still open) and
    # now and then one more (a late-record check due), not in all 40.
    assert max(fleet.planned[child.lower()] for child in CHILDREN) <= 30


def test_the_childrens_late_record_checks_are_counted_in_the_shared_budget():
    # 20 children sharing 6 requests a minute, their hour of backfill read at once, so every
    # child has a span due for its check from the third minute. The checks are never done
    # here: each is sent again in its child's next turn, the most they can ask for.
    fleet = Fleet(settings_for("parent", 6.0))
    fleet.minutes(120)
    runs = fleet.asked[2:]
    for start in range(len(runs) - 30):
        # Over any half hour, the reads and the checks' requests together within R.
        reads = sum(read for read, _ in runs[start : start + 30])
        checks = sum(check for _, check in runs[start : start + 30])
        assert reads + CHECK_REQUESTS * checks <= 6 * 30, (start, reads, checks)
    # Yet no child's checks starve: each sent one in its turn, one read in 23 (90 min).
    sent = Counter(check.source for check in fleet.publisher.checks)
    assert set(sent) >= {child.lower() for child in CHILDREN}, sent
    for child in CHILDREN:
        assert fleet.gaps(child) <= 4 * MINUTE, child


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
