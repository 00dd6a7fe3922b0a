"""The window state machine: a window's document, how a fetcher's lease moves it, and what the
planner's sweep does with each open window. Pure rules; the Firestore store applies them.

  planned ──claim──▶ fetching ──last page checkpointed──▶ fetched ──all batches landed──▶ done
     ▲                 │  │  └──last page, no page numbered by the read──────────────────▶ done
     │                 │  │                                  │
     └──hand on────────┘  └──failure──▶ failed ──due──▶ planned
                                           │                 └─batches lost: read again─▶ planned
                          too many failures or re-reads ──▶ quarantined ──operator: retry──▶ planned

A fetcher holds a short lease and renews it while it works, so a window whose fetcher died is
taken up again within about a lease and a planner period. Only the window's own failures count
towards quarantine: Duo refusing it or answering it with broken data, or a fetcher that died
without saving a page since the last claim. Trouble every window shares (Duo's account, the
pipeline's Firestore, Pub/Sub and shared limiter) only backs off; a hand-off is no failure, and
a published page clears both counts. Pages are numbered for the window's whole life (a re-read
goes on from the last number), so a batch id, and the objects it names, is never reused for
other records. A page is checkpointed before its batch is published, so each number is given to one
page only; a batch that never lands is read again from the tokens its landed neighbours were
read with (a gap), not from the window's start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared.duo.errors import DuoError
from shared.duo.paging import WindowError, token_position_ms
from shared.duo.records import record_id, record_time_us

if TYPE_CHECKING:  # the settings check imports this module with the standard library only
    from shared.pipeline.messages import RecordBatch

K = TypeVar("K")

Update = dict[str, Any]

PLANNED = "planned"
FETCHING = "fetching"
FETCHED = "fetched"  # every page is checkpointed; done once every batch has landed
DONE = "done"
FAILED = "failed"
QUARANTINED = "quarantined"  # stopped after too many failures; an operator puts it back
STATES = (PLANNED, FETCHING, FETCHED, DONE, FAILED, QUARANTINED)
OPEN_STATES = (PLANNED, FETCHING, FETCHED, FAILED)

# A window done for good (done and behind the watermark) is kept this long after its last
# late-record check is due, then a Firestore TTL policy on expire_at deletes it.
DONE_RETENTION_MS = 30 * 86_400_000
# Any other window is never deleted: a TTL policy ignores a null. A reopened or stopped window
# behind the watermark must stay, to be read again and to be seen by status.
KEPT: Update = {"expire_at": None}
# Set on a window when the watermark passes it (ms).
PASSED = "passed_at_ms"
# Batch markers are kept as long as Duo keeps the records they name, and a little more: a
# window read for longer than a month must still know what it landed at its start.
MARKER_RETENTION_MS = 190 * 86_400_000
# A failed window is tried again after 1 min, doubling per failure, at most after an hour.
FAILED_RETRY_BASE_MS = 60_000
FAILED_RETRY_CAP_MS = 3_600_000
# The window's own failures in a row, without a page published in between, that quarantine it
# (about three hours of backoff). Trouble every window shares only backs off (own_trouble).
MAX_FAILURES = 8
# Times in a row a window is read again because its batches never landed (without finishing
# in between), before it is quarantined.
MAX_REREADS = 3
# A planned window nobody claimed is sent again after this (its task may have been lost).
RESEND_AFTER_MS = 600_000
# A fetched window whose batches have not all landed by then is read again: by then Pub/Sub
# has dead-lettered what kept failing (5 attempts, backoff up to a minute).
LANDING_TIMEOUT_MS = 900_000
# Planner runs in a row that a fetched window past its landing timeout waits because the bucket
# cannot be searched for its batches landed without a marker, before status calls it stalled.
BUCKET_WAITS_ALERT = 5
# A landed batch's marker keeps the token its page was read from and the token after it.
OFFSET_FIELDS = ("offset", "next_offset")
PageOffsets = tuple[str | None, str | None]


@dataclass(frozen=True)
class Claim:
    """A fetcher's lease on a window, with where to resume."""

    source: str
    window_id: str
    owner: str
    mintime: int
    maxtime: int
    next_offset: str | None
    pages: int  # pages checkpointed for this window so far: the next batch's number
    records: int
    attempts: int
    reread_from: int = 0  # > 0: a re-read, whose pages land only records not yet landed
    read_until: str | None = None  # a gap's re-read ends at this token, or past its time
    failures: int = 0  # the window's own failures in a row, when claimed or last published
    shared_failures: int = 0  # failures in a row from trouble every window shares
    read_offset: str | None = None  # where the read began: its first numbered page's start
    # The window was read to its end before (a re-read, even of one whose read numbered no page).
    again: bool = False


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
        "failures": 0,
        "shared_failures": 0,
        "rereads": 0,
        "reread_from": 0,
        "read_offset": None,
        "read_until": None,
        "lease_owner": None,
        "lease_until_ms": 0,
        "retry_at_ms": 0,
        "error": None,
        "planned_at_ms": planned_at_ms,
        "updated_at_ms": planned_at_ms,
    }


