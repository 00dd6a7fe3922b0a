"""Window progress in Firestore: leases, paging checkpoints and written-batch markers.

Layout (ROOT defaults to ``telephony_sources``):
  ROOT/{source}                                      the source's cursor (CursorStore)
  ROOT/{source}/windows/{window_id}                  one document per planned window
  ROOT/{source}/windows/{window_id}/batches/{page}   one marker per batch durably in Storage
A window is written by the one fetcher holding its lease, once per page (at most Duo's rate),
and each marker once by a writer: no document is hot. What each write says is decided by the
state machine in ``shared.pipeline.windows``; this module only reads and writes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from google.api_core.exceptions import AlreadyExists, FailedPrecondition, Forbidden
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference

from shared.clock import Clock, now_ms
from shared.duo.paging import DuoTotal
from shared.pipeline import progress
from shared.pipeline import windows as rules
from shared.pipeline.found_batches import own_batches
from shared.pipeline.messages import RecordBatch, WindowTask
from shared.pipeline.progress import Progress
from shared.pipeline.repair import Span
from shared.pipeline.windows import Claim

if TYPE_CHECKING:
    from shared.gcp.unmarked_batches import FoundBatch

ROOT = "telephony_sources"
_log = logging.getLogger(__name__)


# Looks in the bucket for a window's batches whose marker was never written:
# (source, window id, pages, first record µs, last record µs) -> what it finds.
FindUnmarked = Callable[[str, str, Collection[int], int, int], Iterable["FoundBatch"]]


class BucketLookupError(RuntimeError):
    """The bucket could not be searched for a window's batches landed without their marker."""


# What the planner needs to search the bucket (``shared.gcp.unmarked_batches``).
BUCKET_PERMISSION = (
    "the planner's service account needs roles/storage.objectViewer on the bucket "
    "(storage.objects.list and storage.objects.get)"
)


# The sweep's query reads the quarantined windows with the open ones and counts them, where an
# aggregation query would cost a read every run: there are seldom any. They sort after every
# open state ("failed" < "fetched" < "fetching" < "planned" < "quarantined"), so a query by
# state, SWEEP_PAGE windows a page, reads every open window and then at most a page of them; a
# source with more (an incident the alert names) has the rest counted by one aggregation, so
# each run reads at most SWEEP_PAGE quarantined windows and one read more.
SWEEP_PAGE = 20
SWEPT_STATES = (*rules.OPEN_STATES, rules.QUARANTINED)


@dataclass(frozen=True)
class SweepResult:
    republish: list[WindowTask]
    completed: int
    rereads: int
    # How far the windows being read are (from the documents the sweep read anyway).
    reading: Progress | None = None
    bucket_waits: int = 0  # windows left waiting because the bucket could not be searched
    # Windows left open (sent again, being read, waiting to land): a source with none may sleep
    # (``shared.pipeline.wake``).
    open_windows: int = 0
    # The source's quarantined windows (left as they are), for the planner's log line that a
    # log-based metric alerts on while one waits for an operator.
    quarantined: int = 0


@dataclass(frozen=True)
class LandedSpans:
    """A window's landed batches by the time span of their records."""

    _db: firestore.Client
    spans: list[tuple[DocumentReference, int | None, int | None]]

    def ids(self, first_us: int, last_us: int) -> set[str]:
        """The ids the landed batches hold between two record times: what a re-read page
        must not land again."""
        overlapping = rules.overlapping(self.spans, first_us, last_us)
        ids: set[str] = set()
        if not overlapping:
            return ids  # nothing to read: no request
        for marker in self._db.get_all(overlapping, field_paths=["ids"]):
            ids.update(marker.get("ids") or [])
        return ids


@dataclass(frozen=True)
class WindowRead:
    """A window's document as one read found it, and its version: a write made on the version
    fails once anyone else has written the window since (Firestore's update time; the unit
    fake's copy of the document). ``at_ms``: when it was read."""

    doc: dict[str, Any]
    version: Any
    at_ms: int


