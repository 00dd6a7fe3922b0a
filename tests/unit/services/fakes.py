"""In-memory stand-ins for the services' collaborators: the window and cursor stores, the
publisher, Duo's telephony endpoint and the bucket writer.

The stores keep plain dict documents and apply the same pure rules as the Firestore ones
(``shared.pipeline.windows``, ``shared.pipeline.planning``), so a service under test meets the
real state machine. Every fake appends what it did to one shared ``events`` list, which is how
tests check the order of publishing, checkpoints and markers across collaborators.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.settings import DEFAULT_PREFIX
from shared.clock import now_ms
from shared.duo.api import CallStats
from shared.duo.paging import AVAILABILITY_DELAY_MS, DuoTotal
from shared.duo.records import record_time_ms
from shared.gcp.bucket_writer import WriteResult
from shared.gcp.cursor_store import LAST_RECORDS, Step, new_cursor, planned_windows
from shared.gcp.window_store import (
    FindUnmarked,
    SweepResult,
    WindowRead,
    done_unread_update,
    landed_or_found,
    sweep_window,
)
from shared.pipeline import progress, repair, sources, wake
from shared.pipeline import windows as rules
from shared.pipeline.messages import PlanTask, RecordBatch, SpanCheck, WindowTask, encode
from shared.pipeline.objects import encode_batch
from shared.pipeline.planning import (
    first_planned_until,
    past_retention,
    retention_gap,
)
from shared.pipeline.repair import Span
from shared.pipeline.windows import Claim
from tests.fakes import FakeClock

T = TypeVar("T")
Events = list[tuple[Any, ...]]


class FakeWindowStore:
    """WindowStore's methods over dict documents keyed by (source, window id)."""

    def __init__(self, clock: FakeClock, events: Events) -> None:
        self.clock = clock
        self.events = events
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.markers: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.failing_checkpoints: set[int] = set()  # pages whose checkpoint raises
        # The sources' cursors (FakeCursorStore's), which late-record checks move on.
        self.cursors: dict[str, dict[str, Any]] = {}
        self._owners = itertools.count(1)

    def add(self, task: WindowTask) -> None:
        """A window as the planner creates it."""
        self.docs[task.source, task.window_id] = rules.new_window(
            task.mintime, task.maxtime, now_ms(self.clock)
        )

    def doc(self, task: WindowTask) -> dict[str, Any]:
        return self.docs[task.source, task.window_id]

    def _snapshot(self) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """The windows as they are now: the planner's threads add other sources' windows while
        one source's are read (a copy is made at once, holding the GIL)."""
        return list(self.docs.items())

    def count(self, source: str, state: str) -> int:
        return sum(1 for (s, _), doc in self._snapshot() if s == source and doc["state"] == state)

    def read(self, source: str, window_id: str) -> WindowRead | None:
        # The version is a copy of the document: Firestore's update time moves only when a
        # write changes the document.
        doc = self.docs.get((source, window_id))
        if doc is None:
            return None
        return WindowRead(copy.deepcopy(doc), copy.deepcopy(doc), now_ms(self.clock))

    def done_unread(
        self,
        source: str,
        window_id: str,
        read: WindowRead,
        *,
        total: DuoTotal | None = None,
        checks: tuple[int, ...] = (),
    ) -> bool:
        update = done_unread_update(read.doc, source, window_id, now_ms(self.clock), total, checks)
        if not self._write_unchanged(source, window_id, read, update):
            return False
        self.events.append(("done_unread", window_id))
        return True

    def _write_unchanged(
        self, source: str, window_id: str, read: WindowRead, update: dict[str, Any]
    ) -> bool:
        doc = self.docs[source, window_id]
        if doc != read.version:
            return False
        doc.update(update)
        return True

    def claim(
        self, source: str, window_id: str, lease_seconds: float, read: WindowRead | None = None
    ) -> Claim | None:
        doc = self.docs.get((source, window_id))
        if doc is None:
            return None
        owner = f"owner-{next(self._owners)}"
        now, lease_ms = now_ms(self.clock), int(lease_seconds * 1000)
        taken, update = rules.claim(doc, source, window_id, owner, now, lease_ms)
        if read is not None:
            read_taken, read_update = rules.claim(
                read.doc, source, window_id, owner, now, lease_ms, read.at_ms
            )
            if read_update is None:
                return None
            if self._write_unchanged(source, window_id, read, read_update):
                taken, update = read_taken, None
        if update is not None:
            doc.update(update)
        if taken is not None:
            self.events.append(("claim", owner))
        return taken

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        doc = self.docs.get((claim.source, claim.window_id))
        if not rules.holds_lease(doc, claim):
            return False
        doc.update(rules.renew(now_ms(self.clock), int(lease_seconds * 1000)))
        self.events.append(("renew", claim.owner))
        return True

    def checkpoint(
        self,
        claim: Claim,
        next_offset: str | None,
        records: int,
        lease_seconds: float,
        *,
        lost_ms: tuple[int, int] | None = None,
        read: int = 0,
        total: DuoTotal | None = None,
        checks: tuple[int, ...] = (),
    ) -> Claim | None:
        if claim.pages in self.failing_checkpoints:
            raise ConnectionError("Firestore is unavailable")
        doc = self.docs.get((claim.source, claim.window_id))
        if not rules.holds_lease(doc, claim):
            return None
        now = now_ms(self.clock)
        after, update = rules.checkpoint(
            claim, doc, next_offset, records, now, int(lease_seconds * 1000), lost_ms, checks
        )
        doc.update(update | progress.after_page(doc, read, total, now))
        self.events.append(("checkpoint", claim.pages, next_offset))
        return after

    def release(self, claim: Claim, *, error: str | None = None, own: bool = True) -> None:
        doc = self.docs.get((claim.source, claim.window_id))
        if rules.holds_lease(doc, claim):
            doc.update(rules.release(claim, now_ms(self.clock), error, own=own))
            self.events.append(("release", error))

    def sweep(
        self,
        source: str,
        checks: tuple[int, ...] = (),
        landing_timeout_ms: int = rules.LANDING_TIMEOUT_MS,
        unmarked: FindUnmarked | None = None,
    ) -> SweepResult:
        # The bucket lookup and its waits are WindowStore's own (``unmarked``: a test's stand-in
        # for UnmarkedBatches.find).
        now = now_ms(self.clock)
        republish: list[WindowTask] = []
        completed = rereads = bucket_waits = 0
        swept = []
        quarantined = self.count(source, rules.QUARANTINED)
        for (doc_source, window_id), doc in self._snapshot():
            if doc_source != source or doc["state"] not in rules.OPEN_STATES:
                continue
            swept.append(dict(doc))
            step, waited = sweep_window(
                window_id,
                doc,
                now,
                lambda start, w=window_id: self.landed_batches(source, w, start),
                lambda start, w=window_id, d=doc: landed_or_found(
                    self, source, w, d, unmarked, now, start
                ),
                checks,
                landing_timeout_ms,
            )
            bucket_waits += waited
            if step is None:
                continue
            doc.update(step.update)
            completed += step.completed
            rereads += step.reread
            if step.republish:
                republish.append(WindowTask(source, doc["mintime"], doc["maxtime"]))
        return SweepResult(
            republish,
            completed,
            rereads,
            progress.measure(swept, now),
            bucket_waits,
            len(swept) - completed,
            quarantined,
        )

    def span_windows(self, source: str, span: Span, limit: int) -> list[tuple[str, WindowRead]]:
        found = sorted(
            (window_id, doc)
            for (doc_source, window_id), doc in self._snapshot()
            if doc_source == source and span.mintime <= doc["mintime"] < span.maxtime
        )
        reads = [(window_id, self.read(source, window_id)) for window_id, _ in found[:limit]]
        return [(window_id, read) for window_id, read in reads if read is not None]

    def landed_records(self, source: str, window_id: str) -> int:
        markers = self.markers.items()
        return sum(marker["records"] for key, marker in markers if key[:2] == (source, window_id))

    def reopen(self, source: str, window_id: str, level: int, read: WindowRead) -> bool:
        # On ``read`` or, the window changed since, on the window as it is now: the same.
        doc = self.docs.get((source, window_id))
        if doc is None or doc["state"] != rules.DONE:
            return False
        doc.update(rules.reopened(doc, level, now_ms(self.clock)))
        self.events.append(("reopened", window_id))
        return True

    def check_levels(self, source: str) -> WindowRead | None:
        cursor = self.cursors.get(source)
        if cursor is None:
            return None
        return WindowRead(copy.deepcopy(cursor), copy.deepcopy(cursor), now_ms(self.clock))

    def move_level(
        self,
        source: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        read: WindowRead,
    ) -> bool:
        # On ``read`` or, the cursor changed since, on the cursor as it is now: the same.
        update = change(self.cursors.get(source, {}))
        if update is None:
            return False
        self.cursors[source].update(update)
        self.events.append(("move_level", update))
        return True

    def superseded(self, batch: RecordBatch) -> bool:
        doc = self.docs.get((batch.source, batch.window_id)) or {}
        return rules.superseded(doc, batch.page)

    def batch_landed(self, source: str, window_id: str, page: int) -> bool:
        return (source, window_id, page) in self.markers

    def record_batch(self, batch: RecordBatch, objects: list[str]) -> None:
        # Like Firestore's create(): a repeat of the same marker changes nothing.
        self.markers.setdefault(
            (batch.source, batch.window_id, batch.page),
            rules.landed_marker(batch, objects, now_ms(self.clock)),
        )
        self.events.append(("marker", batch.page))

    def landed_batches(self, source: str, window_id: str, from_page: int = 0) -> int:
        return sum(
            1 for key in self.markers if key[:2] == (source, window_id) and key[2] >= from_page
        )

    def landed_offsets(
        self, source: str, window_id: str, from_page: int = 0
    ) -> dict[int, rules.PageOffsets | None]:
        return {
            key[2]: rules.marker_offsets(marker)
            for key, marker in self.markers.items()
            if key[:2] == (source, window_id) and key[2] >= from_page
        }

    def mark_found(self, source: str, window_id: str, page: int, marker: dict[str, Any]) -> None:
        self.markers.setdefault((source, window_id, page), marker)
        self.events.append(("marker_found", page))

    def landed_spans(self, source: str, window_id: str) -> FakeLandedSpans:
        self.events.append(("landed_spans", window_id))
        markers = [m for key, m in self.markers.items() if key[:2] == (source, window_id)]
        return FakeLandedSpans([(m, m["first_us"], m["last_us"]) for m in markers])