def landed_marker(batch: RecordBatch, objects: list[str], now: int) -> Update:
    """The marker of a batch durably in Storage: its objects, and the ids and time span of its
    records, which a re-read of the window reads to land only what is missing."""
    return marker(batch.page, batch.records, batch.offsets, objects, now)


def marker(
    page: int,
    records: list[dict[str, Any]],
    offsets: PageOffsets | None,
    objects: list[str],
    now: int,
) -> Update:
    """A landed batch's marker, from its records (a batch's, or an object's read back)."""
    times = [record_time_us(record) for record in records]
    return {
        "page": page,
        **({} if offsets is None else dict(zip(OFFSET_FIELDS, offsets, strict=True))),
        "records": len(records),
        "objects": objects,
        "ids": [record_id(record) for record in records],
        "first_us": min(times, default=None),
        "last_us": max(times, default=None),
        "written_at_ms": now,
        "expire_at": expiry(now, MARKER_RETENTION_MS),
    }


def marker_offsets(marker: Mapping[str, Any]) -> PageOffsets | None:
    """The paging tokens a landed batch was read between, from its marker; None for a marker
    written without them."""
    if not all(name in marker for name in OFFSET_FIELDS):
        return None
    return marker["offset"], marker["next_offset"]


def superseded(doc: Mapping[str, Any], page: int) -> bool:
    """Whether page ``page`` of a window (``doc``) belongs to a read that a re-read has replaced:
    it is numbered before the re-read's first page."""
    return doc.get("reread_from", 0) > page


def overlapping(
    spans: Iterable[tuple[K, int | None, int | None]], first_us: int, last_us: int
) -> list[K]:
    """Of landed batches given as ``(key, first_us, last_us)`` (their markers' record times),
    those whose records may be among a re-read page's, which span ``[first_us, last_us]``
    (both ends included): the ones whose ids the page must not land again. A batch without
    records holds none."""
    return [
        key
        for key, first, last in spans
        if first is not None and last is not None and first <= last_us and last >= first_us
    ]


def expiry(now: int, retention_ms: int = DONE_RETENTION_MS) -> datetime:
    """When a finished document may go (a Firestore TTL policy on ``expire_at`` deletes it)."""
    return datetime.fromtimestamp((now + retention_ms) / 1000, UTC)


def own_trouble(error: BaseException) -> bool:
    """Whether a fetch's failure is its window's own trouble, counted towards quarantine: Duo
    refusing the window or answering it with broken data. Everything else concerns every window
    alike and only backs off: Duo's account (credentials, throttling, outages) and the
    pipeline's own infrastructure (Firestore, Pub/Sub, the shared rate limiter), whatever it
    raised."""
    return isinstance(error, WindowError) or (
        isinstance(error, DuoError) and not error.account_wide
    )


