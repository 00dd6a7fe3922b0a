"""A quiet source's planner runs are skipped until it can plan: the same windows are planned at
the same minutes as when every run plans it, for a fraction of the runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from services.fetcher.window_fetch import WindowFetcher
from services.planner.discovery import planned_sources
from services.planner.run import run_planner
from services.settings import PlannerSettings
from shared.clock import now_ms
from shared.duo.api import CallStats
from shared.pipeline.wake import SETTLED_RUN_EVERY_MAX_MS
from shared.pipeline.windows import DONE
from tests.fakes import FakeClock
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
    telephony_item,
)

T = TypeVar("T")

SOURCE = "acme"
MINUTE = 60_000
# Cloud Scheduler's calls, a second and a half after each whole minute.
START_S = 1_800_000_001.5


class RecordsDuo:
    """Duo's telephony endpoint holding one record at each of ``times_ms``: a window's in one
    page."""

    def __init__(self, times_ms: Iterable[int]) -> None:
        self.times = sorted(times_ms)
        self.stats = CallStats()

    def get(self, path: str, params: dict[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        self.stats.requests += 1
        first, last = int(params["mintime"]), int(params["maxtime"])
        items = [telephony_item(f"t{ms}", ms) for ms in self.times if first <= ms <= last]
        metadata = {"next_offset": None, "total_objects": len(items)}  # its count, exact
        return parse({"items": items, "metadata": metadata})


def _three_hours(
    skip: bool, record_minutes: set[int]
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The planner called every minute for three hours, each window it sends fetched at once
    from a Duo holding the records of ``record_minutes`` (minutes since the start) and its
    batches landed; the windows planned, as (minute of the call, mintime, maxtime), and the
    minutes the source was run. The fetcher sets a source back to every run as deployed, and
    does the late-record checks the planner sends."""
    clock = FakeClock(START_S)
    start = now_ms(clock)
    windows = FakeWindowStore(clock, [])
    cursors, publisher = FakeCursorStore(windows, clock), FakePublisher([])
    registry = FakeSourceRegistry(clock)
    duo = RecordsDuo(start + minute * MINUTE for minute in record_minutes)
    fetcher = WindowFetcher(
        windows,
        publisher,
        lambda source, live: duo,
        clock,
        lease_seconds=600,
        time_budget_seconds=240,
        record_wake=registry.wake,
    )
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)
    planned, runs = [], []
    for minute in range(1, 181):
        clock.advance(60)
        before, sent, checks = set(windows.docs), len(publisher.tasks), len(publisher.checks)
        results = run_planner(
            settings,
            cursors,
            windows,
            publisher,
            clock,
            sources=lambda: planned_sources(settings, registry, lambda _: None, clock).due,
            record_wake=registry.wake if skip else None,
        )
        runs += [minute] * len(results)
        for key in sorted(set(windows.docs) - before):
            planned.append((minute, windows.docs[key]["mintime"], windows.docs[key]["maxtime"]))
        for task in publisher.tasks[sent:]:
            fetcher.fetch(task)
        for check in publisher.checks[checks:]:
            fetcher.check(check)
        for batch in publisher.batches:
            windows.record_batch(batch, [batch.batch_id])
        publisher.batches.clear()
    return planned, runs


def test_a_quiet_sources_skipped_runs_would_have_planned_nothing():
    # Quiet for two hours, a lone record, then ten busy minutes, then quiet again.
    records = {125, *range(140, 150)}
    every_run, all_runs = _three_hours(False, records)
    skipping, runs = _three_hours(True, records)
    assert skipping == every_run
    assert len(all_runs) == 180
    # Quiet an hour after its start: one run in 5 minutes, which passes the window it planned
    # the time before and plans the next (the run passing it alone is skipped too).
    quiet = [minute for minute in runs if 65 <= minute < 125]
    assert len(quiet) == 60 // 5
    # Busy: every minute, as before.
    assert set(range(135, 181)) <= set(runs)


