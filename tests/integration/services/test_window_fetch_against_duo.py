"""The fetcher's window work against the Duo simulator, on the Firestore and Pub/Sub emulators:
what Duo's real behaviour asks of it (issue 8): windows past the retention edge, re-reads whose
pages fall differently.

The simulator, the fetcher and the stores share one fake clock, so time jumps, never sleeps.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import firestore

from harness.pubsub_setup import ensure_pull_subscription, ensure_topic
from services.fetcher.window_fetch import WindowFetcher
from shared.clock import now_ms
from shared.duo.api import DuoApi
from shared.duo.endpoint import DuoEndpoint
from shared.duo.rate_limit import TokenBucket
from shared.duo.retry import RetryPolicy
from shared.duo.secret import Secret
from shared.duo.signing import Signer, SigningConfig
from shared.duo.telephony import AVAILABILITY_DELAY_MS, RETENTION_MS
from shared.duo.transport import DuoHttp
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber
from shared.gcp.cursor_store import new_cursor
from shared.gcp.publisher import Publisher
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch, SpanCheck, WindowTask, decode
from shared.pipeline.planning import FETCH_RETENTION_MARGIN_MS
from shared.pipeline.repair import CHECK_BATCH_MS, CHECK_LEVELS, Checks, spans_due
from shared.pipeline.windows import LANDING_TIMEOUT_MS, new_window
from simulator.api import ApiOptions, TelephonyApi
from simulator.dataset import Dataset, DatasetSpec
from simulator.server import SimulatorServer
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

IKEY = "DIFETCHSIMULATOR0001"
SKEY = "FetcherSecretKeyForTheSimulatorTests0000"
SOURCE = "acme"
HOUR_MS = 3_600_000
LEASE_S = 60.0
MINUTE_MS = 60_000
CHECKS = (15 * MINUTE_MS, 24 * 60 * MINUTE_MS)


@dataclasses.dataclass
class Rig:
    clock: FakeClock
    simulator: SimulatorServer
    store: WindowStore
    fetcher: WindowFetcher
    batches: str  # a pull subscription on the batch topic

    def plan(self, mintime: int, maxtime: int) -> WindowTask:
        task = WindowTask(SOURCE, mintime, maxtime)
        self.store.window(SOURCE, task.window_id).create(
            new_window(mintime, maxtime, now_ms(self.clock))
        )
        return task

    def published(self) -> list[RecordBatch]:
        subscriber = pubsub_subscriber()
        batches: list[Any] = []
        while True:
            response = subscriber.pull(
                request={"subscription": self.batches, "max_messages": 100}, timeout=10
            )
            if not response.received_messages:
                return sorted(batches, key=lambda b: b.page)
            batches += [decode(m.message.data) for m in response.received_messages]
            subscriber.acknowledge(
                request={
                    "subscription": self.batches,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )

    def doc(self, task: WindowTask) -> dict[str, Any]:
        return self.store.window(SOURCE, task.window_id).get().to_dict()

    def truth(self, mintime: int, maxtime: int) -> list[str]:
        """The ids of the records Duo serves now in ``[mintime, maxtime)``."""
        data = self.simulator.api.dataset
        now = self.clock.now()
        return [
            r.telephony_id
            for r in data.visible_from(0, data.visible_end(now), now)
            if mintime <= r.ts_ms < maxtime
        ]


@pytest.fixture
def make_rig(
    local_cloud, firestore_db: firestore.Client, pubsub_names: str
) -> Iterator[Callable[..., Rig]]:
    """A rig over ``records`` simulated records spread over the past ``days``."""
    started: list[SimulatorServer] = []

    def make(
        records: int,
        days: float,
        late_rate: float = 0,
        late_by_seconds: float = 0,
        **options: Any,
    ) -> Rig:
        spec = DatasetSpec(
            records=records,
            days=days,
            seed=11,
            late_rate=late_rate,
            late_by_seconds=late_by_seconds,
        )
        rig = _rig(local_cloud, firestore_db, pubsub_names, spec, ApiOptions(**options))
        started.append(rig.simulator)
        return rig

    yield make
    for simulator in started:
        simulator.stop()


def _rig(
    local_cloud, firestore_db, pubsub_names: str, spec: DatasetSpec, options: ApiOptions
) -> Rig:
    clock = FakeClock()
    dataset = Dataset(spec, clock.now())
    api = TelephonyApi(dataset, {IKEY: Secret(SKEY)}, clock, random.Random(1), options)
    simulator = SimulatorServer(api, port=0).start()
    project = local_cloud.project
    publisher_client = pubsub_publisher()
    windows = ensure_topic(publisher_client, project, f"windows-{pubsub_names}")
    batches = ensure_topic(publisher_client, project, f"batches-{pubsub_names}")
    subscriber = pubsub_subscriber()
    ensure_pull_subscription(subscriber, project, f"w-{pubsub_names}", windows)
    copies = ensure_pull_subscription(subscriber, project, f"b-{pubsub_names}", batches)
    endpoint = DuoEndpoint.parse(simulator.base_url)

    def duo_for(_source: str, _live: bool) -> DuoApi:
        signer = Signer(SigningConfig(IKEY, Secret(SKEY), endpoint.host), clock)
        return DuoApi(
            DuoHttp(endpoint),
            signer,
            limiter=TokenBucket(rate=1000, clock=clock),
            retry=RetryPolicy(max_attempts=4),
            clock=clock,
            rng=random.Random(2),
        )

    store = WindowStore(firestore_db, clock)
    fetcher = WindowFetcher(
        store,
        Publisher(publisher_client, project, f"windows-{pubsub_names}", f"batches-{pubsub_names}"),
        duo_for,
        clock,
        lease_seconds=LEASE_S,
        time_budget_seconds=3600,
        repair_checks=CHECKS,
    )
    return Rig(clock, simulator, store, fetcher, copies)


def test_a_window_whose_start_left_duos_retention_is_fetched_from_what_duo_keeps(make_rig):
    # Issue 8, case 2: the first window of a 180-day backlog, still being fetched when its
    # start crossed the retention edge. Duo refuses its mintime; before, every claim failed it
    # for ever. Now it is fetched from the edge, and the lost span is named.
    rig = make_rig(40_000, 180)
    planned_at = now_ms(rig.clock)
    task = rig.plan(planned_at - RETENTION_MS + HOUR_MS, planned_at - RETENTION_MS + 30 * HOUR_MS)
    rig.clock.advance(2 * 3600)  # two hours later: its first hour is past the edge
    edge = now_ms(rig.clock) - RETENTION_MS + FETCH_RETENTION_MARGIN_MS

    report = rig.fetcher.fetch(task)

    assert (report.outcome, report.error) == ("fetched", None)
    assert report.retention_lost_ms == (task.mintime, edge - 1)
    published = [r["telephony_id"] for b in rig.published() for r in b.records]
    assert published == rig.truth(edge, task.maxtime)
    assert published and len(published) < len(rig.truth(task.mintime, task.maxtime))
    doc = rig.doc(task)
    assert (doc["state"], doc["retention_lost_ms"]) == ("fetched", [task.mintime, edge - 1])


def test_a_reread_lands_only_what_is_missing_though_the_pages_fall_differently(make_rig):
    # Issue 8, case 3. The first read's page 1 never landed (dead-lettered). When its part of
    # the window is read again, Duo's pages start one record earlier (each repeats its token's
    # event), so a second read by page number would land some records twice and lose others.
    # Only the gap is read: from page 0's last token to the token page 2 was read from.
    rig = make_rig(2500, 2)
    now = now_ms(rig.clock)
    task = rig.plan(now - 3 * 24 * HOUR_MS, now - 180_000)
    expected = rig.truth(task.mintime, task.maxtime)
    assert 1500 < len(expected) < 3000  # three pages at least
    assert rig.fetcher.fetch(task).outcome == "fetched"
    first = rig.published()
    for batch in first:
        if batch.page != 1:
            rig.store.record_batch(batch, [f"object-{batch.page}"])
    rig.clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    assert rig.store.sweep(SOURCE).rereads == 1
    api = rig.simulator.api
    api.options = dataclasses.replace(api.options, repeat_boundary=True)

    report = rig.fetcher.fetch(task)

    assert report.outcome == "fetched"
    again = rig.published()
    assert min(b.page for b in again) == len(first)  # numbered on: no name is reused
    landed = [r["telephony_id"] for b in first if b.page != 1 for r in b.records]
    relanded = [r["telephony_id"] for b in again for r in b.records]
    assert sorted(relanded) == sorted(r["telephony_id"] for r in first[1].records)
    assert sorted(landed + relanded) == sorted(expected)
    assert report.requests <= 2 < len(first)


@pytest.mark.parametrize("fails", ["checkpoint", "publish"])
def test_a_fetch_dying_between_a_pages_checkpoint_and_its_publish_lands_each_record_once(
    make_rig, monkeypatch: pytest.MonkeyPatch, fails: str
):
    # The fetcher dies after reading page 2 (its checkpoint, or its publish, fails); by the
    # time the window is taken up again Duo has published late records inside page 2, so the
    # page read again holds other records. Before, a page was published before its
    # checkpoint: a second, different version went out under the same number, the writer kept
    # the first, and the records the late ones pushed into page 3 landed twice while the late
    # ones were lost. Now the number is taken first: a failed checkpoint publishes nothing,
    # and a failed publish leaves a gap, read again from its neighbours' tokens.
    rig = make_rig(12_000, 0.1, late_rate=0.05, late_by_seconds=600)
    now = now_ms(rig.clock)
    task = rig.plan(now - 40 * MINUTE_MS, now - 180_000)
    real = getattr(rig.fetcher, f"_{'store' if fails == 'checkpoint' else 'publisher'}")
    method = "checkpoint" if fails == "checkpoint" else "publish_batch"
    original = getattr(real, method)

    def dies_on_page_2(*args: Any, **kwargs: Any) -> Any:
        page = args[0].pages if fails == "checkpoint" else args[0].page
        if page == 2:
            raise ConnectionError(f"the fetcher died in its {fails} of page 2")
        return original(*args, **kwargs)

    monkeypatch.setattr(real, method, dies_on_page_2)
    with pytest.raises(ConnectionError):
        rig.fetcher.fetch(task)
    monkeypatch.setattr(real, method, original)
    landed: list[str] = []

    def land() -> list[RecordBatch]:
        # As the writer does: a batch whose marker exists is not written again.
        batches = rig.published()
        for batch in batches:
            if not rig.store.batch_landed(SOURCE, task.window_id, batch.page):
                rig.store.record_batch(batch, [batch.batch_id])
                landed.extend(r["telephony_id"] for r in batch.records)
        return batches

    first = land()
    rig.clock.advance(11 * 60)  # the late records inside page 2 are visible now
    truth = rig.truth(task.mintime, task.maxtime)
    assert rig.fetcher.fetch(task).outcome == "fetched"
    land()
    rig.clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    swept = rig.store.sweep(SOURCE)
    if fails == "publish":
        assert (swept.rereads, swept.completed) == (1, 0)
        report = rig.fetcher.fetch(task)
        # The gap only: its page, and one more for what the late records pushed out of it.
        assert (report.outcome, report.requests) == ("fetched", 2)
        land()
        swept = rig.store.sweep(SOURCE)
    assert (swept.rereads, swept.completed) == (0, 1)

    assert len(landed) == len(set(landed)), "a record landed twice"
    # Every record Duo holds up to page 2's end landed, the late ones in page 2 included;
    # later late records are the late-record check's to find.
    page_1_end = first[1].records[-1]["telephony_id"]
    late_in_page_2 = truth[truth.index(page_1_end) + 1 :][:1000]
    assert set(late_in_page_2) - set(landed) == set()
    assert set(landed) <= set(truth)


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_a_record_in_the_millisecond_two_windows_share_lands_once(make_rig, precision: str):
    # Issue 8, case 10: Duo's ts has microseconds. Windows planned a minute apart meet at a
    # millisecond b; a record at b ms + some microseconds must be in exactly one of them,
    # whether Duo compares maxtime with the microseconds ("us") or not ("ms").
    rig = make_rig(2000, 1, boundary_precision=precision)
    data = rig.simulator.api.dataset
    records = data.slice(0, data.visible_end(rig.clock.now()))
    on_the_boundary = next(r for r in records[100:] if r.ts_us % 1000)
    start, boundary = records[0].ts_ms, on_the_boundary.ts_ms
    # Two windows as the planner makes them, the second from the first's end (the planner
    # ends them on whole minutes; here, at the record's millisecond).
    first, second = (start, boundary), (boundary, boundary + 60_000)
    tasks = [rig.plan(*first), rig.plan(*second)]

    for task in tasks:
        assert rig.fetcher.fetch(task).outcome == "fetched"

    landed = [r["telephony_id"] for b in rig.published() for r in b.records]
    assert on_the_boundary.telephony_id in landed
    assert sorted(landed) == sorted(r.telephony_id for r in records if start <= r.ts_ms < second[1])


def test_records_duo_publishes_late_are_found_by_the_check_and_landed_once(make_rig):
    # Issue 8, case 1: a window read as soon as Duo serves it misses the records Duo publishes
    # ten minutes late. Its check, a quarter of an hour after its end, finds Duo counting more
    # than landed; the window is read again and only the late records land.
    rig = make_rig(2500, 0.25, late_rate=0.3, late_by_seconds=600)
    fetcher = rig.fetcher
    now = now_ms(rig.clock)
    task = rig.plan(now - 3 * 60 * MINUTE_MS, now - 2 * MINUTE_MS)
    on_time = rig.truth(task.mintime, task.maxtime)
    assert fetcher.fetch(task).outcome == "fetched"
    first = rig.published()
    for batch in first:
        rig.store.record_batch(batch, [f"object-{batch.page}"])
    assert rig.store.sweep(SOURCE, CHECKS).completed == 1
    landed = [r["telephony_id"] for b in first for r in b.records]
    assert sorted(landed) == sorted(on_time)

    rig.clock.advance(CHECK_BATCH_MS / 1000 + CHECKS[0] / 1000)
    everything = rig.truth(task.mintime, task.maxtime)
    late = set(everything) - set(on_time)
    assert len(late) > 10  # the late records are visible now
    report = fetcher.check(sent_check(rig, [task]))
    assert (report.outcome, report.landed, report.duo_count) == (
        "repairing",
        len(on_time),
        len(everything),
    )
    assert fetcher.fetch(task).outcome == "fetched"
    repaired = [r["telephony_id"] for b in rig.published() for r in b.records]
    assert sorted(repaired) == sorted(late)
    assert sorted(landed + repaired) == sorted(everything)


def sent_check(rig: Rig, tasks: list[WindowTask]) -> SpanCheck:
    """The first check of ``tasks`` (contiguous, finished), as a planner run sends it from
    the source's cursor, its watermark past them."""
    start, end = tasks[0].mintime, tasks[-1].maxtime
    cursor = new_cursor(start, start, CHECKS) | {"watermark_ms": end, "planned_until_ms": end}
    rig.store.source(SOURCE).set(cursor)
    (span,), _ = spans_due(cursor, now_ms(rig.clock), Checks(CHECKS[:1]))
    assert (span.level, span.maxtime) == (0, end)
    return SpanCheck(SOURCE, span.level, span.mintime, span.maxtime)