def lifetime(doc: Update, now: int, checks: tuple[int, ...]) -> Update:
    """The expiry of a window document as an update leaves it (``doc``, the update applied):
    DONE_RETENTION_MS past its last late-record check (``checks``, the ages) once it is done
    for good, none before."""
    for_good = doc["state"] == DONE and _behind(doc)
    return {"expire_at": expiry(now + max(checks, default=0)) if for_good else None}


def _behind(doc: Update) -> bool:
    """Whether the watermark has passed the window."""
    # A window passed by a version before passed_at_ms was given its expiry at once.
    return PASSED in doc or doc.get("expire_at") is not None


def watermark_run(watermark: int, docs: Iterable[Update]) -> tuple[int, int]:
    """Where the watermark moves over ``docs`` (the windows from ``watermark`` on, by
    ``mintime``), and how many windows it passes: the contiguous done ones from it (windows
    are half-open, each starting where the one before ends)."""
    moved, count = watermark, 0
    for doc in docs:
        if doc["mintime"] != moved or doc["state"] != DONE:
            break
        moved, count = doc["maxtime"], count + 1
    return moved, count


def last_records(docs: Iterable[Update]) -> int | None:
    """The end of the newest of ``docs`` (windows the watermark passes) that held records: since
    when the source has been quiet, if it is. None when none held any."""
    return max((doc["maxtime"] for doc in docs if doc.get("records", 0) > 0), default=None)


def passed(doc: Update, now: int, checks: tuple[int, ...]) -> Update:
    """A done window the watermark has just passed: it expires once done for good."""
    update = {PASSED: now}
    return update | lifetime(doc | update, now, checks)


def bucket_wait(doc: Update, error: str, now: int) -> Update:
    """A fetched window left for the next run because the bucket could not be searched for its
    batches landed without a marker (reading them again could land them twice): counted, with
    why, so status can tell a window that waits from one that stalled."""
    waits = doc.get("bucket_waits", 0) + 1
    return {"bucket_waits": waits, "error": error, "updated_at_ms": now} | KEPT


def retry_at(failures: int, now: int) -> int:
    """When a window that has failed ``failures`` times in a row is tried again."""
    delay = min(FAILED_RETRY_CAP_MS, FAILED_RETRY_BASE_MS * 2 ** min(failures - 1, 10))
    return now + delay


def _quarantine(reason: str, now: int) -> Update:
    return {
        "state": QUARANTINED,
        "error": reason,
        "quarantined_at_ms": now,
        "lease_owner": None,
        "lease_until_ms": 0,
        "updated_at_ms": now,
    } | KEPT


def claim(
    doc: Update,
    source: str,
    window_id: str,
    owner: str,
    now: int,
    lease_ms: int,
    since: int | None = None,
) -> tuple[Claim | None, Update | None]:
    """The lease ``owner`` takes, and the update to write. No claim when the window is
    finished, quarantined, leased by someone else or failed and not yet due; an update without
    a claim when the claim finds the window's last fetcher dead once too often. ``since``: when
    the fetch began, if before the claim (its first page read unclaimed), which a read's rate
    is measured from."""
    state = doc["state"]
    if state in (FETCHED, DONE, QUARANTINED):
        return None, None
    if state == FETCHING and doc["lease_until_ms"] > now:
        return None, None
    if state == FAILED and doc["retry_at_ms"] > now:
        return None, None
    failures = doc.get("failures", 0)
    if state == FETCHING:
        # The lease ran out: its fetcher died without saving a page since it claimed.
        failures += 1
        if failures >= MAX_FAILURES:
            return None, _quarantine(
                f"its fetcher stopped {failures} times in a row without saving a page", now
            ) | {"failures": failures}
    attempts = doc["attempts"] + 1
    update = {
        "state": FETCHING,
        "lease_owner": owner,
        "lease_until_ms": now + lease_ms,
        "attempts": attempts,
        "failures": failures,
        "claimed_at_ms": now if since is None else min(since, now),
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
        doc.get("reread_from", 0),
        doc.get("read_until"),
        failures,
        doc.get("shared_failures", 0),
        doc.get("read_offset"),
        doc.get("reread_from", 0) > 0 or "fetched_at_ms" in doc,
    )
    return taken, update


