"""The fetcher's work on one window task: claim, page, checkpoint, publish, hand on.

Each page is checkpointed before its batch is published, so a page number (and the object name
it gives) belongs to one page only, whatever Duo answers when a page is read again: a fetcher
that dies between the two leaves a batch that never lands, and the planner reads that gap again
from the tokens its landed neighbours were read with, landing only what is missing. The lease
is renewed while the fetch runs, so only a dead fetcher lets it run out.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Protocol

from shared.clock import Clock, now_ms
from shared.duo.api import CountedReads
from shared.duo.errors import DuoError
from shared.duo.paging import Page, WindowError, count_records, read_window, token_position_ms
from shared.duo.records import enriched, record_id, record_time_us
from shared.gcp.window_store import LandedSpans, WindowRead, WindowStore
from shared.pipeline.messages import RecordBatch, SpanCheck, WindowTask
from shared.pipeline.planning import is_live, retention_start
from shared.pipeline.repair import bisect_step, check_run, checked, held
from shared.pipeline.schemas import MAX_CHECK_WINDOWS
from shared.pipeline.wake import wakes_on_records
from shared.pipeline.windows import Claim, own_trouble, past, read_unclaimed

log = logging.getLogger(__name__)


class BatchPublisher(Protocol):
    def publish_batch(self, batch: RecordBatch) -> str: ...

    def publish_tasks(self, tasks: list[WindowTask]) -> int: ...


@dataclass
class FetchReport:
    source: str
    window_id: str
    outcome: str  # fetched | handed_on | skipped | lost_lease | failed
    pages: int = 0
    records: int = 0
    dropped: int = 0
    requests: int = 0
    rate_limited: int = 0
    transient_failures: int = 0
    seconds: float = 0.0
    error: str | None = None
    window_records: int = 0
    already_landed: int = 0  # a re-read's records that were in the bucket already
    reread: bool = False  # the window was read again (late-record repair or a lost batch)
    retention_lost_ms: tuple[int, int] | None = None


# A window task is held for its start this long at most (a minute's reads after the lead),
# well inside the windows subscription's ack deadline.
MAX_START_WAIT_MS = 2 * 60_000

# How a late-record check's log line starts (its outcome follows); the bench counts them.
CHECK_EVENT = "span check"


@dataclass
class CheckReport:
    """What one late-record check found: Duo's count of the span against the records landed."""

    source: str
    level: int
    windows: int
    outcome: str  # matched | repairing | stale | empty | past_retention
    mintime: int = 0
    maxtime: int = 0
    landed: int = 0
    duo_count: int | None = None  # None: Duo gave no exact count
    rereads: int = 0
    requests: int = 0
    bisected: int = 0  # counts of parts of the span, finding the windows that differ


class LeaseKeeper:
    """Renews a window's lease every third of it while a fetch runs (a daemon thread), so the
    lease runs out only when the fetcher has died; ``lost`` tells the fetch to stop."""

    def __init__(self, renew: Callable[[], bool], every_seconds: float) -> None:
        self._renew = renew
        self._every = every_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self.lost = False

    def beat(self) -> None:
        try:
            self.lost = self.lost or not self._renew()
        except Exception:
            # Firestore hiccup: the next beat tries again, well before the lease runs out.
            log.warning("could not renew a window lease", exc_info=True)

    def _run(self) -> None:
        while not self._done.wait(self._every) and not self.lost:
            self.beat()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()


@dataclass
class _FirstPage:
    """A window's first page, read before it was claimed, and the rest of its read."""

    page: Page
    rest: Iterator[Page]

    def resumes(self, claim: Claim, start: int) -> bool:
        """Whether the claim's read begins where this page was read from: the window's start,
        nothing of it read or numbered since (else the page is dropped, and read as the
        claim says)."""
        return (
            start == claim.mintime
            and claim.next_offset is None
            and claim.pages == 0
            and claim.reread_from == 0
            and claim.read_until is None
        )


@dataclass
class _Lease:
    """A fetch's claim as its last published page left it: what a failure is counted from (a
    page checkpointed but not published is no progress)."""

    held: Claim


