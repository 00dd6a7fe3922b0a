"""What the fetcher's part of a quiet account costs in Firestore, counted on the emulator as
Google bills it (``shared.gcp.operations``): the fetch of an empty window, the shared rate
limiter's reservation for its one request included, and a late-record check of a span of
empty windows. Each code path's count is printed, for the figures in README's "What it costs"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from google.cloud import firestore

from services.fetcher.window_fetch import WindowFetcher
from shared.gcp.cursor_store import new_cursor
from shared.gcp.operations import FIRESTORE_READS, FIRESTORE_WRITES, OPERATIONS
from shared.gcp.rate_limiter import FirestoreRateLimiter, budget_limiter
from shared.gcp.window_store import WindowStore
from shared.pipeline import windows as rules
from shared.pipeline.messages import SpanCheck, WindowTask
from shared.pipeline.repair import CHECK_LEVELS
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeDuo, FakePublisher

pytestmark = pytest.mark.integration

T = TypeVar("T")
QUIET = {None: {"items": [], "metadata": {"next_offset": None, "total_objects": 0}}}
CHECKS = (900_000, 86_400_000)
WINDOWS = 6  # a quiet account's windows in a check's span (REPAIR_CHECK_BATCH, 30 min)
# Firestore reads and writes at most, the limiter's included: of an empty window's fetch (the
# window read, its one request's reservation, the window done; the limiter's document read once
# by this instance, which wrote it last), and of a check of a span of empty windows (the cursor
# and the windows read, the reservation, the cursor's check level moved on past them). Before
# the checks were kept on the cursor by span, each window was written as its check was sent
# and again as it was done: 6 reads and 7 writes.
EMPTY_FETCH = (1 + 1 / WINDOWS, 2)
EMPTY_CHECK = (WINDOWS + 1, 2)


class _Limited:
    """Duo's answers behind the shared limiter, one slot a request, as DuoApi takes them."""

    def __init__(self, duo: FakeDuo, limiter: FirestoreRateLimiter) -> None:
        self._duo = duo
        self._limiter = limiter
        self.stats = duo.stats

    def get(self, path: str, params: dict[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        self._limiter.acquire()
        return self._duo.get(path, params, parse)


def _counted(paths: Counter, name: str, call: Callable[..., T]) -> Callable[..., T]:
    def counting(*args: Any, **kwargs: Any) -> T:
        before = Counter(OPERATIONS.snapshot())
        try:
            return call(*args, **kwargs)
        finally:
            for kind, count in (Counter(OPERATIONS.snapshot()) - before).items():
                paths[f"{name} {kind.removeprefix('firestore_')}"] += count

    return counting


def test_an_empty_window_and_a_check_of_empty_windows_cost_no_more_than_counted(
    firestore_db: firestore.Client, capsys: pytest.CaptureFixture
) -> None:
    clock = FakeClock()
    store = WindowStore(firestore_db, clock)
    limiter = budget_limiter(firestore_db, "quiet", 2, clock=clock)
    paths: Counter = Counter()
    for name in ("read", "claim", "checkpoint", "done_unread", "renew", "release"):
        setattr(store, name, _counted(paths, name, getattr(store, name)))
    for name in ("check_levels", "span_windows", "landed_records", "reopen", "move_level"):
        setattr(store, name, _counted(paths, name, getattr(store, name)))
    limiter.acquire = _counted(paths, "limiter", limiter.acquire)  # type: ignore[method-assign]
    fetcher = WindowFetcher(
        store,
        FakePublisher([]),
        lambda *_: _Limited(FakeDuo(QUIET, [], clock), limiter),
        clock,
        lease_seconds=60,
        time_budget_seconds=240,
        repair_checks=CHECKS,
    )
    fetched, tasks = Counter(), []
    for _ in range(WINDOWS):
        clock.advance(300)  # a quiet account's window, planned as the planner plans it
        now = int(clock.now() * 1000)
        task = WindowTask("quiet", now - 420_000, now - 120_000)
        store.window(task.source, task.window_id).create(
            rules.new_window(task.mintime, task.maxtime, now)
        )
        before = Counter(OPERATIONS.snapshot())
        assert fetcher.fetch(task).outcome == "fetched"
        fetched += Counter(OPERATIONS.snapshot()) - before
        tasks.append(task)
    fetch_paths = {path: count / WINDOWS for path, count in paths.items()}
    paths.clear()
    clock.advance(3600)
    start, end = tasks[0].mintime, tasks[-1].maxtime
    cursor = new_cursor(start, start, CHECKS) | {"watermark_ms": end, "planned_until_ms": end}
    store.source("quiet").set(cursor)
    before = Counter(OPERATIONS.snapshot())
    report = fetcher.check(SpanCheck("quiet", 0, start, end))
    checked = Counter(OPERATIONS.snapshot()) - before
    with capsys.disabled():
        print(f"\nan empty window's fetch: {fetch_paths}")
        print(f"a check of {WINDOWS} empty windows: {dict(paths)}")
    assert (report.outcome, report.requests, report.windows) == ("matched", 1, WINDOWS)
    assert store.source("quiet").get().to_dict()[CHECK_LEVELS][0]["until_ms"] == end
    assert fetched[FIRESTORE_READS] / WINDOWS <= EMPTY_FETCH[0]
    assert fetched[FIRESTORE_WRITES] / WINDOWS <= EMPTY_FETCH[1]
    assert checked[FIRESTORE_READS] <= EMPTY_CHECK[0]
    assert checked[FIRESTORE_WRITES] <= EMPTY_CHECK[1]