def read_unclaimed(doc: Update) -> bool:
    """Whether a window's first page may be read before it is claimed: it is as the planner
    made it and sent it, once, and nobody has claimed it. Most such windows are a quiet
    minute's, whose one empty page then finishes them in one write (``done_unread``), with no
    claim and no checkpoint. One the sweep sent again (its task lost, or the read killed the
    fetcher) is claimed first, so a fetcher dying on it counts towards quarantine."""
    return (
        doc["state"] == PLANNED
        and doc["attempts"] == 0
        and doc["updated_at_ms"] == doc.get("planned_at_ms")
    )


def done_unread(
    doc: Update, source: str, window_id: str, now: int, checks: tuple[int, ...]
) -> Update:
    """A window (``read_unclaimed``) whose first page, read before any claim, was its last and
    held nothing: as a claim and that page's checkpoint leave it (done, given its first check),
    in one write."""
    taken, claimed = claim(doc, source, window_id, "", now, 0)
    if taken is None or claimed is None:
        raise ValueError(f"window {window_id} cannot be claimed: {doc['state']}")
    _, read = checkpoint(taken, doc | claimed, None, 0, now, 0, None, checks)
    return claimed | read


def holds_lease(doc: Update | None, held: Claim) -> bool:
    return doc is not None and doc["lease_owner"] == held.owner and doc["state"] == FETCHING


def renew(now: int, lease_ms: int) -> Update:
    """The lease extended while its holder works (between pages, during long waits)."""
    return {"lease_until_ms": now + lease_ms, "updated_at_ms": now}


def numbered(held: Claim, records: int) -> bool:
    """Whether a page read takes a number (and so a batch, objects and a marker): an empty page
    takes none while its read has numbered none, so a quiet window, or a re-read finding
    everything landed, costs no batch. Once a read has numbered a page, every page is, even
    empty: a read's batches chain by their tokens (the first starts at the read's start, each
    at the token the one before ended at, the last at none), and a gap is read again, and the
    bucket lookup knows a batch, by those tokens."""
    return records > 0 or held.pages > held.reread_from


def checkpoint(
    held: Claim,
    doc: Update,
    next_offset: str | None,
    records: int,
    now: int,
    lease_ms: int,
    lost_ms: tuple[int, int] | None = None,
    checks: tuple[int, ...] = (),
) -> tuple[Claim, Update]:
    """One more page read (``doc``: the window before it), about to be published when it is
    ``numbered``: where to resume, the lease renewed, the failure counts cleared (a release
    after its publish failed counts from the claim before it); the last page (no
    ``next_offset``) makes the window fetched, or done at once (``finished``; ``checks``, the
    late-record check ages) when its read numbered no page: no batch is outstanding. ``lost_ms``:
    the span that left Duo's retention before it was fetched, kept on the window for
    operators."""
    pages = held.pages + numbered(held, records)
    update: Update = {
        "next_offset": next_offset,
        "pages": pages,
        "records": held.records + records,
        "lease_until_ms": now + lease_ms,
        "updated_at_ms": now,
        "failures": 0,
        "shared_failures": 0,
        "error": None,
    }
    if next_offset is None:
        update |= {"state": FETCHED, "fetched_at_ms": now, "lease_owner": None}
        if pages == held.reread_from:
            update |= finished(doc | update, now, checks)
    if lost_ms is not None:
        update |= {"retention_lost": True, "retention_lost_ms": list(lost_ms)}
    after = replace(
        held,
        next_offset=next_offset,
        pages=pages,
        records=held.records + records,
        failures=0,
        shared_failures=0,
    )
    return after, update