def test_a_record_after_a_quiet_hour_is_planned_within_eight_minutes_and_busy_ones_each_minute():
    start = now_ms(FakeClock(START_S))
    planned, _ = _three_hours(True, {125, *range(140, 150)})
    for record in (125, *range(140, 150)):
        at = start + record * MINUTE
        [called] = [m for m, mintime, maxtime in planned if mintime <= at < maxtime]
        assert called - record <= (8 if record == 125 else 4)


def test_a_quiet_window_holding_records_brings_its_source_back_to_every_run():
    # Quiet for two hours, then a record every minute. The quiet window holding the first ones
    # is planned on its time; the records after it each within 4 minutes, as an active
    # account's: the fetcher wakes the source, rather than it sleeping to its next quiet window.
    start = now_ms(FakeClock(START_S))
    records = set(range(125, 140))
    planned, runs = _three_hours(True, records)
    called = {}
    for record in records:
        at = start + record * MINUTE
        [called[record]] = [m for m, mintime, maxtime in planned if mintime <= at < maxtime]
    first = called[125]
    assert first - 125 <= 8
    later = [record for record in records if called[record] > first]
    assert later and all(called[record] - record <= 4 for record in later)
    assert set(range(first, 150)) <= set(runs)


def test_a_source_with_a_window_open_or_quarantined_is_run_every_minute():
    clock = FakeClock(START_S)
    windows = FakeWindowStore(clock, [])
    cursors, publisher = FakeCursorStore(windows, clock), FakePublisher([])
    registry = FakeSourceRegistry(clock)
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)

    def sources() -> list[str]:
        return planned_sources(settings, registry, lambda _: None, clock).due

    def minute(fetched: bool = False) -> list[str]:
        clock.advance(60)
        results = run_planner(
            settings, cursors, windows, publisher, clock, None, sources, registry.wake
        )
        for doc in windows.docs.values():
            if fetched and doc["state"] == "planned":
                doc.update(state=DONE, records=0)
        return [result["source"] for result in results]

    minute()  # the cursor made
    clock.advance(2 * 3600)  # quiet for longer than an hour
    assert minute() == [SOURCE]  # plans its quiet window, which no fetcher reads
    assert all(minute() == [SOURCE] for _ in range(10))  # open: sent again, never skipped
    for doc in windows.docs.values():
        doc.update(state="quarantined")
    assert all(minute() == [SOURCE] for _ in range(10))  # held back: logged every run
    for doc in windows.docs.values():
        doc.update(state=DONE, records=0)  # an operator's retry, read since
    assert minute(fetched=True) == [SOURCE]  # passed: nothing left to do but its check
    assert registry.entry(SOURCE)["wake_at_ms"] > now_ms(clock)
    assert minute(fetched=True) == []
    # A late-record check found more in a window behind the watermark: read again, for long.
    reread = next(iter(windows.docs.values()))
    reread.update(state="fetching", lease_until_ms=now_ms(clock) + 3_600_000)
    ran = [minute(fetched=True) for _ in range(10)]
    assert ran[-5:] == [[SOURCE]] * 5  # woken within 5 minutes, then run while it is open


def test_a_quiet_window_left_unread_is_sent_again_within_five_minutes_then_every_run():
    # Asleep from the run that planned it: a lost task or a failed read waits for the wake at
    # most, within SETTLED_RUN_EVERY_MAX_MS, and the source runs every minute while it is open.
    clock = FakeClock(START_S)
    windows = FakeWindowStore(clock, [])
    cursors, publisher = FakeCursorStore(windows, clock), FakePublisher([])
    registry = FakeSourceRegistry(clock)
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)
    ran = []
    for minute in range(1, 120):
        clock.advance(60)
        sent = len(publisher.tasks)
        results = run_planner(
            settings,
            cursors,
            windows,
            publisher,
            clock,
            sources=lambda: planned_sources(settings, registry, lambda _: None, clock).due,
            record_wake=registry.wake,
        )
        ran += [minute] * len(results)
        for task in publisher.tasks[sent:]:
            if minute < 100:  # then nothing is read any more
                windows.doc(task).update(state=DONE, records=0)
    after = [minute for minute in ran if minute >= 100]
    assert after[0] - 100 < SETTLED_RUN_EVERY_MAX_MS // MINUTE
    assert after[-10:] == list(range(110, 120))