def land_all(rig: Rig) -> list[RecordBatch]:
    """Lands every batch published so far, as the writer does; returns them."""
    batches = rig.published()
    for batch in batches:
        rig.store.record_batch(batch, [batch.batch_id])
    return batches


def test_a_late_record_is_found_when_duo_compares_microseconds_and_the_last_ms_is_landed(
    make_rig,
):
    # Issue 16, item 2, against the simulator comparing maxtime with microseconds. The window
    # ends one millisecond after an on-time record at some microseconds past its millisecond,
    # and holds one late record, not yet published when the window was read. A count up to
    # maxtime - 1 leaves the on-time record out and equals what landed: before, the check
    # called that a match and the late record was never landed.
    rig = make_rig(20_000, 0.5, late_rate=0.05, late_by_seconds=600, boundary_precision="us")
    data = rig.simulator.api.dataset
    now = now_ms(rig.clock)
    records = data.slice(0, data.visible_end(rig.clock.now()))
    last = next(
        r
        for r in reversed(records)
        if r.ts_ms + 1 <= now - AVAILABILITY_DELAY_MS and r.ts_us % 1000 and not data.is_late(r)
    )
    late = next(r for r in reversed(records) if r.ts_ms < last.ts_ms and data.is_late(r))
    assert not data.visible(late, now * 1000)  # published after the window is read
    task = rig.plan(late.ts_ms, last.ts_ms + 1)
    assert [r for r in records if task.mintime <= r.ts_ms < task.maxtime and data.is_late(r)] == [
        late
    ]
    assert rig.fetcher.fetch(task).outcome == "fetched"
    landed = [r["telephony_id"] for b in land_all(rig) for r in b.records]
    assert last.telephony_id in landed and late.telephony_id not in landed
    assert rig.store.sweep(SOURCE, CHECKS).completed == 1

    rig.clock.advance(CHECK_BATCH_MS / 1000 + CHECKS[0] / 1000)
    report = rig.fetcher.check(sent_check(rig, [task]))

    assert (report.outcome, report.landed, report.duo_count) == (
        "repairing",
        len(landed),
        len(landed) + 1,
    )
    assert rig.fetcher.fetch(task).outcome == "fetched"
    assert [r["telephony_id"] for b in rig.published() for r in b.records] == [late.telephony_id]


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_a_check_reads_again_only_the_windows_holding_late_records(make_rig, precision: str):
    # Issue 16, item 10: twenty live windows of a minute, a few holding a record Duo published
    # late. Before, the check read all twenty again; now counts find the windows that differ,
    # and only those are read again, landing the late records once.
    rig = make_rig(30_000, 0.5, late_rate=0.01, late_by_seconds=600, boundary_precision=precision)
    data = rig.simulator.api.dataset
    now = now_ms(rig.clock)
    end = now - AVAILABILITY_DELAY_MS
    tasks = [rig.plan(end - (20 - n) * MINUTE_MS, end - (19 - n) * MINUTE_MS) for n in range(20)]
    for task in tasks:
        assert rig.fetcher.fetch(task).outcome == "fetched"
    land_all(rig)
    assert rig.store.sweep(SOURCE, CHECKS).completed == 20
    records = data.slice(0, data.visible_end(rig.clock.now()))
    unseen = [r for r in records if r.ts_ms >= tasks[0].mintime and not data.visible(r, now * 1000)]
    holding = [t for t in tasks if any(t.mintime <= r.ts_ms < t.maxtime for r in unseen)]
    assert 1 <= len(holding) <= 8

    rig.clock.advance(CHECK_BATCH_MS / 1000 + CHECKS[0] / 1000)
    report = rig.fetcher.check(sent_check(rig, tasks))
    assert report.windows == 20

    assert (report.outcome, report.rereads) == ("repairing", len(holding))
    assert report.requests == 2 + report.bisected < 20
    repaired = []
    for task in holding:
        assert rig.fetcher.fetch(task).outcome == "fetched"
        repaired += [r["telephony_id"] for b in rig.published() for r in b.records]
    assert sorted(repaired) == sorted(r.telephony_id for r in unseen if r.ts_ms < end)
    for task in tasks:
        if task not in holding:
            assert rig.doc(task)["state"] == "done"
    levels = rig.store.check_levels(SOURCE).doc[CHECK_LEVELS]
    assert levels[0]["until_ms"] == tasks[-1].maxtime