def release(held: Claim, now: int, error: str | None, *, own: bool = True) -> Update:
    """The lease given back: planned again (handed on), or failed and backing off, the failure
    counted from ``held``: the claim as its last published page left it (a page checkpointed
    but not published is no progress). A window failing for its ``own`` reasons too often is
    quarantined; other failures (``own_trouble``) only back off, and neither clear nor add to
    its own count."""
    update: Update = {"lease_owner": None, "lease_until_ms": 0, "updated_at_ms": now}
    if error is None:
        return update | {"state": PLANNED}
    failures, shared = held.failures + own, held.shared_failures + (not own)
    counts = {"failures": failures, "shared_failures": shared}
    if failures >= MAX_FAILURES and own:
        return update | _quarantine(error, now) | counts
    failed = {"state": FAILED, "error": error, "retry_at_ms": retry_at(failures + shared, now)}
    return update | counts | failed | KEPT


def requeue(doc: Update, now: int) -> Update | None:
    """An operator puts a quarantined or failed window back: planned, counts cleared, sent by
    the next planner run. None when the window is not stopped."""
    if doc["state"] not in (QUARANTINED, FAILED):
        return None
    finished_a_read = doc["next_offset"] is None and doc["pages"] > 0
    whole = {"read_offset": None, "read_until": None} if finished_a_read else {}
    return whole | {
        # A window read to its end before it stopped is read again landing only what is
        # missing; one stopped mid-read resumes from its checkpoint.
        "reread_from": doc["pages"] if finished_a_read else doc.get("reread_from", 0),
        "state": PLANNED,
        "failures": 0,
        "shared_failures": 0,
        "landing_rereads": 0,
        "retry_at_ms": 0,
        "error": f"put back by an operator after: {doc.get('error')}",
        "updated_at_ms": 0,  # overdue: the next sweep sends it
        "requeued_at_ms": now,
    }


def reread(doc: Update, why: str, gap: Gap | None = None) -> Update:
    """The window read again, from its start or only over a ``gap``, numbering on: its pages
    land only the records that are not in the bucket yet, whatever the page boundaries are
    now."""
    offset, until = (gap.offset, gap.until) if gap else (None, None)
    return {
        "state": PLANNED,
        "next_offset": offset,
        "reread_from": doc["pages"],
        "read_offset": offset,
        "read_until": until,
        "error": why,
    } | KEPT


@dataclass(frozen=True)
class Gap:
    """Batches of the window's last read that never landed, and where to read them again:
    from ``offset`` (None: the read's start) to ``until``, the token the next landed batch was
    read from (None: to the window's end)."""

    first_page: int
    last_page: int
    offset: str | None
    until: str | None


def gap(doc: Update, landed: Mapping[int, PageOffsets | None]) -> Gap | None:
    """The span of the last read whose batches are missing, from its landed neighbours'
    tokens (``landed``: each landed page's offsets, None when its marker has none). None when
    nothing is missing, or when a neighbour's tokens are not known: then the whole window is
    read again."""
    start, pages = doc.get("reread_from", 0), doc["pages"]
    missing = [page for page in range(start, pages) if page not in landed]
    if not missing:
        return None
    first, last = missing[0], missing[-1]
    if first == start:
        offset = doc.get("read_offset")
    elif (before := landed[first - 1]) is not None:
        offset = before[1]
    else:
        return None
    if last == pages - 1:
        until = doc.get("read_until")
    elif (after := landed[last + 1]) is not None:
        until = after[0]
    else:
        return None
    return Gap(first, last, offset, until)


def gap_times_us(doc: Update, found: Gap | None) -> tuple[int, int]:
    """The record times (µs, both ends in) that a gap's batches lie between: from its start
    token's millisecond to the end of its end token's; the window's own ends where a token is
    absent or opaque (or there is no gap to bound: the whole window is read again)."""
    first = token_position_ms(found.offset) if found and found.offset else None
    last = token_position_ms(found.until) if found and found.until else None
    return (
        (doc["mintime"] if first is None else first) * 1000,
        (doc["maxtime"] if last is None else last + 1) * 1000 - 1,
    )


def past(following: str, until: str) -> bool:
    """Whether a gap's read is done: its next token is the one the next landed batch was read
    from, or lies past its time (page boundaries may differ the second time)."""
    position, end = token_position_ms(following), token_position_ms(until)
    return following == until or (position is not None and end is not None and position > end)


