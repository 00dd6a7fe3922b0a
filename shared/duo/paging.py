"""Reads one time window of telephony logs, page by page, the way Duo documents paging.

The window ``[mintime, maxtime]`` (ms) is sent unchanged on every page, as Duo takes it (both
ends inclusive), and the records kept are those of ``[mintime, maxtime)``: windows are read
half-open, so that adjacent windows share their boundary millisecond and a record in it,
at whatever microsecond, belongs to exactly one of them. The token comes back verbatim, and an
absent or null ``next_offset`` ends the window, as does an empty page that hands back the token
it was given. Whether the page after a token repeats the token's own event is not confirmed,
so ids of the page before (or the id named by the resume token) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shared.duo.errors import DuoProtocolError, DuoTransientError
from shared.duo.records import RecordError, record_id, record_time_ms
from shared.duo.telephony import (
    AVAILABILITY_DELAY_MS,
    PAGE_LIMIT,
    RETENTION_MS,
    TELEPHONY_PATH,
)

T = TypeVar("T")
# A count asks for one record: it reads ``metadata.total_objects``, not records.
COUNT_LIMIT = 1
# Duo's tokens are ``"<ms>,<telephony_id>"``, about 50 characters; a longer one is refused
# here, where it is read, rather than in a record batch that could then never be written.
MAX_TOKEN_LENGTH = 1000


class WindowError(ValueError):
    """A window Duo would refuse; raised before any request is sent."""


class DuoGetter(Protocol):
    def get(self, path: str, params: dict[str, str], parse: Callable[[dict[str, Any]], T]) -> T: ...


@dataclass(frozen=True)
class DuoTotal:
    """Duo's ``total_objects``: exact, or a lower bound (``{"relation": "gte", ...}``)."""

    value: int
    exact: bool = True


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_offset: str | None  # resume right after this page; None: the window is done
    dropped: int = 0  # repeated ids or items outside the window, not returned
    total: DuoTotal | None = None  # Duo's count of the records of the window asked for


def check_window(mintime: int, maxtime: int, now_ms: int) -> None:
    if not (isinstance(mintime, int) and isinstance(maxtime, int)):
        raise WindowError(f"window bounds must be integers in ms, got {mintime!r}, {maxtime!r}")
    if maxtime <= mintime:
        raise WindowError(f"empty or inverted window: maxtime {maxtime} <= mintime {mintime}")
    if mintime < 100_000_000_000:
        raise WindowError(f"mintime {mintime} looks like seconds: Duo wants milliseconds")
    if mintime < now_ms - RETENTION_MS:
        raise WindowError(f"mintime {mintime} is older than Duo's 180-day retention")
    if maxtime > now_ms - AVAILABILITY_DELAY_MS:
        raise WindowError(
            f"maxtime {maxtime} is newer than now - 2 min ({now_ms - AVAILABILITY_DELAY_MS}): "
            "Duo has not published those logs yet"
        )


def token_event(next_offset: str) -> str | None:
    """The event id inside a token ``"<ms>,<telephony_id>"``; the token stays opaque otherwise."""
    _, sep, event = next_offset.partition(",")
    return event if sep and event else None


def token_position_ms(next_offset: str) -> int | None:
    """The time, in ms, up to which a token ``"<ms>,<telephony_id>"`` has read the window;
    None for a token of another shape (it stays opaque)."""
    head, sep, _ = next_offset.partition(",")
    return int(head) if sep and head.isdigit() else None


def read_window(
    duo: DuoGetter,
    mintime: int,
    maxtime: int,
    *,
    now_ms: int,
    next_offset: str | None = None,
) -> Iterator[Page]:
    """Yields the window's pages; pass a page's ``next_offset`` back to resume after it."""
    check_window(mintime, maxtime, now_ms)
    resumed_after = token_event(next_offset) if next_offset else None
    previous_ids = {resumed_after} if resumed_after else set()
    while True:
        params = {
            "mintime": str(mintime),
            "maxtime": str(maxtime),
            "limit": str(PAGE_LIMIT),
            "sort": "ts:asc",
        }
        if next_offset is not None:
            params["next_offset"] = next_offset
        items, following, total = duo.get(TELEPHONY_PATH, params, parse_page)
        kept: list[dict[str, Any]] = []
        page_ids: set[str] = set()
        new = 0  # events not seen on the page before (or named by the token)
        for item, event, ms in items:
            if event not in previous_ids and event not in page_ids:
                new += 1
                if mintime <= ms < maxtime:
                    kept.append(item)
            page_ids.add(event)
        if following is not None and following == next_offset:
            if new:
                raise DuoProtocolError(f"Duo returned the paging token it was given: {following!r}")
            # Nothing new after the token (at most the token's own event again), and the same
            # token: the window is exhausted.
            following = None
        yield Page(kept, following, dropped=len(items) - len(kept), total=total)
        if following is None:
            return
        previous_ids, next_offset = page_ids, following


def count_records(duo: DuoGetter, mintime: int, maxtime: int, *, now_ms: int) -> int | None:
    """How many records Duo holds in ``[mintime, maxtime]`` (ms, Duo's inclusive ends), from one
    request's ``metadata.total_objects``; None when Duo does not say exactly."""
    check_window(mintime, maxtime, now_ms)
    params = {
        "mintime": str(mintime),
        "maxtime": str(maxtime),
        "limit": str(COUNT_LIMIT),
        "sort": "ts:asc",
    }
    return duo.get(TELEPHONY_PATH, params, exact_total)


def exact_total(response: dict[str, Any]) -> int | None:
    """``metadata.total_objects`` when it is exact: an integer, or ``{"relation": "eq",
    "value": n}``; a lower bound (``"gte"``) or anything else counts as not known."""
    metadata = response.get("metadata")
    total = duo_total(metadata) if isinstance(metadata, dict) else None
    return total.value if total is not None and total.exact else None


def duo_total(metadata: dict[str, Any]) -> DuoTotal | None:
    """``metadata.total_objects``: an integer, or ``{"relation", "value"}`` (exact only when
    the relation is ``"eq"``); None when absent or of another shape."""
    total = metadata.get("total_objects")
    exact = True
    if isinstance(total, dict):
        exact = total.get("relation") == "eq"
        total = total.get("value")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        return None
    return DuoTotal(total, exact)


def parse_page(
    response: dict[str, Any],
) -> tuple[list[tuple[dict[str, Any], str, int]], str | None, DuoTotal | None]:
    """Checks one telephony response: (item, telephony_id, ms) per item, the next token, and
    Duo's count of the window's records (None when it gives none). A response without an items
    list is taken as garbled on the way (transient); items or a token that break Duo's contract
    are Duo's data, answered again alike (a protocol error)."""
    items = response.get("items")
    if not isinstance(items, list):
        raise DuoTransientError(f"Duo's response has no items list: {str(response)[:120]}")
    metadata = response.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DuoTransientError(f"Duo's response metadata is not an object: {metadata!r:.120}")
    following = metadata.get("next_offset")
    if following is not None and (not isinstance(following, str) or not following):
        raise DuoProtocolError(f"Duo returned a paging token that is not a string: {following!r}")
    if following is not None and len(following) > MAX_TOKEN_LENGTH:
        raise DuoProtocolError(
            f"Duo returned a paging token of {len(following)} characters "
            f"(at most {MAX_TOKEN_LENGTH} are kept): {following[:60]!r}..."
        )
    try:
        checked = [(item, record_id(item), record_time_ms(item)) for item in items]
    except RecordError as error:
        raise DuoProtocolError(f"Duo returned a malformed telephony item: {error}") from None
    return checked, following, duo_total(metadata)