class WindowFetcher:
    def __init__(
        self,
        store: WindowStore,
        publisher: BatchPublisher,
        duo_for: Callable[[str, bool], CountedReads],
        clock: Clock,
        *,
        lease_seconds: float,
        time_budget_seconds: float,
        enrich_host: Callable[[str], str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        repair_checks: tuple[int, ...] = (),
        record_wake: Callable[[str, int | None], None] | None = None,
    ) -> None:
        """``record_wake(source, None)`` sets a source back to every planner run
        (``SourceRegistry.wake``) when a window it may sleep with holds records."""
        self._store = store
        self._publisher = publisher
        self._duo_for = duo_for
        self._clock = clock
        self._lease = lease_seconds
        self._budget = time_budget_seconds
        self._enrich_host = enrich_host
        self._should_stop = should_stop
        self._checks = repair_checks
        self._record_wake = record_wake

    def fetch(self, task: WindowTask) -> FetchReport:
        report = FetchReport(task.source, task.window_id, "skipped")
        if task.start_at_ms is not None:
            # A shared budget's read at its time (rate_share), before the window is claimed:
            # the planner hands a minute's reads out in their order, so each waits seconds.
            early = min(task.start_at_ms - now_ms(self._clock), MAX_START_WAIT_MS)
            if early > 0:
                self._clock.sleep(early / 1000)
        duo = self._duo_for(task.source, is_live(task.mintime, now_ms(self._clock)))
        read = self._store.read(task.source, task.window_id)
        if read is None:
            return report
        started = self._clock.now()
        try:
            try:
                first = self._read_unclaimed(task, read, duo, report)
            except BaseException as error:
                # Recorded as a claimed fetch's failure is, unless someone has the window now.
                failed = self._store.claim(task.source, task.window_id, self._lease, read)
                if failed is not None:
                    self._fail(failed, error, report)
                elif not isinstance(error, DuoError | WindowError):
                    raise
                return report
            if report.outcome == "fetched":
                return report  # an empty last page: done without a claim
            claim = self._store.claim(task.source, task.window_id, self._lease, read)
            if claim is None:
                return report
            report.reread = claim.again
            keeper = LeaseKeeper(lambda: self._store.renew(claim, self._lease), self._lease / 3)
            lease = _Lease(claim)
            try:
                with keeper:
                    report.outcome = self._page_through(
                        task, lease, duo, report, started, keeper, first
                    )
            except BaseException as error:
                self._fail(lease.held, error, report)
        finally:
            report.requests = duo.stats.requests
            report.rate_limited = duo.stats.rate_limited
            report.transient_failures = duo.stats.transient_failures
            report.seconds = round(self._clock.now() - started, 3)
        return report

    def _fail(self, held: Claim, error: BaseException, report: FetchReport) -> None:
        """Gives the lease back after a failure counted from ``held`` (``own_trouble`` decides
        whether it counts towards quarantine). Duo's and the window's own are reported; anything
        else (Firestore, Pub/Sub, the shared limiter, a bug) is raised on, to be logged with
        its trace."""
        if isinstance(error, DuoError | WindowError):
            report.outcome, report.error = "failed", str(error)
            self._store.release(held, error=str(error), own=own_trouble(error))
            return
        described = f"{type(error).__name__}: {error}"
        self._store.release(held, error=described, own=own_trouble(error))
        raise error

    def _read_unclaimed(
        self, task: WindowTask, read: WindowRead, duo: CountedReads, report: FetchReport
    ) -> _FirstPage | None:
        """A window never claimed (``read_unclaimed``) has its first page read before it is
        claimed: an empty last page (a quiet minute) finishes it in one write made only if the
        window is unchanged since ``read`` (outcome ``fetched``), with no claim or checkpoint;
        any other page is returned, for the claim that follows to go on with. Nothing is held
        meanwhile: a fetcher dying here leaves the window as planned, for the next delivery;
        two fetchers of one window may both read its first page (each request through the
        limiter), and the first to write wins."""
        doc, now = read.doc, now_ms(self._clock)
        if not read_unclaimed(doc) or retention_start(doc["mintime"], now) > doc["mintime"]:
            return None
        pages = read_window(duo, doc["mintime"], doc["maxtime"], now_ms=now)
        page = next(pages)
        if page.items or page.next_offset is not None:
            return _FirstPage(page, pages)
        if self._store.done_unread(
            task.source, task.window_id, read, total=page.total, checks=self._checks
        ):
            report.outcome, report.dropped = "fetched", page.dropped
            return None
        # Written meanwhile (another fetch of it, or the planner): the claim that follows finds
        # what became of it, and goes on from this page only if nothing of it was read since.
        return _FirstPage(page, pages)

    def _page_through(
        self,
        task: WindowTask,
        lease: _Lease,
        duo: CountedReads,
        report: FetchReport,
        started: float,
        keeper: LeaseKeeper,
        first: _FirstPage | None = None,
    ) -> str:
        claim = lease.held
        host = self._enrich_host(task.source) if self._enrich_host else None
        now = now_ms(self._clock)
        start = retention_start(claim.mintime, now)
        next_offset = claim.next_offset
        # Where this read ends: the window's end, or a gap's (the time of its last token).
        until = token_position_ms(claim.read_until) if claim.read_until else None
        end = claim.maxtime if until is None else min(claim.maxtime, until + 1)
        if start > claim.mintime:
            # Duo no longer keeps the window's start: fetch what it still has, and name what
            # was lost (nothing, when the checkpoint is already past it, or cannot be read).
            done_until = token_position_ms(next_offset) if next_offset else claim.mintime - 1
            if done_until is not None and done_until < min(start, end) - 1:
                report.retention_lost_ms = (done_until + 1, min(start, end) - 1)
                log.error(
                    "window %s: logs between %s and %s ms left Duo's 180-day retention before "
                    "they were fetched",
                    task.window_id,
                    *report.retention_lost_ms,
                )
                next_offset = None
        if start >= end:
            pages: Iterator[Page] = iter([Page([], None)])  # nothing left: an empty page ends it
        elif first is not None and first.resumes(claim, start):
            # The page read before the claim is the claim's first: the read goes on after it.
            pages = itertools.chain([first.page], first.rest)
        else:
            pages = read_window(duo, start, claim.maxtime, now_ms=now, next_offset=next_offset)
        landed: LandedSpans | None = None  # a re-read's landed batches, read at its first page
        offset = next_offset
        for page in pages:
            if keeper.lost:
                return "lost_lease"  # another fetcher has the window: publish nothing more
            items, following = page.items, page.next_offset
            if following and claim.read_until and past(following, claim.read_until):
                following = None  # the gap is read: what follows has landed already
            if claim.reread_from and items:
                if landed is None:
                    landed = self._store.landed_spans(claim.source, claim.window_id)
                items = self._not_landed(landed, items, report)
            records = [enriched(item, host) for item in items] if host else items
            if items and not claim.records and not claim.again:
                self._woken(claim)
            saved = self._store.checkpoint(
                claim,
                following,
                len(records),
                self._lease,
                lost_ms=report.retention_lost_ms,
                read=len(page.items),
                total=page.total,
                checks=self._checks,
            )
            if saved is None:
                return "lost_lease"
            if saved.pages > claim.pages:
                # The read's first batch starts where the read did, before any empty page that
                # took no number. A failed publish ends the fetch here, counted from
                # ``lease.held``: the page keeps its number, and its gap is read again once the
                # window is fetched.
                first = claim.pages == claim.reread_from
                offsets = (claim.read_offset if first else offset, following)
                self._publisher.publish_batch(
                    RecordBatch(task.source, task.window_id, claim.pages, records, offsets)
                )
                report.pages += 1
            claim, offset = saved, following
            lease.held = claim
            report.records += len(records)
            report.dropped += page.dropped
            report.window_records = claim.records
            if following is None:
                return "fetched"
            if self._clock.now() - started >= self._budget or self._should_stop():
                # Past the request's budget, or the instance is stopping: checkpointed, and
                # the rest of the window goes on in a new delivery.
                self._store.release(claim)
                self._publisher.publish_tasks([task])
                return "handed_on"
        raise AssertionError("read_window ended without a final page")

    def _woken(self, claim: Claim) -> None:
        """The first records of a window its source may sleep with (``wake.wakes_on_records``):
        the source back to every run, so its next windows are planned each minute. Before the
        page's checkpoint, so a fetch ending between the two leaves the window without records
        and its redelivery does it again. A failed write only delays the next windows, to the
        wake the planner recorded: the records are fetched and landed all the same."""
        if self._record_wake is None or not wakes_on_records(claim.mintime, claim.maxtime):
            return
        try:
            self._record_wake(claim.source, None)
        except Exception:
            log.warning("could not set source %s back to every run", claim.source, exc_info=True)

    @staticmethod
    def _not_landed(
        landed: LandedSpans, items: list[dict[str, Any]], report: FetchReport
    ) -> list[dict[str, Any]]:
        """A re-read page without the records the window's landed batches already hold,
        whatever the page boundaries were the first time."""
        times = [record_time_us(item) for item in items]
        landed_ids = landed.ids(min(times), max(times))
        kept = [item for item in items if record_id(item) not in landed_ids]
        report.already_landed += len(items) - len(kept)
        return kept

    def check(self, message: SpanCheck) -> CheckReport:
        """Counts a span of finished windows again with Duo and compares the count with what
        landed for them; when they differ, counts parts of the span until the windows that
        differ are found (``repair.bisect_step``), and only those are read again, landing only
        the records that are missing. Then the span's check level moves on past it, on the
        source's cursor: no window is written unless it is read again."""
        span = message.span
        report = CheckReport(message.source, message.level, 0, "stale", span.mintime)
        cursor = self._store.check_levels(message.source)
        if cursor is None or checked(cursor.doc, span, span.maxtime) is None:
            return report  # the level moved on since it was sent: another delivery did it
        found = self._store.span_windows(message.source, span, MAX_CHECK_WINDOWS)
        run = check_run([(w, read.doc) for w, read in found], span, MAX_CHECK_WINDOWS)
        if run.longer_until is not None:
            # Its first window (a catch-up's) is longer than the span: due at its own check.
            age = self._checks[span.level] if span.level < len(self._checks) else 0
            again_at = run.longer_until + age
            self._store.move_level(
                message.source, partial(held, span=span, again_at=again_at), cursor
            )
            return report
        if run.until is None:
            return report  # its first window is being read again: the planner sends it later
        reads = dict(found)
        docs = [doc for _, doc in run.windows]
        report.windows, report.maxtime = len(docs), run.until
        first = docs[0]["mintime"] if docs else span.mintime
        if not docs or retention_start(first, now_ms(self._clock)) > first:
            # No window to count, or Duo no longer keeps all of them: nothing to count against.
            report.outcome = "past_retention" if docs else "empty"
            self._store.move_level(
                message.source, partial(checked, span=span, until=run.until), cursor
            )
            return report
        # A window that numbered no page has no batch, and so nothing landed (a quiet one's).
        landed = [
            self._store.landed_records(message.source, window) if doc["pages"] else 0
            for window, doc in run.windows
        ]
        report.landed = sum(landed)
        report.mintime, report.maxtime = docs[0]["mintime"], docs[-1]["maxtime"]
        duo = self._duo_for(message.source, False)
        try:
            reread = self._differing_windows(duo, report, landed, [d["mintime"] for d in docs])
        finally:
            report.requests = duo.stats.requests
        again = [
            WindowTask(message.source, doc["mintime"], doc["maxtime"])
            for n, (window, doc) in enumerate(run.windows)
            if n in reread
            and self._store.reopen(message.source, window, message.level, reads[window])
        ]
        self._publisher.publish_tasks(again)
        self._store.move_level(message.source, partial(checked, span=span, until=run.until), cursor)
        report.rereads = len(again)
        report.outcome = "repairing" if reread else "matched"
        return report

    def _holds_nothing(self, duo: CountedReads, mintime: int, maxtime: int) -> bool:
        """Whether Duo counts no record from ``mintime`` to ``maxtime``: then none lies in
        any span inside, however Duo compares ``maxtime``. Any (or no exact count): the
        span's usual counts follow from scratch, its end first, so a record published
        meanwhile at the end can only add to the difference."""
        return count_records(duo, mintime, maxtime, now_ms=now_ms(self._clock)) == 0

    def _differing_windows(
        self, duo: CountedReads, report: CheckReport, landed: list[int], starts: list[int]
    ) -> tuple[int, ...]:
        """The span's windows (by position) to read again. Every count ends at the same point,
        1 ms past the span: whether Duo compares that ``maxtime`` with microseconds or not, it
        adds the same records to every count, so the difference of two counts is exact for the
        time between their starts. Past the time budget, the windows not yet cleared are read
        again rather than left unchecked."""
        edges = [*starts, report.maxtime]
        counts: dict[int, int | None] = {}
        started = self._clock.now()
        if not any(landed) and self._holds_nothing(duo, edges[0], report.maxtime + 1):
            # A quiet account's span (most checks): nothing landed, and Duo holds nothing in
            # it. The span's end needs no count, nor the slot it would wait for.
            report.duo_count = 0
            return ()
        step = bisect_step(landed, counts)
        while step.ask is not None:
            if len(counts) >= 2 and (
                self._clock.now() - started >= self._budget or self._should_stop()
            ):
                break
            counts[step.ask] = count_records(
                duo, edges[step.ask], report.maxtime + 1, now_ms=now_ms(self._clock)
            )
            step = bisect_step(landed, counts)
        first, last = counts.get(0), counts.get(len(landed))
        report.duo_count = None if first is None or last is None else first - last
        report.bisected = max(0, len(counts) - 2)
        return step.reread