def reopened(doc: Update, level: int, now: int) -> Update:
    """A finished window Duo counted otherwise at check ``level``: read again, sent by the next
    sweep."""
    why = f"Duo counted other records than landed at check {level}; reading again"
    # The re-read clears the expiry a window passed by a version before passed_at_ms was
    # given: it is marked passed, or it would never expire once done again.
    behind = {PASSED: doc.get(PASSED, now)} if _behind(doc) else {}
    # updated_at 0: overdue, so the next sweep sends it.
    counts = {"repairs": doc.get("repairs", 0) + 1, "updated_at_ms": 0}
    return reread(doc, why) | behind | counts


def finished(doc: Update, now: int, checks: tuple[int, ...]) -> Update:
    """A window done: every batch of its last read has landed. A re-read behind the
    watermark, done again, expires once done for good (its last check by ``checks``)."""
    done = {
        "state": DONE,
        "done_at_ms": now,
        "landing_rereads": 0,
        "bucket_waits": 0,  # no longer waiting for the bucket
        "updated_at_ms": now,
    }
    return done | lifetime(doc | done, now, checks)


@dataclass(frozen=True)
class SweepStep:
    """What the sweep does with one open window: the update to apply, and whether the window's
    task is sent again."""

    update: Update = field(default_factory=dict)
    republish: bool = False
    completed: bool = False
    reread: bool = False


def sweep_step(
    doc: Update,
    now: int,
    landed_batches: Callable[[int], int],
    landed_offsets: Callable[[int], Mapping[int, PageOffsets | None]],
    checks: tuple[int, ...] = (),
    landing_timeout_ms: int = LANDING_TIMEOUT_MS,
) -> SweepStep | None:
    """Finishes a fetched window whose batches have all landed; sends again a window never
    picked up, leased by a fetcher that died, or failed and due; reads again the gap of a
    window whose batches did not land in time. None: leave it. ``landed_batches(from_page)``
    counts the landed batches numbered ``from_page`` or more, ``landed_offsets(from_page)``
    gives their offsets by page; they are asked only for a fetched window. ``checks``: the
    late-record check ages (``finished``)."""
    state = doc["state"]
    touch = {"updated_at_ms": now}
    if state == FETCHED:
        start = doc.get("reread_from", 0)
        # Leaving fetched, the window no longer waits for the bucket.
        settled = {"bucket_waits": 0}
        done = finished(doc, now, checks)
        if landed_batches(start) >= doc["pages"] - start:
            return SweepStep(done, completed=True)
        if doc.get("fetched_at_ms", now) + landing_timeout_ms >= now:
            return None
        # Asked for only now: the store may first find batches in the bucket whose marker was
        # never written.
        landed = landed_offsets(start)
        if all(page in landed for page in range(start, doc["pages"])):
            return SweepStep(done, completed=True)
        in_a_row = doc.get("landing_rereads", 0) + 1
        if in_a_row > MAX_REREADS:
            return SweepStep(
                _quarantine(f"its batches did not land after {MAX_REREADS} re-reads", now) | settled
            )
        missing = gap(doc, landed)
        why = (
            f"batches {missing.first_page}-{missing.last_page} missing after the landing "
            "timeout; reading their part of the window again"
            if missing
            else "batches missing after the landing timeout; reading the window again"
        )
        update = reread(doc, why, missing)
        counts = {"rereads": doc.get("rereads", 0) + 1, "landing_rereads": in_a_row} | settled
        return SweepStep(update | counts | touch, republish=True, reread=True)
    if (
        (state == PLANNED and doc["updated_at_ms"] + RESEND_AFTER_MS < now)
        or (state == FETCHING and doc["lease_until_ms"] < now)
        or (state == FAILED and doc["retry_at_ms"] <= now)
    ):
        if state == FAILED:
            touch["state"] = PLANNED  # due: claimable again
        return SweepStep(touch, republish=True)
    return None