@dataclass
class FakeLandedSpans:
    """LandedSpans over the fake's markers (``(marker, first_us, last_us)``)."""

    spans: list[tuple[dict[str, Any], int | None, int | None]]

    def ids(self, first_us: int, last_us: int) -> set[str]:
        overlapping = rules.overlapping(self.spans, first_us, last_us)
        return {landed_id for marker in overlapping for landed_id in marker["ids"]}


class FakeCursorStore:
    """CursorStore's step and advance over dict cursors, windows in a FakeWindowStore."""

    def __init__(self, windows: FakeWindowStore, clock: FakeClock) -> None:
        self.windows = windows
        self.clock = clock
        self.cursors = windows.cursors

    def step(
        self,
        source: str,
        lookback_ms: int,
        parallelism: int,
        delay_ms: int = AVAILABILITY_DELAY_MS,
        quiet_every_ms: int = 0,
        shared_wait_ms: int = 0,
        checks: repair.Checks = repair.NO_CHECKS,
    ) -> Step:
        now = now_ms(self.clock)
        start = first_planned_until(now, lookback_ms)
        fresh = source not in self.cursors
        cursor = self.cursors.setdefault(source, new_cursor(start, now, checks.ages))
        if not fresh:
            self._advance(source, checks.ages)
        cursor.update(past_retention(cursor, retention_gap(cursor["planned_until_ms"], now), now))
        planned = [
            WindowTask(source, mintime, maxtime)
            for mintime, maxtime in planned_windows(
                cursor,
                now,
                parallelism=parallelism,
                delay_ms=delay_ms,
                quiet_every_ms=quiet_every_ms,
                shared_wait_ms=shared_wait_ms,
            )
        ]
        for task in planned:
            self.windows.add(task)
        if planned:
            cursor["planned_until_ms"] = planned[-1].maxtime
        spans, sent = repair.spans_due(cursor, now, checks)
        cursor.update(sent)
        return Step(planned, copy.deepcopy(cursor), spans)

    def advance(self, source: str) -> int:
        return self._advance(source, ())

    def _advance(self, source: str, checks: tuple[int, ...]) -> int:
        cursor = self.cursors.get(source)
        if cursor is None:
            return 0
        watermark = cursor["watermark_ms"]
        ahead = sorted(
            (
                doc
                for (s, _), doc in list(self.windows.docs.items())
                if s == source and doc["mintime"] >= watermark
            ),
            key=lambda doc: doc["mintime"],
        )
        moved, count = rules.watermark_run(watermark, ahead)
        now = now_ms(self.clock)
        for doc in ahead[:count]:
            doc.update(rules.passed(doc, now, checks))
        if (held := rules.last_records(ahead[:count])) is not None:
            cursor[LAST_RECORDS] = held
        cursor["watermark_ms"] = moved
        return moved


