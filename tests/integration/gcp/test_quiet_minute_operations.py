"""What an account-minute without records costs: the planner's minute for the account (the
registry's sync and due filter, and the account's run when it is due), the fetch of its empty
window and the landing of whatever that published, counted on the emulators as Google bills
them (``shared.gcp.operations``) and priced as bench/cost prices them."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from google.cloud import firestore, storage

from services.fetcher.window_fetch import WindowFetcher
from services.planner.discovery import RegistrySources
from services.planner.run import run_planner
from services.settings import PlannerSettings
from services.writer.landing import land_batch
from shared.gcp.bucket_writer import write_batch
from shared.gcp.cursor_store import CursorStore
from shared.gcp.operations import FIRESTORE_READS, FIRESTORE_WRITES, OPERATIONS
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from tests.bench_script import load
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeDuo, FakePublisher

pytestmark = pytest.mark.integration

QUIET = {None: {"items": [], "metadata": {"next_offset": None, "total_objects": 0}}}
CHECKS = (3_600_000,)
# Counted over whole QUIET_READ_EVERY cycles of 5 minutes.
MEASURED_MINUTES = 20
# Accounts alike, counted together and divided: the registry's read each minute is one query
# for the fleet, a read for each account it finds due (one when it finds none).
FLEET = 10
# Firestore reads and writes a minute, at most (issue 17's price goal is per account-month): of
# an account read every minute, as one with a record in the last hour is, whose window is
# empty: the planner's run (its registry entry, found due; the open and quarantined windows,
# the cursor and the windows from its watermark; the cursor written with the window planned,
# the one passed and the late-record checks it sends) and the fetch (its window read, its
# first page empty: one write makes it done, where a claim and a checkpoint wrote twice); and
# of a quiet one, read every QUIET_READ_EVERY (5 min) and skipped between: its entry in the
# minute it is due, the fleet's query for the due entries (one read when it finds none) shared
# by FLEET, the one run that passes the window planned before and plans the next (the cursor,
# the window passed and the one planned written at once) and records the wake, the fetch.
# Before the registry was read by its due entries and a window never claimed was done in one
# write, a busy minute was 8 reads and 5 writes, a quiet one 3.4 and 1.4; before the sweep
# counted the quarantined windows (an aggregation query each run), the planner found the due
# late-record checks by a query each run and the wake was recorded by the run that plans (a
# second run passed the window), 7 reads and 4 writes, 2.66 and 1.2.
BUSY_MINUTE = (5.0, 4.0)
QUIET_MINUTE = (1.08, 1.0)


def _quiet_minutes(
    db: firestore.Client,
    bucket: storage.Bucket,
    source: str,
    quiet_every_ms: int,
    skip: bool,
) -> tuple[dict[str, float], list[tuple]]:
    """A quiet account's minutes in its steady state, in a fleet of FLEET alike: the operations
    of one, on average, and what was published meanwhile. ``skip``: the planner records each
    source's wake and skips it until then, as deployed; otherwise it runs the source every
    minute."""
    clock = FakeClock()
    windows = WindowStore(db, clock)
    cursors = CursorStore(db, windows, clock)
    registry = SourceRegistry(db, clock, root=f"registry_{source}")
    events: list = []
    publisher = FakePublisher(events)
    fetcher = WindowFetcher(
        windows,
        publisher,
        lambda *_: FakeDuo(QUIET, events, clock),
        clock,
        lease_seconds=600,
        time_budget_seconds=240,
        repair_checks=CHECKS,
    )
    write = functools.partial(write_batch, bucket, prefix="duo", gzip=False)
    fleet = tuple(f"{source}-{account}" for account in range(FLEET))
    settings = PlannerSettings(
        "p", fleet, "windows", 0, 1, repair_checks_ms=CHECKS, quiet_read_every_ms=quiet_every_ms
    )
    listed = RegistrySources(settings, registry, lambda _: None, clock)

    def sources() -> list[str]:
        return listed().due

    def minute() -> None:
        """One minute, as the planner, the fetcher and the writer do it."""
        clock.advance(60)
        publisher.tasks.clear()
        publisher.checks.clear()
        wake = registry.wake if skip else None
        run_planner(settings, cursors, windows, publisher, clock, None, sources, wake)
        for task in publisher.tasks:
            fetcher.fetch(task)
        for check in publisher.checks:
            fetcher.check(check)
        for batch in publisher.batches:
            land_batch(batch, write, windows)
        publisher.batches.clear()

    minute()  # the cursor made
    clock.advance(2 * 3600)  # quiet for longer than an hour
    for _ in range(10):  # a few windows behind the watermark: the steady state
        minute()
    before, published = Counter(OPERATIONS.snapshot()), len(events)
    for _ in range(MEASURED_MINUTES):
        minute()
    counted = Counter(OPERATIONS.snapshot()) - before
    return {k: v / MEASURED_MINUTES / FLEET for k, v in counted.items()}, events[published:]


def _per_account_month(per_minute: dict[str, float]) -> float:
    """The Firestore reads and writes of a minute at list prices, for a month of minutes."""
    cost = load("cost")
    priced = {"firestore_read": FIRESTORE_READS, "firestore_write": FIRESTORE_WRITES}
    return sum(
        cost.cost(item, per_minute.get(counted, 0) * cost.MINUTES_PER_MONTH, free=False)
        for item, counted in priced.items()
    )


@pytest.mark.parametrize("quiet_every_ms", [60_000, 300_000])
def test_a_quiet_minute_publishes_no_batch_and_writes_no_object_or_marker(
    firestore_db: firestore.Client,
    gcs_bucket: storage.Bucket,
    capsys: pytest.CaptureFixture,
    quiet_every_ms: int,
) -> None:
    counted, events = _quiet_minutes(firestore_db, gcs_bucket, "quiet", quiet_every_ms, True)
    with capsys.disabled():
        messages = Counter(event[0] for event in events)
        every = f"QUIET_READ_EVERY={quiet_every_ms // 60_000}m"
        print(f"\n{every}: a quiet minute {counted}", messages)
    assert [e for e in events if e[0] == "publish_batch"] == []
    assert "storage_writes" not in counted
    windows = WindowStore(firestore_db, FakeClock()).windows("quiet-0")
    assert not any(list(ref.collection("batches").stream()) for ref in windows.list_documents())


def test_a_quiet_account_skipped_while_it_has_nothing_to_do_costs_less(
    firestore_db: firestore.Client, gcs_bucket: storage.Bucket, capsys: pytest.CaptureFixture
) -> None:
    every_run, _ = _quiet_minutes(firestore_db, gcs_bucket, "every-run", 300_000, False)
    skipping, _ = _quiet_minutes(firestore_db, gcs_bucket, "skipping", 300_000, True)
    with capsys.disabled():
        for name, counted in (("run every minute", every_run), ("skipped until due", skipping)):
            reads, writes = counted[FIRESTORE_READS], counted.get(FIRESTORE_WRITES, 0)
            dollars = _per_account_month(counted)
            print(
                f"\nQUIET_READ_EVERY=5m, {name}: {reads:.2f} reads and {writes:.2f} writes a "
                f"quiet minute, ${dollars:.3f} an account-month"
            )
    # The runs in which it has nothing to do cost their reads no more: 2 runs in 5 minutes.
    assert skipping[FIRESTORE_READS] < every_run[FIRESTORE_READS] - 2.5
    assert _per_account_month(skipping) < _per_account_month(every_run)


@pytest.mark.parametrize(
    ("quiet_every_ms", "most"),
    [(60_000, BUSY_MINUTE), (300_000, QUIET_MINUTE)],
    ids=["busy", "quiet"],
)
def test_an_account_minute_costs_no_more_firestore_operations_than_counted(
    firestore_db: firestore.Client,
    gcs_bucket: storage.Bucket,
    capsys: pytest.CaptureFixture,
    quiet_every_ms: int,
    most: tuple[float, float],
) -> None:
    counted, _ = _quiet_minutes(firestore_db, gcs_bucket, "counted", quiet_every_ms, True)
    reads, writes = counted[FIRESTORE_READS], counted.get(FIRESTORE_WRITES, 0)
    with capsys.disabled():
        print(
            f"\nread every {quiet_every_ms // 60_000} min: {reads:.2f} reads and {writes:.2f} "
            f"writes a minute, ${_per_account_month(counted):.3f} an account-month"
        )
    # A read or write more per minute is about $0.03 or $0.08 more per account-month.
    assert reads <= most[0] + 1e-9
    assert writes <= most[1] + 1e-9
