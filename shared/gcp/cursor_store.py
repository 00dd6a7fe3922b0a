"""A source's cursor in Firestore: what is planned, and the watermark before which everything
Duo served is durably in Cloud Storage (both exclusive ends, in ms: windows are half-open).

  ROOT/{source}   planned_until_ms, watermark_ms, last_records_ms, last_error
Planning reads and moves ``planned_until_ms`` in one transaction together with creating the
window documents, so two planners running at once never plan overlapping windows. The
watermark moves only over a contiguous run of finished windows. The document is written once
per planner run.
"""

from __future__ import annotations

from typing import Any

from google.api_core.exceptions import FailedPrecondition
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.clock import Clock, now_ms
from shared.duo.telephony import AVAILABILITY_DELAY_MS
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import window_id
from shared.pipeline.messages import WindowTask
from shared.pipeline.planning import (
    first_planned_until,
    past_retention,
    plan_windows,
    quiet_wait_ms,
    retention_gap,
)
from shared.pipeline.windows import (
    BUCKET_WAITS_ALERT,
    FAILED,
    QUARANTINED,
    STATES,
    last_records,
    new_window,
    passed,
    watermark_run,
)

# Windows the watermark may pass in one run: each is marked passed in the same transaction,
# which takes at most 500 writes.
ADVANCE_SCAN = 400
PLAN_ATTEMPTS = 20
# The end of the newest window the watermark passed that held records: how long the source has
# been quiet (``planning.quiet_wait_ms``).
LAST_RECORDS = "last_records_ms"
# Stopped windows and retention losses listed by status, at most.
STATUS_LIST = 50


