"""The window state machine: a window's document, how a fetcher's lease moves it, and what the
planner's sweep does with each open window. Pure rules; the Firestore store applies them.

  planned ──claim──▶ fetching ──last page checkpointed──▶ fetched ──all batches landed──▶ done
     ▲                 │  │
     └──hand on────────┘  └──failure──▶ failed ──retry_at──▶ (sent again, claimed again)
A lease not renewed in time lets another fetcher claim the window; a fetched window whose
batches went missing is planned again from its start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

PLANNED = "planned"
FETCHING = "fetching"
FETCHED = "fetched"  # every page is published; done once every batch is written
DONE = "done"
FAILED = "failed"
STATES = (PLANNED, FETCHING, FETCHED, DONE, FAILED)
OPEN_STATES = (PLANNED, FETCHING, FETCHED, FAILED)

# Finished windows and batch markers are kept this long (a TTL policy on expire_at).
DONE_RETENTION_MS = 30 * 86_400_000
# A failed window is tried again after 1 min, doubling per attempt, at most after an hour.
FAILED_RETRY_BASE_MS = 60_000
FAILED_RETRY_CAP_MS = 3_600_000

Update = dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """A fetcher's lease on a window, with where to resume."""

    source: str
    window_id: str
    owner: str
    mintime: int
    maxtime: int
    next_offset: str | None
    pages: int
    records: int
    attempts: int


def new_window(mintime: int, maxtime: int, planned_at_ms: int) -> Update:
    """The document of a window just planned."""
    return {
        "mintime": mintime,
        "maxtime": maxtime,
        "state": PLANNED,
        "next_offset": None,
        "pages": 0,
        "records": 0,
        "attempts": 0,
        "lease_owner": None,
        "lease_until_ms": 0,
        "retry_at_ms": 0,
        "error": None,
        "planned_at_ms": planned_at_ms,
        "updated_at_ms": planned_at_ms,
    }


def expiry(now: int) -> datetime:
    """When a finished document may go (a Firestore TTL policy on ``expire_at`` deletes it)."""
    return datetime.fromtimestamp((now + DONE_RETENTION_MS) / 1000, UTC)


def retry_at(attempts: int, now: int) -> int:
    """When a window that failed on its ``attempts``-th claim is tried again."""
    delay = min(FAILED_RETRY_CAP_MS, FAILED_RETRY_BASE_MS * 2 ** min(attempts - 1, 10))
    return now + delay


def claim(
    doc: Update, source: str, window_id: str, owner: str, now: int, lease_ms: int
) -> tuple[Claim, Update] | None:
    """The lease ``owner`` takes and the update that records it; None when the window is
    finished or leased by someone else."""
    if doc["state"] in (FETCHED, DONE):
        return None
    if doc["state"] == FETCHING and doc["lease_until_ms"] > now:
        return None
    attempts = doc["attempts"] + 1
    update = {
        "state": FETCHING,
        "lease_owner": owner,
        "lease_until_ms": now + lease_ms,
        "attempts": attempts,
        "updated_at_ms": now,
    }
    taken = Claim(
        source,
        window_id,
        owner,
        doc["mintime"],
        doc["maxtime"],
        doc["next_offset"],
        doc["pages"],
        doc["records"],
        attempts,
    )
    return taken, update


def holds_lease(doc: Update | None, held: Claim) -> bool:
    return doc is not None and doc["lease_owner"] == held.owner and doc["state"] == FETCHING


def checkpoint(
    held: Claim, next_offset: str | None, records: int, now: int, lease_ms: int
) -> tuple[Claim, Update]:
    """One more page published: where to resume, the lease renewed; the last page (no
    ``next_offset``) makes the window fetched."""
    update: Update = {
        "next_offset": next_offset,
        "pages": held.pages + 1,
        "records": held.records + records,
        "lease_until_ms": now + lease_ms,
        "updated_at_ms": now,
        "error": None,
    }
    if next_offset is None:
        update |= {"state": FETCHED, "fetched_at_ms": now, "lease_owner": None}
    after = replace(
        held, next_offset=next_offset, pages=held.pages + 1, records=held.records + records
    )
    return after, update


def release(now: int, error: str | None, retry_at_ms: int) -> Update:
    """The lease given back: planned again (handed on), or failed until ``retry_at_ms``."""
    update: Update = {"lease_owner": None, "lease_until_ms": 0, "updated_at_ms": now}
    if error is not None:
        return update | {"state": FAILED, "error": error, "retry_at_ms": retry_at_ms}
    return update | {"state": PLANNED}


@dataclass(frozen=True)
class SweepStep:
    """What the sweep does with one open window: the update to apply, and whether the window's
    task is sent again."""

    update: Update = field(default_factory=dict)
    republish: bool = False
    completed: bool = False
    refetch: bool = False


def sweep_step(
    doc: Update, now: int, lease_ms: int, landed_batches: Callable[[], int]
) -> SweepStep | None:
    """Finishes a fetched window whose batches have all landed; sends again a window never
    picked up, leased by a fetcher that died, failed and due, or missing batches after the
    lease. None: leave it. ``landed_batches`` is asked only for a fetched window."""
    state = doc["state"]
    touch = {"updated_at_ms": now}
    if state == FETCHED:
        if landed_batches() >= doc["pages"]:
            return SweepStep(
                {"state": DONE, "done_at_ms": now, "expire_at": expiry(now)} | touch,
                completed=True,
            )
        if doc.get("fetched_at_ms", now) + lease_ms < now:
            # Batches went missing (dead-lettered): fetch the window again; object names are
            # deterministic, so what was written is not written twice.
            return SweepStep(
                {
                    "state": PLANNED,
                    "next_offset": None,
                    "pages": 0,
                    "records": 0,
                    "error": "batches missing after the lease; fetching again",
                }
                | touch,
                republish=True,
                refetch=True,
            )
        return None
    if (
        (state == PLANNED and doc["updated_at_ms"] + lease_ms < now)
        or (state == FETCHING and doc["lease_until_ms"] < now)
        or (state == FAILED and doc["retry_at_ms"] <= now)
    ):
        if state == FAILED:
            touch["retry_at_ms"] = now + lease_ms
        return SweepStep(touch, republish=True)
    return None
