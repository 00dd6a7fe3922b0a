"""A source's cursor in Firestore: what is planned, and the watermark before which everything
Duo served is durably in Cloud Storage (both exclusive ends, in ms: windows are half-open).

  ROOT/{source}   planned_until_ms, watermark_ms, last_records_ms, check_levels, last_error
A planner run reads it once (``CursorStore.step``), moves the watermark over the contiguous run
of finished windows, plans the next windows from it and sends the late-record checks due
behind it (``repair.spans_due``), and writes all that in one batch with the window documents it
creates and passes, on the condition that the cursor is unchanged since it was read: two
planners running at once never plan overlapping windows nor send a check twice. The document is
written at most once per planner run.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
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
from shared.pipeline.repair import (
    CHECK_LEVELS,
    NO_CHECKS,
    Checks,
    Span,
    checked_spans,
    spans_due,
    start_levels,
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

# Windows the watermark may pass in one run: each is marked passed in the same write as the
# cursor and the windows planned (at most PLAN_PARALLELISM, 64); Firestore takes at most 500
# writes in one.
ADVANCE_SCAN = 400
# Planners racing (a scheduler retry over a slow run) only read again after each other.
PLAN_ATTEMPTS = 20
# The end of the newest window the watermark passed that held records: how long the source has
# been quiet (``planning.quiet_wait_ms``).
LAST_RECORDS = "last_records_ms"
# Stopped windows and retention losses listed by status, at most.
STATUS_LIST = 50


@dataclass(frozen=True)
class Step:
    """What a planner run's ``CursorStore.step`` did: the windows it planned and the
    late-record checks it sent, to be published, and the cursor as it left it ({} before the
    source's first run)."""

    tasks: list[WindowTask]
    cursor: dict[str, Any]
    checks: list[Span] = field(default_factory=list)


class CursorStore:
    def __init__(self, db: firestore.Client, windows: WindowStore, clock: Clock) -> None:
        self._db = db
        self._windows = windows
        self._clock = clock

    def cursor(self, source: str) -> firestore.DocumentReference:
        return self._windows.source(source)

    def step(
        self,
        source: str,
        lookback_ms: int,
        parallelism: int,
        delay_ms: int = AVAILABILITY_DELAY_MS,
        quiet_every_ms: int = 0,
        shared_wait_ms: int = 0,
        checks: Checks = NO_CHECKS,
    ) -> Step:
        """A planner run's move of the cursor, in one commit: the watermark over the contiguous
        finished windows, then the windows up to now - delay (2 min), to its last whole minute,
        planned, and the due late-record ``checks`` sent (both to be published). A quiet source
        (no window with a record in the last hour, counted from where planning started until
        one had: ``new_cursor``) waits for ``quiet_every_ms`` of span, and a child sharing its
        parent's budget for ``shared_wait_ms`` (``rate_share.shared_wait_ms``)."""
        return self._move(
            source,
            lookback_ms,
            functools.partial(
                planned_windows,
                parallelism=parallelism,
                delay_ms=delay_ms,
                quiet_every_ms=quiet_every_ms,
                shared_wait_ms=shared_wait_ms,
            ),
            checks,
        )

    def advance(self, source: str) -> int:
        """Moves the watermark over the contiguous finished windows, planning nothing; returns
        it (0 before the source's first run). ``step``'s first half alone: the tests of the
        passing rule (here and in the fake, tests/integration/gcp/test_store_contract.py) pass
        windows without planning the next ones."""
        return self._move(source, 0, None, NO_CHECKS).cursor.get("watermark_ms", 0)

    def _move(
        self,
        source: str,
        lookback_ms: int,
        plan: Callable[..., list[tuple[int, int]]] | None,
        checks: Checks,
    ) -> Step:
        """Reads the cursor and the windows from its watermark, then writes in one batch, each
        write on the condition that what it was decided from is unchanged (the cursor, each
        window passed; a window planned must not exist): two planners running at once never
        plan overlapping windows, and a window a check reopened meanwhile is not passed. On a
        conflict it reads again. The windows are read outside any transaction: one holding
        them would contend with every fetcher and check writing them."""
        for _ in range(PLAN_ATTEMPTS - 1):
            # Another planner run, or a check, wrote meanwhile: decided again from a new read.
            with contextlib.suppress(FailedPrecondition, AlreadyExists):
                return self._move_once(source, lookback_ms, plan, checks)
        return self._move_once(source, lookback_ms, plan, checks)  # the last conflict is raised

    def _move_once(
        self,
        source: str,
        lookback_ms: int,
        plan: Callable[..., list[tuple[int, int]]] | None,
        checks: Checks,
    ) -> Step:
        ref = self.cursor(source)
        now = now_ms(self._clock)
        snapshot = ref.get()
        if not snapshot.exists and plan is None:
            return Step([], {})
        cursor = (
            snapshot.to_dict()
            if snapshot.exists
            else new_cursor(first_planned_until(now, lookback_ms), now, checks.ages)
        )
        windows = self._ahead(source, cursor["watermark_ms"]) if snapshot.exists else []
        moved, count = watermark_run(
            cursor["watermark_ms"], (window.to_dict() for window in windows)
        )
        update: dict[str, Any] = {"watermark_ms": moved} if count else {}
        held = last_records(window.to_dict() for window in windows[:count])
        if held is not None:
            update[LAST_RECORDS] = held
        planned = []
        if plan is not None:
            update |= past_retention(
                cursor | update, retention_gap(cursor["planned_until_ms"], now), now
            )
            planned = plan(cursor | update, now)
            if planned:
                update["planned_until_ms"] = planned[-1][1]
        spans, sent = spans_due(cursor | update, now, checks)
        update |= sent
        if snapshot.exists and not update:
            return Step([], cursor)
        batch = self._db.batch()
        if snapshot.exists:
            unchanged = self._db.write_option(last_update_time=snapshot.update_time)
            batch.update(ref, update | {"updated_at_ms": now}, option=unchanged)
        else:
            batch.create(ref, cursor | update)
        # Only a window behind the watermark may expire: one deleted ahead of it would
        # leave a hole the watermark could never cross.
        for window in windows[:count]:
            unchanged = self._db.write_option(last_update_time=window.update_time)
            batch.update(
                window.reference, passed(window.to_dict(), now, checks.ages), option=unchanged
            )
        for mintime, maxtime in planned:
            window_ref = self._windows.window(source, window_id(mintime, maxtime))
            batch.create(window_ref, new_window(mintime, maxtime, now))
        batch.commit()
        tasks = [WindowTask(source, mintime, maxtime) for mintime, maxtime in planned]
        return Step(tasks, cursor | update, spans)

    def _ahead(self, source: str, watermark: int) -> list[firestore.DocumentSnapshot]:
        """The windows from the watermark on, by mintime (at most ``ADVANCE_SCAN``)."""
        query = (
            self._windows.windows(source)
            .where(filter=FieldFilter("mintime", ">=", watermark))
            .order_by("mintime")
            .select(["mintime", "maxtime", "state", "records"])
            .limit(ADVANCE_SCAN)
        )
        return list(query.stream())

    def status(self, source: str) -> dict[str, Any]:
        """The cursor, window counts by state, the stopped windows, what left Duo's retention
        before it was fetched, and the newest error, for operators."""
        snapshot = self.cursor(source).get()
        cursor = snapshot.to_dict() if snapshot.exists else {}
        windows = self._windows.windows(source)
        counts = {state: self._windows.count(source, state) for state in STATES}
        records = windows.sum("records").get()[0][0].value or 0
        rereads = windows.sum("rereads").get()[0][0].value or 0
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
            # Spans checked, each level's count kept on the cursor (``WindowStore.checked``).
            "checks": checked_spans(cursor),
            # Where each late-record check has got to (by REPAIR_CHECKS's ages).
            "checked_until_ms": [level["until_ms"] for level in cursor.get(CHECK_LEVELS) or []],
            "repairs": int(repairs),
            "quarantined": [w for w in stopped if w["state"] == QUARANTINED],
            "stalled": stalled,
            "retention_lost_ms": lost,
            "last_error": last_error,
            "gap_ms": cursor.get("gap_ms"),
        }


