"""One planner run on fakes: the late-record checks it sends follow REPAIR_CHECK_BATCH."""

from __future__ import annotations

import pytest

from services.planner.run import run_planner
from services.settings import PlannerSettings
from shared.clock import now_ms
from shared.gcp.cursor_store import new_cursor
from shared.pipeline.messages import SpanCheck, WindowTask
from shared.pipeline.progress import Progress
from shared.pipeline.repair import CHECK_BATCH_MS
from shared.pipeline.windows import DONE
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeCursorStore, FakePublisher, FakeWindowStore

SOURCE = "emea"
MINUTE = 60_000


@pytest.mark.parametrize(
    ("batch_ms", "sent"),
    [
        (2 * MINUTE, 1),  # waited 5 minutes: past a batch of 2
        (CHECK_BATCH_MS, 0),  # the default half hour: waits on for neighbours
    ],
)
def test_a_lone_windows_check_waits_for_the_configured_batch(batch_ms: int, sent: int) -> None:
    clock = FakeClock()
    events: list[tuple[object, ...]] = []
    windows = FakeWindowStore(clock, events)
    publisher = FakePublisher(events)
    now = now_ms(clock)
    # One finished window, a minute long, behind the watermark, whose first check fell due 5
    # minutes ago.
    task = WindowTask(SOURCE, now - 20 * MINUTE, now - 19 * MINUTE)
    windows.add(task)
    windows.doc(task).update(state=DONE)
    windows.cursors[SOURCE] = new_cursor(task.mintime, now, (14 * MINUTE,)) | {
        "watermark_ms": task.maxtime,
        "planned_until_ms": task.maxtime,
    }
    settings = PlannerSettings(
        "p",
        (SOURCE,),
        "windows",
        3600,
        2,
        repair_checks_ms=(14 * MINUTE,),
        repair_batch_ms=batch_ms,
    )

    [result] = run_planner(settings, FakeCursorStore(windows, clock), windows, publisher, clock)

    assert result["checks_sent"] == sent
    # Up to what is due: the minute the next window ends is not, yet.
    span = SpanCheck(SOURCE, 0, task.mintime, min(task.maxtime, now - 14 * MINUTE))
    assert publisher.checks == [span] * sent
    # Sent once: the next run waits for its check, or for its resend.
    clock.advance(60)
    run_planner(settings, FakeCursorStore(windows, clock), windows, publisher, clock)
    assert len(publisher.checks) == sent


def test_the_run_logs_the_backfills_progress_against_duos_count():
    clock = FakeClock()
    windows = FakeWindowStore(clock, [])
    now = now_ms(clock)
    task = WindowTask(SOURCE, now - 24 * 60 * MINUTE, now - 2 * MINUTE)
    windows.add(task)
    # The backlog, being read: 12,000 of Duo's 20,000, 2,000 of them in the last two minutes.
    windows.doc(task).update(
        state="fetching",
        lease_until_ms=now + MINUTE,
        pages=12,
        duo_total=20_000,
        duo_total_exact=True,
        read_records=12_000,
        read_at_ms=now,
        rate_from_ms=now - 2 * MINUTE,
        rate_from_records=10_000,
    )
    settings = PlannerSettings("p", (SOURCE,), "windows", 3600, 2)

    [result] = run_planner(
        settings, FakeCursorStore(windows, clock), windows, FakePublisher([]), clock
    )

    # 1,000 a minute, 8,000 to go (the fields themselves: tests/unit/pipeline/test_progress.py).
    expected = Progress(records=12_000, total=20_000, exact=True, per_minute=1000.0)
    assert {name: value for name, value in result.items() if name.startswith("progress")} == (
        expected.fields()
    )


def _minutes_planned(settings, cursors, windows, publisher, clock, records=0) -> list[int]:
    """Runs the planner a minute apart for 10 minutes, each window fetched at once holding
    ``records``; the lengths of the windows planned, in minutes."""
    planned = []
    for _ in range(10):
        clock.advance(60)
        run_planner(settings, cursors, windows, publisher, clock)
        for doc in windows.docs.values():
            if doc["state"] == "planned":
                doc.update(state=DONE, records=records)
                planned.append((doc["maxtime"] - doc["mintime"]) // MINUTE)
    return planned


def test_a_source_quiet_for_an_hour_is_read_every_five_minutes_until_a_record_comes():
    clock = FakeClock()
    windows = FakeWindowStore(clock, [])
    cursors, publisher = FakeCursorStore(windows, clock), FakePublisher([])
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)
    clock.advance(60)
    run_planner(settings, cursors, windows, publisher, clock)  # the cursor made
    assert set(_minutes_planned(settings, cursors, windows, publisher, clock)) == {1}
    clock.advance(3600)  # an hour with nothing: a window a minute would cost 60
    assert _minutes_planned(settings, cursors, windows, publisher, clock) == [61, 5]
    # Its first records: once the watermark passes them (the next run, which then plans), a
    # window a minute again, from where the last one ended.
    assert _minutes_planned(settings, cursors, windows, publisher, clock, records=1) == [
        5,
        *[1] * 9,
    ]


def _quiet_for_an_hour(settings, events) -> tuple[FakeClock, FakeWindowStore, FakeCursorStore]:
    """A source with no record for over an hour, its 5-minute windows read and passed."""
    clock = FakeClock()
    windows = FakeWindowStore(clock, events)
    cursors = FakeCursorStore(windows, clock)
    clock.advance(60)
    run_planner(settings, cursors, windows, FakePublisher([]), clock)  # the cursor made
    clock.advance(3600)
    assert _minutes_planned(settings, cursors, windows, FakePublisher([]), clock)[1:] == [5]
    return clock, windows, cursors


@pytest.mark.parametrize("other_open", [False, True])
def test_the_run_planning_a_quiet_window_records_the_wake_before_sending_it(other_open: bool):
    # The next run due is the one that can plan the next window, and passes this one: no run
    # in between to pass it. A fetcher finding records in it wakes the source after the write.
    settings = PlannerSettings("p", (SOURCE,), "windows", 0, 1)
    events: list[tuple[object, ...]] = []
    clock, windows, cursors = _quiet_for_an_hour(settings, events)
    if other_open:  # a window behind the watermark read again after a late-record check
        reread = WindowTask(SOURCE, now_ms(clock) - 3 * 3600_000, now_ms(clock) - 3 * 3599_000)
        windows.add(reread)
        windows.doc(reread).update(state="fetching", lease_until_ms=now_ms(clock) + 3600_000)
    publisher = FakePublisher(events)

    def record_wake(source: str, wake_at_ms: int) -> None:
        events.append(("wake", source, wake_at_ms))

    while not publisher.tasks:
        events.clear()
        clock.advance(60)
        [result] = run_planner(
            settings, cursors, windows, publisher, clock, record_wake=record_wake
        )
    [task] = publisher.tasks
    if other_open:  # due every run while it is open
        assert [e for e in events if e[0] == "wake"] == []
        assert "wake_at_ms" not in result
        return
    # When its next 5-minute window is published, 2 minutes after its end.
    wake = task.maxtime + 5 * MINUTE + 2 * MINUTE
    assert [e for e in events if e[0] == "wake" or (e[0] == "publish_tasks" and e[1])] == [
        ("wake", SOURCE, wake),
        ("publish_tasks", [task]),
    ]
    assert result["wake_at_ms"] == wake