class WindowStore:
    def __init__(self, db: firestore.Client, clock: Clock, root: str = ROOT) -> None:
        self._db = db
        self._clock = clock
        self._root = root

    def source(self, source: str) -> firestore.DocumentReference:
        """The source's own document (its cursor); its windows live under it."""
        return self._db.collection(self._root).document(source)

    def sources(self) -> list[str]:
        """Every source with a document (its cursor) or windows in Firestore."""
        return [ref.id for ref in self._db.collection(self._root).list_documents()]

    def windows(self, source: str) -> firestore.CollectionReference:
        return self.source(source).collection("windows")

    def window(self, source: str, window_id: str) -> firestore.DocumentReference:
        return self.windows(source).document(window_id)

    def count(self, source: str, state: str) -> int:
        """How many of the source's windows are in ``state`` (one aggregation query)."""
        query = self.windows(source).where(filter=FieldFilter("state", "==", state))
        return int(query.count().get()[0][0].value)

    def read(self, source: str, window_id: str) -> WindowRead | None:
        """The window's document and its version (one read); None when there is none."""
        at = now_ms(self._clock)
        snapshot = self.window(source, window_id).get()
        return WindowRead(snapshot.to_dict(), snapshot.update_time, at) if snapshot.exists else None

    def done_unread(
        self,
        source: str,
        window_id: str,
        read: WindowRead,
        *,
        total: DuoTotal | None = None,
        checks: tuple[int, ...] = (),
    ) -> bool:
        """Finishes a window whose first page, read before any claim, was its last and held
        nothing (``done_unread_update``): one write, made only if nobody has written the window
        since ``read``. False when someone has: their fetch, or the planner's change, wins."""
        update = done_unread_update(read.doc, source, window_id, now_ms(self._clock), total, checks)
        return self._write_unchanged(self.window(source, window_id), read, update)

    def _write_unchanged(
        self, ref: DocumentReference, read: WindowRead, update: rules.Update
    ) -> bool:
        unchanged = self._db.write_option(last_update_time=read.version)
        try:
            ref.update(update, option=unchanged)
        except FailedPrecondition:
            return False
        return True

    def claim(
        self, source: str, window_id: str, lease_seconds: float, read: WindowRead | None = None
    ) -> Claim | None:
        """Takes the window's lease, or None when it is finished, unknown, leased elsewhere,
        not yet due or (its fetchers dying once too often) quarantined now. From ``read``
        (the window as read when the fetch began), one conditional write; a transaction when
        there is none, or when the window has changed since."""
        ref = self.window(source, window_id)
        owner = uuid.uuid4().hex
        if read is not None:
            lease_ms, now = int(lease_seconds * 1000), now_ms(self._clock)
            taken, update = rules.claim(
                read.doc, source, window_id, owner, now, lease_ms, read.at_ms
            )
            if update is None:
                return None
            if self._write_unchanged(ref, read, update):
                return taken

        @firestore.transactional
        def take(transaction: firestore.Transaction) -> Claim | None:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return None
            taken, update = rules.claim(
                snapshot.to_dict(),
                source,
                window_id,
                owner,
                now_ms(self._clock),
                int(lease_seconds * 1000),
            )
            if update is not None:
                transaction.update(ref, update)
            return taken

        return take(self._db.transaction())

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        """Extends the lease while its holder works; False once it is lost."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def extend(transaction: firestore.Transaction) -> bool:
            if not rules.holds_lease(ref.get(transaction=transaction).to_dict(), claim):
                return False
            transaction.update(ref, rules.renew(now_ms(self._clock), int(lease_seconds * 1000)))
            return True

        return extend(self._db.transaction())

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
        """Records one page read (``rules.checkpoint``); None if the lease was lost (someone
        else resumes). ``read``: the page's records, ``total``: Duo's count of the window
        (``progress``), ``checks``: the first late-record check of a window done at once."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def save(transaction: firestore.Transaction) -> Claim | None:
            doc = ref.get(transaction=transaction).to_dict()
            if not rules.holds_lease(doc, claim):
                return None
            now = now_ms(self._clock)
            after, update = rules.checkpoint(
                claim,
                doc,
                next_offset,
                records,
                now,
                int(lease_seconds * 1000),
                lost_ms,
                checks,
            )
            transaction.update(ref, update | progress.after_page(doc, read, total, now))
            return after

        return save(self._db.transaction())

    def release(self, claim: Claim, *, error: str | None = None, own: bool = True) -> None:
        """Gives the lease back: to hand the rest on, or after a failure counted from
        ``claim`` (failed, or quarantined when the window has failed too often for its
        ``own`` reasons)."""
        ref = self.window(claim.source, claim.window_id)

        @firestore.transactional
        def give_back(transaction: firestore.Transaction) -> None:
            doc = ref.get(transaction=transaction).to_dict()
            if rules.holds_lease(doc, claim):
                update = rules.release(claim, now_ms(self._clock), error, own=own)
                transaction.update(ref, update)

        give_back(self._db.transaction())

    def requeue(self, source: str, window_id: str) -> bool:
        """Puts a quarantined or failed window back (``duo-telephony retry``); False when
        there is no such stopped window."""
        ref = self.window(source, window_id)

        @firestore.transactional
        def put_back(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            update = (
                rules.requeue(snapshot.to_dict(), now_ms(self._clock)) if snapshot.exists else None
            )
            if update is None:
                return False
            transaction.update(ref, update)
            return True

        return put_back(self._db.transaction())

    def sweep(
        self,
        source: str,
        checks: tuple[int, ...] = (),
        landing_timeout_ms: int = rules.LANDING_TIMEOUT_MS,
        unmarked: FindUnmarked | None = None,
    ) -> SweepResult:
        """Applies the sweep's rule to every open window of ``source`` and counts the
        quarantined ones; returns the tasks to send again and what was finished (given its
        first late-record check, ``checks``).
        ``unmarked`` looks in the bucket for batches that landed without their marker, before
        a window's missing batches are read again."""
        now = now_ms(self._clock)
        republish: list[WindowTask] = []
        completed = rereads = bucket_waits = 0
        swept, quarantined = self._open_windows(source)
        docs = []
        for snapshot in swept:
            doc = snapshot.to_dict()
            docs.append(doc)
            landed = functools.partial(self.landed_batches, source, snapshot.id)
            offsets = functools.partial(
                landed_or_found, self, source, snapshot.id, doc, unmarked, now
            )
            step, waited = sweep_window(
                snapshot.id, doc, now, landed, offsets, checks, landing_timeout_ms
            )
            bucket_waits += waited
            if step is None:
                continue
            unchanged = self._db.write_option(last_update_time=snapshot.update_time)
            try:
                snapshot.reference.update(step.update, option=unchanged)
            except FailedPrecondition:
                continue  # a fetcher moved it on since the query read it: decided next run
            completed += step.completed
            rereads += step.reread
            if step.republish:
                republish.append(WindowTask(source, doc["mintime"], doc["maxtime"]))
        return SweepResult(
            republish,
            completed,
            rereads,
            progress.measure(docs, now),
            bucket_waits,
            len(docs) - completed,
            quarantined,
        )

    def _open_windows(self, source: str) -> tuple[list[firestore.DocumentSnapshot], int]:
        """The source's open windows, and how many are quarantined (SWEEP_PAGE). Every page is
        read before any window is swept: a window swept from failed to planned would sort
        after the page's end and be read again."""
        query = (
            self.windows(source)
            .where(filter=FieldFilter("state", "in", list(SWEPT_STATES)))
            .order_by("state")
            .limit(SWEEP_PAGE)
        )
        found: list[firestore.DocumentSnapshot] = []
        quarantined = 0
        page = list(query.stream())
        while True:
            stopped = [s for s in page if s.get("state") == rules.QUARANTINED]
            found += [s for s in page if s.get("state") != rules.QUARANTINED]
            quarantined += len(stopped)
            if len(page) < SWEEP_PAGE:
                return found, quarantined
            if stopped:  # a page of them, and maybe more: counted, not read
                return found, self.count(source, rules.QUARANTINED)
            page = list(query.start_after(page[-1]).stream())

    def span_windows(self, source: str, span: Span, limit: int) -> list[tuple[str, WindowRead]]:
        """The windows starting in ``span``, by mintime, at most ``limit`` (one read each, one
        when there is none)."""
        at = now_ms(self._clock)
        query = (
            self.windows(source)
            .where(filter=FieldFilter("mintime", ">=", span.mintime))
            .where(filter=FieldFilter("mintime", "<", span.maxtime))
            .order_by("mintime")
            .limit(limit)
        )
        return [(s.id, WindowRead(s.to_dict(), s.update_time, at)) for s in query.stream()]

    def landed_records(self, source: str, window_id: str) -> int:
        """How many records the window's landed batches hold."""
        total = self._batches(source, window_id).sum("records").get()[0][0].value
        return int(total or 0)

    def reopen(self, source: str, window_id: str, level: int, read: WindowRead) -> bool:
        """Reads again a window Duo counted otherwise at check ``level`` (``rules.reopened``):
        one write, on the condition it is unchanged since the check's ``read``, else in a
        transaction. False when it is no longer done (being read again already)."""
        ref = self.window(source, window_id)
        if read.doc["state"] != rules.DONE:
            return False
        if self._write_unchanged(ref, read, rules.reopened(read.doc, level, now_ms(self._clock))):
            return True

        @firestore.transactional
        def again(transaction: firestore.Transaction) -> bool:
            doc = ref.get(transaction=transaction).to_dict()
            if doc is None or doc["state"] != rules.DONE:
                return False
            transaction.update(ref, rules.reopened(doc, level, now_ms(self._clock)))
            return True

        return again(self._db.transaction())

    def check_levels(self, source: str) -> WindowRead | None:
        """The source's cursor as a late-record check reads it for its ``CHECK_LEVELS`` (one
        read); None before the source's first run."""
        at = now_ms(self._clock)
        snapshot = self.source(source).get()
        return WindowRead(snapshot.to_dict(), snapshot.update_time, at) if snapshot.exists else None

    def move_level(
        self, source: str, change: Callable[[rules.Update], rules.Update | None], read: WindowRead
    ) -> bool:
        """Moves a check level on the cursor as ``change`` (``repair.checked``, ``repair.held``)
        says from the cursor: one write, on the condition the cursor is unchanged since
        ``read``; else (a planner run wrote it since) in a transaction. False when ``change``
        finds the level moved on already: another delivery of the check did it."""
        ref = self.source(source)
        update = change(read.doc)
        if update is not None and self._write_unchanged(ref, read, update):
            return True

        @firestore.transactional
        def move_on(transaction: firestore.Transaction) -> bool:
            update = change(ref.get(transaction=transaction).to_dict() or {})
            if update is None:
                return False
            transaction.update(ref, update)
            return True

        return move_on(self._db.transaction())

    def _batches(self, source: str, window_id: str) -> firestore.CollectionReference:
        return self.window(source, window_id).collection("batches")

    def _marker(self, source: str, window_id: str, page: int) -> firestore.DocumentReference:
        return self._batches(source, window_id).document(f"{page:05d}")

    def batch_landed(self, source: str, window_id: str, page: int) -> bool:
        return self._marker(source, window_id, page).get().exists

    def record_batch(self, batch: RecordBatch, objects: list[str]) -> None:
        """Marks one batch as durably in Storage, with the ids it landed (a re-read of the
        window leaves them out); a repeat of the same batch changes nothing."""
        marker = self._marker(batch.source, batch.window_id, batch.page)
        with contextlib.suppress(AlreadyExists):
            marker.create(rules.landed_marker(batch, objects, now_ms(self._clock)))

    def superseded(self, batch: RecordBatch) -> bool:
        """Whether the batch belongs to a read of its window that a re-read has replaced."""
        doc = self.window(batch.source, batch.window_id).get(field_paths=["reread_from"])
        return doc.exists and rules.superseded(doc.to_dict() or {}, batch.page)

    def landed_batches(self, source: str, window_id: str, from_page: int = 0) -> int:
        """How many of the window's batches numbered ``from_page`` or more have landed."""
        batches = self._batches(source, window_id)
        if from_page:
            batches = batches.where(filter=FieldFilter("page", ">=", from_page))
        return int(batches.count().get()[0][0].value)

    def landed_offsets(
        self, source: str, window_id: str, from_page: int = 0
    ) -> dict[int, rules.PageOffsets | None]:
        """The paging tokens of the window's landed batches numbered ``from_page`` or more,
        by page (None for a marker written without them)."""
        batches = self._batches(source, window_id)
        if from_page:
            batches = batches.where(filter=FieldFilter("page", ">=", from_page))
        landed = {}
        for marker in batches.select(["page", *rules.OFFSET_FIELDS]).stream():
            fields = marker.to_dict()
            landed[fields["page"]] = rules.marker_offsets(fields)
        return landed

    def mark_found(self, source: str, window_id: str, page: int, marker: rules.Update) -> None:
        """Writes the marker of a batch found in the bucket; a repeat changes nothing."""
        with contextlib.suppress(AlreadyExists):
            self._marker(source, window_id, page).create(marker)

    def reading(self, source: str) -> Progress | None:
        """How far the source's windows being read are (``status``, the demo)."""
        query = self.windows(source).where(
            filter=FieldFilter("state", "in", list(progress.READING_STATES))
        )
        docs = (snapshot.to_dict() for snapshot in query.select(progress.FIELDS).stream())
        return progress.measure(docs, now_ms(self._clock))

    def landed_spans(self, source: str, window_id: str) -> LandedSpans:
        """The time spans of the window's landed batches, read once for a whole re-read (one
        read per marker), so that each page then reads only the ids of markers it overlaps."""
        spans = self._batches(source, window_id).select(["first_us", "last_us"]).stream()
        return LandedSpans(
            self._db, [(s.reference, s.get("first_us"), s.get("last_us")) for s in spans]
        )


class MarkerStore(Protocol):
    """What the sweep's bucket lookup needs of a window store (this one, or a test's fake)."""

    def landed_offsets(
        self, source: str, window_id: str, from_page: int = 0
    ) -> dict[int, rules.PageOffsets | None]: ...

    def mark_found(self, source: str, window_id: str, page: int, marker: rules.Update) -> None: ...


def done_unread_update(
    doc: rules.Update,
    source: str,
    window_id: str,
    now: int,
    total: DuoTotal | None,
    checks: tuple[int, ...],
) -> rules.Update:
    """The one write that finishes a window whose first page, read before any claim, was its
    last and held nothing: ``rules.done_unread`` and the page's progress (``total``: Duo's
    count of the window)."""
    update = rules.done_unread(doc, source, window_id, now, checks)
    return update | progress.after_page(doc | update, 0, total, now)


def sweep_window(
    window_id: str,
    doc: dict[str, Any],
    now: int,
    landed_batches: Callable[[int], int],
    landed_offsets: Callable[[int], dict[int, rules.PageOffsets | None]],
    checks: tuple[int, ...],
    landing_timeout_ms: int,
) -> tuple[rules.SweepStep | None, bool]:
    """``rules.sweep_step`` for one open window, and whether the window is left waiting
    because the bucket could not be searched (``landed_or_found``)."""
    try:
        step = rules.sweep_step(
            doc, now, landed_batches, landed_offsets, checks, landing_timeout_ms
        )
    except BucketLookupError as error:
        # One window's trouble must not hold up the others, nor the watermark; counted on the
        # window, so that status shows it stalls.
        _log.error(
            "%s",
            error,
            exc_info=True,
            extra={"json_fields": {"event": "bucket_lookup_failed", "window_id": window_id}},
        )
        return rules.SweepStep(rules.bucket_wait(doc, str(error), now)), True
    return step, False


def landed_or_found(
    store: MarkerStore,
    source: str,
    window_id: str,
    doc: dict[str, Any],
    unmarked: FindUnmarked | None,
    now: int,
    from_page: int,
) -> dict[int, rules.PageOffsets | None]:
    """``store.landed_offsets``, once the batches ``unmarked`` finds in the bucket among the
    missing ones are marked (those whose tokens are their pages': an object holding other
    records is left, and its page read again). Raises BucketLookupError when the
    bucket cannot be searched: the window is then left for the next run."""
    landed = store.landed_offsets(source, window_id, from_page)
    missing = {page for page in range(from_page, doc["pages"]) if page not in landed}
    if not missing or unmarked is None:
        return landed
    first_us, last_us = rules.gap_times_us(doc, rules.gap(doc, landed))
    try:
        listed = list(unmarked(source, window_id, missing, first_us, last_us))
        for found in own_batches(doc, landed, listed):
            marker = rules.marker(found.page, found.records(), found.offsets, [found.name], now)
            store.mark_found(source, window_id, found.page, marker | {"found_in_bucket": True})
            landed[found.page] = found.offsets
    except Exception as error:
        needs = f"; {BUCKET_PERMISSION}" if isinstance(error, Forbidden) else ""
        raise BucketLookupError(
            f"window {window_id}: looking in the bucket for its batches {sorted(missing)} "
            f"failed ({type(error).__name__}: {error}){needs}; reading them again could "
            "land them twice, so the window waits for the next run"
        ) from error
    return landed