def new_cursor(start_ms: int, now_ms: int, checks: tuple[int, ...] = ()) -> dict[str, Any]:
    """A new source's cursor, planned from ``start_ms``: nothing is known to have held a record
    before it, so a source whose backfill holds none is quiet from the start, not an hour
    after it was added (a fleet's accounts are mostly quiet), and nothing before it is checked
    (``checks``, the late-record check ages)."""
    return {
        "planned_until_ms": start_ms,
        "watermark_ms": start_ms,
        LAST_RECORDS: start_ms,
        CHECK_LEVELS: start_levels(start_ms, checks),
        "created_at_ms": now_ms,
    }


def quiet_since(cursor: dict[str, Any]) -> int:
    """Since when the source has been quiet (``planning.quiet_wait_ms``): the end of the newest
    passed window that held records, or where planning started (or, for a cursor made before
    that was kept, its making)."""
    return cursor.get(LAST_RECORDS, cursor.get("created_at_ms", 0))


def planned_windows(
    cursor: dict[str, Any],
    now: int,
    *,
    parallelism: int,
    delay_ms: int,
    quiet_every_ms: int,
    shared_wait_ms: int,
) -> list[tuple[int, int]]:
    """The windows to plan from ``cursor`` (``planning.plan_windows``), a quiet source's and a
    child's wait applied: ``step``'s rule, and its fake's."""
    quiet = quiet_wait_ms(quiet_since(cursor), cursor["watermark_ms"], now, quiet_every_ms)
    wait = max(quiet, shared_wait_ms)
    return plan_windows(
        cursor["planned_until_ms"], now, parallelism, delay_ms=delay_ms, wait_ms=wait
    )


def _described(window_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_id": window_id,
        "state": doc["state"],
        "error": doc.get("error"),
        "failures": doc.get("failures", 0),
        "bucket_waits": doc.get("bucket_waits", 0),
        "updated_at_ms": doc["updated_at_ms"],
    }
