"""What a quiet account-minute costs: one planner run for the account, the fetch of its empty
window and the landing of whatever that published, counted on the emulators as Google bills
them (``shared.gcp.operations``)."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from google.cloud import firestore, storage

from services.fetcher.window_fetch import WindowFetcher
from services.writer.landing import land_batch
from shared.gcp.bucket_writer import write_batch
from shared.gcp.cursor_store import CursorStore
from shared.gcp.operations import OPERATIONS
from shared.gcp.window_store import WindowStore
from shared.pipeline.windows import QUARANTINED
from tests.fakes import FakeClock
from tests.unit.services.fakes import FakeDuo, FakePublisher

pytestmark = pytest.mark.integration

SOURCE = "quiet"
QUIET = {None: {"items": [], "metadata": {"next_offset": None}}}
CHECKS = (3_600_000,)


def _minute(clock, cursors, windows, fetcher, publisher, write, quiet_every_ms) -> None:
    """One minute of a quiet account, as the planner, the fetcher and the writer do it."""
    clock.advance(60)
    planned = cursors.plan(SOURCE, 0, 1, quiet_every_ms=quiet_every_ms)
    windows.sweep(SOURCE, CHECKS)
    windows.due_checks(SOURCE, limit=1000)
    cursors.advance(SOURCE)
    windows.count(SOURCE, QUARANTINED)
    publisher.publish_tasks(planned)
    for task in planned:
        fetcher.fetch(task)
    for batch in publisher.batches:
        land_batch(batch, write, windows)
    publisher.batches.clear()


@pytest.mark.parametrize("quiet_every_ms", [60_000, 300_000])
def test_a_quiet_minute_publishes_no_batch_and_writes_no_object_or_marker(
    firestore_db: firestore.Client,
    gcs_bucket: storage.Bucket,
    capsys: pytest.CaptureFixture,
    quiet_every_ms: int,
) -> None:
    clock = FakeClock()
    windows = WindowStore(firestore_db, clock)
    cursors = CursorStore(firestore_db, windows, clock)
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
    write = functools.partial(write_batch, gcs_bucket, prefix="duo", gzip=False)
    minute = functools.partial(
        _minute, clock, cursors, windows, fetcher, publisher, write, quiet_every_ms
    )
    minute()  # the cursor made
    clock.advance(2 * 3600)  # quiet for longer than an hour
    for _ in range(10):  # a few windows behind the watermark: the steady state
        minute()
    before, published = Counter(OPERATIONS.snapshot()), len(events)
    for _ in range(10):
        minute()
    counted = Counter(OPERATIONS.snapshot()) - before
    with capsys.disabled():
        messages = Counter(event[0] for event in events[published:])
        every = f"QUIET_READ_EVERY={quiet_every_ms // 60_000}m"
        print(f"\n{every}: a quiet minute { ({k: v / 10 for k, v in counted.items()}) }", messages)
    assert [e for e in events[published:] if e[0] == "publish_batch"] == []
    assert "storage_writes" not in counted
    assert not any(
        list(ref.collection("batches").stream()) for ref in windows.windows(SOURCE).list_documents()
    )