class CursorStore:
    def __init__(self, db: firestore.Client, windows: WindowStore, clock: Clock) -> None:
        self._db = db
        self._windows = windows
        self._clock = clock

    def cursor(self, source: str) -> firestore.DocumentReference:
        return self._windows.source(source)

    def plan(
        self,
        source: str,
        lookback_ms: int,
        parallelism: int,
        delay_ms: int = AVAILABILITY_DELAY_MS,
        quiet_every_ms: int = 0,
        shared_wait_ms: int = 0,
    ) -> list[WindowTask]:
        """Creates the windows up to now - delay (2 min), to its last whole minute; returns them,
        to be published. A quiet source (no window with a record in the last hour, counted from
        where planning started until one had: ``new_cursor``) waits for ``quiet_every_ms`` of
        span, and a child sharing its parent's budget for ``shared_wait_ms``
        (``rate_share.shared_wait_ms``)."""
        ref = self.cursor(source)

        @firestore.transactional
        def plan_in(transaction: firestore.Transaction) -> list[WindowTask]:
            now = now_ms(self._clock)
            snapshot = ref.get(transaction=transaction)
            cursor = snapshot.to_dict() if snapshot.exists else None
            if cursor is None:
                start = first_planned_until(now, lookback_ms)
                cursor = new_cursor(start, now)
            gap = retention_gap(cursor["planned_until_ms"], now)
            update = past_retention(cursor, gap, now)
            planned_until = update.get("planned_until_ms", cursor["planned_until_ms"])
            last_records = quiet_since(cursor)
            planned = plan_windows(
                planned_until,
                now,
                parallelism,
                delay_ms=delay_ms,
                wait_ms=max(quiet_wait_ms(last_records, now, quiet_every_ms), shared_wait_ms),
            )
            for mintime, maxtime in planned:
                window = self._windows.window(source, window_id(mintime, maxtime))
                transaction.create(window, new_window(mintime, maxtime, now))
            if planned:
                update["planned_until_ms"] = planned[-1][1]
            if not snapshot.exists:
                transaction.set(ref, cursor | update)
            elif update:
                transaction.update(ref, update | {"updated_at_ms": now})
            return [WindowTask(source, mintime, maxtime) for mintime, maxtime in planned]

        # Planners racing (a scheduler retry over a slow run) only wait for each other.
        return plan_in(self._db.transaction(max_attempts=PLAN_ATTEMPTS))

    def read(self, source: str) -> dict[str, Any] | None:
        """The cursor as it is, or None before the source's first run."""
        snapshot = self.cursor(source).get()
        return snapshot.to_dict() if snapshot.exists else None

    def advance(self, source: str) -> int:
        """Moves the watermark over the contiguous finished windows; returns it.

        The windows are read before the transaction, which then reads only the cursor: a
        transaction holding hundreds of windows would contend with every fetcher and check
        writing them. Each passed window is written only if unchanged since it was read (a
        check may have reopened it meanwhile): otherwise nothing moves and the next run
        decides."""
        ref = self.cursor(source)
        snapshot = ref.get()
        if not snapshot.exists:
            return 0
        watermark = snapshot.get("watermark_ms")
        query = (
            self._windows.windows(source)
            .where(filter=FieldFilter("mintime", ">=", watermark))
            .order_by("mintime")
            .select(["mintime", "maxtime", "state", "next_check_at_ms", "records"])
            .limit(ADVANCE_SCAN)
        )
        windows = list(query.stream())
        moved, count = watermark_run(watermark, (window.to_dict() for window in windows))
        if count == 0:
            return watermark

        @firestore.transactional
        def advance_in(transaction: firestore.Transaction) -> int:
            current = ref.get(transaction=transaction).get("watermark_ms")
            if current != watermark:
                return current  # another planner run moved it meanwhile
            now = now_ms(self._clock)
            update = {"watermark_ms": moved, "updated_at_ms": now}
            held = last_records(window.to_dict() for window in windows[:count])
            if held is not None:
                update[LAST_RECORDS] = held
            transaction.update(ref, update)
            # Only a window behind the watermark may expire: one deleted ahead of it would
            # leave a hole the watermark could never cross.
            for window in windows[:count]:
                unchanged = self._db.write_option(last_update_time=window.update_time)
                transaction.update(
                    window.reference, passed(window.to_dict(), now), option=unchanged
                )
            return moved

        try:
            return advance_in(self._db.transaction())
        except FailedPrecondition:
            return watermark

    def status(self, source: str) -> dict[str, Any]:
        """The cursor, window counts by state, the stopped windows, what left Duo's retention
        before it was fetched, and the newest error, for operators."""
        snapshot = self.cursor(source).get()
        cursor = snapshot.to_dict() if snapshot.exists else {}
        windows = self._windows.windows(source)
        counts = {state: self._windows.count(source, state) for state in STATES}
        records = windows.sum("records").get()[0][0].value or 0
        rereads = windows.sum("rereads").get()[0][0].value or 0
        checks = windows.sum("checks").get()[0][0].value or 0
        repairs = windows.sum("repairs").get()[0][0].value or 0
        stopped = [
            _described(w.id, w.to_dict())
            for w in windows.where(filter=FieldFilter("state", "in", [FAILED, QUARANTINED]))
            .limit(STATUS_LIST)
            .stream()
        ]
        # Fetched windows left waiting, run after run, because the bucket cannot be searched.
        stalled = [
            _described(w.id, w.to_dict())
            for w in windows.where(filter=FieldFilter("bucket_waits", ">=", BUCKET_WAITS_ALERT))
            .limit(STATUS_LIST)
            .stream()
        ]
        lost = [
            w.to_dict()["retention_lost_ms"]
            for w in windows.where(filter=FieldFilter("retention_lost", "==", True))
            .limit(STATUS_LIST)
            .stream()
        ]
        if cursor.get("gap_ms"):
            lost.insert(0, cursor["gap_ms"])
        newest = max(stopped, key=lambda w: w["updated_at_ms"], default=None)
        last_error = cursor.get("last_error")
        if newest is not None:
            last_error = f"window {newest['window_id']}: {newest['error']}"
        return {
            "source": source,
            "exists": snapshot.exists,
            "watermark_ms": cursor.get("watermark_ms"),
            "planned_until_ms": cursor.get("planned_until_ms"),
            "windows": counts,
            "records": int(records),
            "rereads": int(rereads),
            "checks": int(checks),
            "repairs": int(repairs),
            "quarantined": [w for w in stopped if w["state"] == QUARANTINED],
            "stalled": stalled,
            "retention_lost_ms": lost,
            "last_error": last_error,
            "gap_ms": cursor.get("gap_ms"),
        }


def new_cursor(start_ms: int, now_ms: int) -> dict[str, Any]:
    """A new source's cursor, planned from ``start_ms``: nothing is known to have held a record
    before it, so a source whose backfill holds none is quiet from the start, not an hour
    after it was added (a fleet's accounts are mostly quiet)."""
    return {
        "planned_until_ms": start_ms,
        "watermark_ms": start_ms,
        LAST_RECORDS: start_ms,
        "created_at_ms": now_ms,
    }


def quiet_since(cursor: dict[str, Any]) -> int:
    """Since when the source has been quiet (``planning.quiet_wait_ms``): the end of the newest
    passed window that held records, or where planning started (or, for a cursor made before
    that was kept, its making)."""
    return cursor.get(LAST_RECORDS, cursor.get("created_at_ms", 0))


def _described(window_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_id": window_id,
        "state": doc["state"],
        "error": doc.get("error"),
        "failures": doc.get("failures", 0),
        "bucket_waits": doc.get("bucket_waits", 0),
        "updated_at_ms": doc["updated_at_ms"],
    }
