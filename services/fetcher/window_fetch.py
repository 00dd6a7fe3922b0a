"""The fetcher's work on one window task: claim, page, publish, checkpoint, hand on.

Each page is published and acknowledged by Pub/Sub before its checkpoint is saved, so a
fetcher that dies re-fetches at most the one page it had not checkpointed, and that page's
batch keeps its number (and so its object names): the writer finds it already written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.clock import Clock, now_ms
from shared.duo.api import DuoApi
from shared.duo.errors import DuoError
from shared.duo.paging import WindowError, read_window
from shared.duo.records import enriched
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch, WindowTask
from shared.pipeline.windows import Claim, retry_at

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


class WindowFetcher:
    def __init__(
        self,
        store: WindowStore,
        publisher: BatchPublisher,
        duo_for: Callable[[str], DuoApi],
        clock: Clock,
        *,
        lease_seconds: float,
        time_budget_seconds: float,
        enrich_host: Callable[[str], str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._duo_for = duo_for
        self._clock = clock
        self._lease = lease_seconds
        self._budget = time_budget_seconds
        self._enrich_host = enrich_host
        self._should_stop = should_stop

    def fetch(self, task: WindowTask) -> FetchReport:
        report = FetchReport(task.source, task.window_id, "skipped")
        duo = self._duo_for(task.source)
        claim = self._store.claim(task.source, task.window_id, self._lease)
        if claim is None:
            return report
        started = self._clock.now()
        try:
            report.outcome = self._page_through(task, claim, duo, report, started)
        except (DuoError, WindowError) as error:
            report.outcome, report.error = "failed", str(error)
            self._store.release(
                claim, error=str(error), retry_at_ms=retry_at(claim.attempts, now_ms(self._clock))
            )
        except BaseException as error:
            self._store.release(claim, error=f"{type(error).__name__}: {error}")
            raise
        finally:
            report.requests = duo.stats.requests
            report.rate_limited = duo.stats.rate_limited
            report.transient_failures = duo.stats.transient_failures
            report.seconds = round(self._clock.now() - started, 3)
        return report

    def _page_through(
        self, task: WindowTask, claim: Claim, duo: DuoApi, report: FetchReport, started: float
    ) -> str:
        host = self._enrich_host(task.source) if self._enrich_host else None
        pages = read_window(
            duo,
            claim.mintime,
            claim.maxtime,
            now_ms=now_ms(self._clock),
            next_offset=claim.next_offset,
        )
        for page in pages:
            records = [enriched(item, host) for item in page.items] if host else page.items
            self._publisher.publish_batch(
                RecordBatch(task.source, task.window_id, claim.pages, records)
            )
            saved = self._store.checkpoint(claim, page.next_offset, len(records), self._lease)
            if saved is None:
                return "lost_lease"
            claim = saved
            report.pages += 1
            report.records += len(records)
            report.dropped += page.dropped
            report.window_records = claim.records
            if page.next_offset is None:
                return "fetched"
            if self._clock.now() - started >= self._budget or self._should_stop():
                # Past the request's budget, or the instance is stopping: checkpointed, and
                # the rest of the window goes on in a new delivery.
                self._store.release(claim)
                self._publisher.publish_tasks([task])
                return "handed_on"
        raise AssertionError("read_window ended without a final page")
