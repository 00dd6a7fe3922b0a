"""One planner run on fakes: the late-record checks it sends follow REPAIR_CHECK_BATCH."""

from __future__ import annotations

import pytest

from services.planner.run import run_planner
from services.settings import PlannerSettings
from shared.clock import now_ms
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
    # One finished window, a minute long, whose first check fell due 5 minutes ago.
    task = WindowTask(SOURCE, now - 120 * MINUTE, now - 119 * MINUTE)
    windows.add(task)
    windows.doc(task).update(state=DONE, check_level=0, next_check_at_ms=now - 5 * MINUTE)
    settings = PlannerSettings("p", (SOURCE,), "windows", 3600, 2, repair_batch_ms=batch_ms)

    [result] = run_planner(settings, FakeCursorStore(windows, clock), windows, publisher, clock)

    assert result["checks_sent"] == sent
    assert publisher.checks == [SpanCheck(SOURCE, 0, (task.window_id,))] * sent


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
