"""Which failures count against a window, and what clears the count: only the window's own
trouble quarantines it, trouble every window shares only backs off, and a published page
clears both counts (a page checkpointed but not published clears nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.duo.errors import (
    DuoClockSkewError,
    DuoConfigurationError,
    DuoInvalidRequestError,
    DuoProtocolError,
    DuoRateLimitedError,
    DuoTransientError,
)
from shared.duo.paging import WindowError
from shared.pipeline.windows import (
    FAILED,
    FETCHING,
    MAX_FAILURES,
    QUARANTINED,
    Claim,
    checkpoint,
    claim,
    new_window,
    own_trouble,
    release,
)

NOW = 1_800_000_000_000
HOUR = 3_600_000
MINUTE = 60_000
LEASE_MS = 600_000


@pytest.mark.parametrize(
    ("error", "own"),
    [
        (DuoProtocolError("Duo returned a malformed telephony item"), True),
        (DuoInvalidRequestError("Duo answered HTTP 400 code 40002"), True),
        (WindowError("maxtime is newer than now - 2 min"), True),
        (DuoTransientError("Duo answered HTTP 503"), False),
        (DuoRateLimitedError("Duo answered HTTP 429 code 42901"), False),
        (DuoConfigurationError("Duo answered HTTP 401 code 40103"), False),
        (DuoClockSkewError("Duo answered HTTP 401 code 40105"), False),
        # The pipeline's own infrastructure: Pub/Sub, Firestore, the shared limiter.
        (TimeoutError("Pub/Sub did not acknowledge the publish in 60 s"), False),
        (ConnectionError("Firestore is unavailable"), False),
        (RuntimeError("could not update the rate limit document in 10 attempts"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_only_the_windows_own_trouble_counts_against_it(error: BaseException, own: bool):
    assert own_trouble(error) is own


class Window:
    """One window's document, moved by the rules as its fetchers would."""

    def __init__(self) -> None:
        self.now = NOW
        self.doc: dict[str, Any] = new_window(NOW - 2 * HOUR, NOW - HOUR, NOW)

    def claim(self) -> Claim | None:
        taken, update = claim(self.doc, "eu-prod", "w", "owner", self.now, LEASE_MS)
        self.doc.update(update or {})
        return taken

    def fail(self, *, own: bool) -> float:
        """A fetch that claims the window and fails; the backoff it got, in minutes."""
        self.now = max(self.now, self.doc["retry_at_ms"])
        held = self.claim()
        assert held is not None
        self.doc.update(release(held, self.now, "it failed", own=own))
        return (self.doc["retry_at_ms"] - self.now) / MINUTE

    def save_page(self, held: Claim) -> Claim:
        after, update = checkpoint(
            held, self.doc, f"offset-{held.pages + 1}", 1000, self.now, LEASE_MS
        )
        self.doc.update(update)
        return after


def test_own_failures_quarantine_a_window_whatever_shared_trouble_came_between():
    window = Window()
    for _ in range(MAX_FAILURES - 1):
        window.fail(own=True)
    # Pub/Sub or Duo down for a day: it backs off, neither counting nor clearing its own.
    for _ in range(20):
        window.fail(own=False)
    assert (window.doc["state"], window.doc["failures"]) == (FAILED, MAX_FAILURES - 1)
    window.fail(own=True)
    assert (window.doc["state"], window.doc["failures"]) == (QUARANTINED, MAX_FAILURES)


def test_trouble_every_window_shares_backs_off_and_never_quarantines():
    window = Window()
    delays = [window.fail(own=False) for _ in range(MAX_FAILURES + 2)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert (window.doc["state"], window.doc["failures"]) == (FAILED, 0)


def test_a_saved_page_clears_the_count_so_deaths_spread_over_a_long_read_never_quarantine():
    # A backlog read for days: each fetcher saves a page, then dies (its lease runs out).
    window = Window()
    for _ in range(2 * MAX_FAILURES):
        held = window.claim()
        assert held is not None
        window.save_page(held)
        window.now += LEASE_MS + 1
    assert window.claim() is not None  # one death since its last page
    assert (window.doc["state"], window.doc["failures"]) == (FETCHING, 1)
    assert window.doc["pages"] == 2 * MAX_FAILURES


def test_a_page_whose_publish_failed_clears_nothing():
    window = Window()
    for own in (True, True, True, False):
        window.fail(own=own)
    window.now = window.doc["retry_at_ms"]
    before = window.claim()
    assert before is not None
    window.save_page(before)  # checkpointed: the page keeps its number...
    # ...but its publish failed: counted from the claim before the checkpoint.
    window.doc.update(release(before, window.now, "TimeoutError: Pub/Sub", own=False))
    assert (window.doc["failures"], window.doc["shared_failures"]) == (3, 2)
    assert window.doc["retry_at_ms"] - window.now == 16 * MINUTE  # the fifth failure in a row
    assert window.doc["pages"] == 1