class FakePublisher:
    """Publisher's methods; what is published stays in ``batches`` and ``tasks``."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.batches: list[RecordBatch] = []
        self.tasks: list[WindowTask] = []
        self.checks: list[SpanCheck] = []
        self.plans: list[PlanTask] = []
        self.failing_pages: set[int] = set()  # batch pages whose publish raises
        self.failing_sources: set[str] = set()  # sources whose tasks cannot be published

    def publish_batch(self, batch: RecordBatch) -> str:
        if batch.page in self.failing_pages:
            raise TimeoutError("Pub/Sub did not acknowledge the publish in 60 s")
        self.batches.append(batch)
        self.events.append(("publish_batch", batch.page))
        return str(len(self.batches))

    def publish_check(self, check: SpanCheck) -> str:
        self.checks.append(check)
        self.events.append(("publish_check", check.level, check.mintime, check.maxtime))
        return str(len(self.checks))

    def publish_plans(self, plans: Iterable[PlanTask]) -> int:
        plans = list(plans)
        self.plans.extend(plans)
        self.events.append(("publish_plans", plans))
        return len(plans)

    def publish_tasks(self, tasks: Iterable[WindowTask]) -> int:
        tasks = list(tasks)
        if any(task.source in self.failing_sources for task in tasks):
            raise PermissionError("the window topic refused the publish")
        self.tasks.extend(tasks)
        self.events.append(("publish_tasks", tasks))
        return len(tasks)


def scheduler_call(client: Any, publisher: FakePublisher) -> int:
    """Cloud Scheduler's call of the planner's /run, then Pub/Sub's push of each plan task it
    published to /plan; /run's status code (each push must be acknowledged)."""
    sent = len(publisher.plans)
    status = client.post("/run").status_code
    for plan in publisher.plans[sent:]:
        data = base64.b64encode(encode(plan)).decode()
        response = client.post("/plan", json={"message": {"data": data, "messageId": "plan"}})
        assert response.status_code == 204
    return status


