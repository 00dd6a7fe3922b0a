"""A quiet source's planner runs are skipped until it can plan: the same windows are planned at
the same minutes as when every run plans it, for a fraction of the runs."""

from __future__ import annotations

from services.planner.discovery import planned_sources
from services.planner.run import run_planner
from services.settings import PlannerSettings
from shared.clock import now_ms
from shared.pipeline.windows import DONE
from tests.fakes import FakeClock
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
)

SOURCE = "acme"
MINUTE = 60_000
# Cloud Scheduler's calls, a second and a half after each whole minute.
START_S = 1_800_000_001.5


def _three_hours(
    skip: bool, record_minutes: set[int]
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The planner called every minute for three hours, each window fetched at once holding
    the records of ``record_minutes`` (minutes since the start); the windows planned, as
    (minute of the call, mintime, maxtime), and the minutes the source was run."""
    clock = FakeClock(START_S)
    start = now_ms(clock)
    windows = FakeWindowStore(clock, [])
    cursors, publisher = FakeCursorStore(windows, clock), FakePublisher([])
    registry = FakeSourceRegistry(clock)
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)
    planned, runs = [], []
    for minute in range(1, 181):
        clock.advance(60)
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
        for doc in windows.docs.values():
            if doc["state"] == "planned":
                held = {m for m in record_minutes if doc["mintime"] <= start + m * MINUTE}
                held = {m for m in held if start + m * MINUTE < doc["maxtime"]}
                doc.update(state=DONE, records=len(held))
                planned.append((minute, doc["mintime"], doc["maxtime"]))
    return planned, runs


def test_a_quiet_sources_skipped_runs_would_have_planned_nothing():
    # Quiet for two hours, a lone record, then ten busy minutes, then quiet again.
    records = {125, *range(140, 150)}
    every_run, all_runs = _three_hours(False, records)
    skipping, runs = _three_hours(True, records)
    assert skipping == every_run
    assert len(all_runs) == 180
    # Quiet an hour after its start: a run to plan its 5-minute window, one to pass it.
    quiet = [minute for minute in runs if 65 <= minute < 125]
    assert len(quiet) == 2 * 60 // 5
    # Busy: every minute, as before.
    assert set(range(135, 181)) <= set(runs)


def test_a_record_after_a_quiet_hour_is_planned_within_eight_minutes_and_busy_ones_each_minute():
    start = now_ms(FakeClock(START_S))
    planned, _ = _three_hours(True, {125, *range(140, 150)})
    for record in (125, *range(140, 150)):
        at = start + record * MINUTE
        [called] = [m for m, mintime, maxtime in planned if mintime <= at < maxtime]
        assert called - record <= (8 if record == 125 else 4)


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
    assert minute(fetched=True) == [SOURCE]  # passed, its late-record check sent
    assert minute(fetched=True) == [SOURCE]  # nothing left to do
    assert registry.entry(SOURCE)["wake_at_ms"] > now_ms(clock)
    assert minute(fetched=True) == []
    # A late-record check found more in a window behind the watermark: read again, for long.
    reread = next(iter(windows.docs.values()))
    reread.update(state="fetching", lease_until_ms=now_ms(clock) + 3_600_000)
    ran = [minute(fetched=True) for _ in range(10)]
    assert ran[-5:] == [[SOURCE]] * 5  # woken within 5 minutes, then run while it is open