class FakeDuo:
    """Duo's telephony endpoint, scripted: the answer to each paging token (None for the first
    page) is a response ``{"items": [...], "metadata": {...}}``, given to the caller's ``parse``
    as DuoApi does, or an error, raised as DuoApi raises it once its retries are spent. Each
    call takes ``seconds_per_call`` of the clock, counts the 429s and 5xx it waited through in
    ``stats`` as DuoApi does, and then runs ``during_call``, if any."""

    def __init__(
        self,
        answers: dict[str | None, dict[str, Any] | Exception],
        events: Events,
        clock: FakeClock,
        *,
        seconds_per_call: float = 0.0,
        rate_limited_per_call: int = 0,
        transient_per_call: int = 0,
        during_call: Callable[[], None] | None = None,
    ) -> None:
        self.answers = answers
        self.events = events
        self.clock = clock
        self.seconds_per_call = seconds_per_call
        self.rate_limited_per_call = rate_limited_per_call
        self.transient_per_call = transient_per_call
        self.during_call = during_call
        self.stats = CallStats()
        self.params: list[dict[str, str]] = []  # every request's parameters

    def get(self, path: str, params: dict[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        token = params.get("next_offset")
        self.params.append(dict(params))
        self.stats.requests += 1 + self.rate_limited_per_call + self.transient_per_call
        self.stats.rate_limited += self.rate_limited_per_call
        self.stats.transient_failures += self.transient_per_call
        self.events.append(("duo", token))
        self.clock.advance(self.seconds_per_call)
        if self.during_call is not None:
            self.during_call()
        answer = self.answers[token]
        if isinstance(answer, Exception):
            raise answer
        return parse(answer)


def telephony_item(telephony_id: str, ms: int) -> dict[str, Any]:
    """One telephony record the way Duo returns it, at ``ms``."""
    ts = datetime.fromtimestamp(ms / 1000, UTC)
    return {
        "context": "authentication",
        "credits": 1,
        "phone": "+12125550100",
        "telephony_id": telephony_id,
        "ts": ts.isoformat(),
        "type": "sms",
    }


def paged(pages: list[list[dict[str, Any]]]) -> dict[str | None, dict[str, Any]]:
    """Duo's answers for a window served in ``pages``: each page's token is
    ``"<ms>,<telephony_id>"`` of its last item, the last page has none."""
    answers: dict[str | None, dict[str, Any]] = {}
    token = None
    for number, items in enumerate(pages):
        last = number == len(pages) - 1
        following = None if last else f"{record_time_ms(items[-1])},{items[-1]['telephony_id']}"
        answers[token] = {"items": items, "metadata": {"next_offset": following}}
        token = following
    return answers


class FakeWrite:
    """``write_batch`` bound to a bucket: records each write, can fail or find a conflict.
    Its objects are the ones the writer would upload (``encode_batch``: names and bytes)."""

    def __init__(
        self,
        events: Events,
        *,
        error: Exception | None = None,
        conflicting: int = 0,
        prefix: str = DEFAULT_PREFIX,
    ):
        self.events = events
        self.error = error
        self.conflicting = conflicting
        self.prefix = prefix
        self.written: list[RecordBatch] = []

    def __call__(self, batch: RecordBatch) -> WriteResult:
        if self.error is not None:
            raise self.error
        self.written.append(batch)
        self.events.append(("write", batch.page))
        objects = encode_batch(batch, self.prefix, gzip=False)
        return WriteResult(
            object_names=tuple(obj.name for obj in objects),
            records_written=sum(obj.record_count for obj in objects),
            bytes_written=sum(len(obj.data) for obj in objects),
            already_present=0,
            conflicting=self.conflicting,
        )


class CountingDuo:
    """Duo's counts over a fixed set of record times (µs): ``total_objects`` of the records in
    ``[mintime, maxtime]``, ``maxtime`` compared with its whole millisecond (``"ms"``) or as
    ``maxtime.000000`` (``"us"``), the two ways Duo may compare it, as the simulator's
    ``boundary_precision``."""

    def __init__(self, times_us: Iterable[int], precision: str = "ms") -> None:
        self.times_us = sorted(times_us)
        self.precision = precision
        self.stats = CallStats()
        self.params: list[dict[str, str]] = []  # every request's parameters

    def get(self, path: str, params: dict[str, str], parse: Callable[[dict[str, Any]], T]) -> T:
        self.params.append(dict(params))
        self.stats.requests += 1
        first = int(params["mintime"]) * 1000
        last = int(params["maxtime"]) * 1000 + (999 if self.precision == "ms" else 0)
        total = sum(1 for at in self.times_us if first <= at <= last)
        return parse({"items": [], "metadata": {"total_objects": total}})


class FakeSourceRegistry:
    """SourceRegistry's methods over dict entries, applying the same reconciliation."""

    def __init__(self, clock: FakeClock, refresh_ms: int = sources.DEFAULT_REFRESH_MS) -> None:
        self.clock = clock
        self.refresh_ms = refresh_ms
        self.docs: dict[str, dict[str, Any]] = {}
        self.parent_docs: dict[str, dict[str, Any]] = {}

    def entries(self) -> dict[str, dict[str, Any]]:
        return {source: dict(doc) for source, doc in self.docs.items()}

    def entry(self, source: str) -> dict[str, Any] | None:
        doc = self.docs.get(source)
        return None if doc is None else dict(doc)

    def due(self, now_ms: int) -> dict[str, dict[str, Any]]:
        return {
            source: dict(doc)
            for source, doc in self.docs.items()
            if doc.get(wake.WAKE_AT) is not None and doc[wake.WAKE_AT] <= now_ms
        }

    def parent(self, parent: str) -> dict[str, Any] | None:
        return self.parent_docs.get(parent)

    def parents(self) -> dict[str, dict[str, Any]]:
        return dict(self.parent_docs)

    def sync(
        self,
        configured: Iterable[sources.SourceSpec],
        discovery: sources.Discovery | None,
        parent: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        now = now_ms(self.clock)
        updates = sources.reconcile(configured, discovery, self.docs, now, self.refresh_ms, parent)
        for source, update in updates.items():
            self.docs.setdefault(source, {}).update(update)
        if discovery is not None:
            self.parent_docs[discovery.parent] = sources.parent_entry(discovery, now)
        return self.entries()

    def trouble(self, source: str, update: dict[str, Any]) -> bool:
        if source not in self.docs:
            return False
        self.docs[source].update(update)
        return True

    def wake(self, source: str, wake_at_ms: int | None) -> None:
        if source in self.docs:
            self.docs[source][wake.WAKE_AT] = wake.EVERY_RUN if wake_at_ms is None else wake_at_ms

    def counts(self) -> dict[str, int]:
        return dict(Counter(doc.get("state") for doc in self.docs.values()))
