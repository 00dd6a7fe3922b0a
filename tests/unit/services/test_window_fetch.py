"""The fetcher's work on one window task, against in-memory stores, publisher and Duo.

What matters to the pipeline: a page's number is checkpointed before its batch is published, so
no number ever names two different pages; a crash between the two leaves a gap that is read
again from its neighbours' tokens; a window too long for one request is handed on; a Duo
failure parks the window until a retry time that backs off.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from services.fetcher.window_fetch import FetchReport, WindowFetcher
from shared.clock import now_ms
from shared.duo.errors import DuoProtocolError, DuoTransientError
from shared.pipeline.messages import RecordBatch, SpanCheck, WindowTask
from shared.pipeline.repair import CHECK_LEVELS
from shared.pipeline.windows import LANDING_TIMEOUT_MS, RESEND_AFTER_MS, reopened, reread
from tests.fakes import FakeClock
from tests.unit.services.fakes import (
    CountingDuo,
    FakeDuo,
    FakePublisher,
    FakeWindowStore,
    paged,
    telephony_item,
)

NOW_MS = now_ms(FakeClock())
HOUR = 3_600_000
TASK = WindowTask("eu-prod", NOW_MS - 2 * HOUR, NOW_MS - HOUR - 1)
LEASE = 600.0
MINUTE_MS = 60_000


def item(n: int) -> dict[str, Any]:
    return telephony_item(f"t-{n:04d}", TASK.mintime + n * 1000)


def page(*numbers: int) -> list[dict[str, Any]]:
    return [item(n) for n in numbers]


class Rig:
    """A WindowFetcher on fakes sharing one event log; each delivery gets a new Duo client, as
    DuoClients.api gives one with its own counters."""

    def __init__(
        self,
        answers: dict[str | None, Any],
        *,
        budget: float = 240.0,
        should_stop: bool = False,
        enrich_host: dict[str, str] | None = None,
        repair_checks: tuple[int, ...] = (),
        counting: CountingDuo | None = None,
        **duo_options: Any,
    ) -> None:
        self.answers = answers
        self.counting = counting  # when given, the Duo every delivery gets
        self.duo_options = duo_options
        self.duos: list[FakeDuo] = []
        self.live: list[bool] = []  # per Duo client asked for: a live window's or not
        self.events: list[tuple[Any, ...]] = []
        # The sources set back to every planner run, each with the window's records then.
        self.woken: list[tuple[str, int]] = []
        self.wake_fails = False
        self.clock = FakeClock()
        self.store = FakeWindowStore(self.clock, self.events)
        self.store.add(TASK)
        self.publisher = FakePublisher(self.events)
        self.fetcher = WindowFetcher(
            self.store,
            self.publisher,
            self._duo_for,
            self.clock,
            lease_seconds=LEASE,
            time_budget_seconds=budget,
            enrich_host=enrich_host.__getitem__ if enrich_host else None,
            should_stop=lambda: should_stop,
            repair_checks=repair_checks,
            record_wake=self._wake,
        )

    def _wake(self, source: str, wake_at_ms: int | None) -> None:
        if self.wake_fails:
            raise ConnectionError("Firestore is unavailable")
        assert wake_at_ms is None  # every run
        self.woken.append((source, self.doc["records"]))

    def _duo_for(self, source: str, live: bool) -> FakeDuo | CountingDuo:
        self.live.append(live)
        if self.counting is not None:
            return self.counting
        duo = FakeDuo(self.answers, self.events, self.clock, **self.duo_options)
        self.duos.append(duo)
        return duo

    @property
    def duo_requests(self) -> list[dict[str, str]]:
        return [params for duo in self.duos for params in duo.params]

    def fetch(self, task: WindowTask = TASK) -> FetchReport:
        return self.fetcher.fetch(task)

    @property
    def doc(self) -> dict[str, Any]:
        return self.store.doc(TASK)

    def published_pages(self) -> list[int]:
        return [batch.page for batch in self.publisher.batches]

    def published_ids(self) -> list[list[str]]:
        return [[r["telephony_id"] for r in batch.records] for batch in self.publisher.batches]

    def after_claim(self) -> list[tuple[Any, ...]]:
        """The events, owners left out (they are random in Firestore)."""
        return [event for event in self.events if event[0] != "claim"]


THREE_PAGES = paged([page(1, 2), page(3, 4), page(5)])
FIRST, SECOND, THIRD = THREE_PAGES  # the tokens that ask for each page (None, then two)


def test_a_shared_childs_live_read_starts_at_its_time_not_when_its_task_arrives():
    rig = Rig(paged([page(1)]))
    start = NOW_MS + 42_000
    rig.fetch(dataclasses.replace(TASK, start_at_ms=start))
    assert rig.clock.sleeps == [42.0]  # waited before claiming the window
    assert rig.store.doc(TASK)["fetched_at_ms"] == start  # read at its time
    rig = Rig(paged([page(1)]))
    rig.fetch(dataclasses.replace(TASK, start_at_ms=NOW_MS - 5_000))  # late: read at once
    assert rig.clock.sleeps == []


def test_each_page_is_checkpointed_before_it_is_published_with_the_tokens_it_lies_between():
    rig = Rig(THREE_PAGES)
    report = rig.fetch()
    assert rig.after_claim() == [
        ("duo", None),
        ("checkpoint", 0, SECOND),
        ("publish_batch", 0),
        ("duo", SECOND),
        ("checkpoint", 1, THIRD),
        ("publish_batch", 1),
        ("duo", THIRD),
        ("checkpoint", 2, None),
        ("publish_batch", 2),
    ]
    assert report.outcome == "fetched"
    assert [b.batch_id for b in rig.publisher.batches] == [
        f"{TASK.window_id}-p00000",
        f"{TASK.window_id}-p00001",
        f"{TASK.window_id}-p00002",
    ]
    assert [b.offsets for b in rig.publisher.batches] == [
        (None, SECOND),
        (SECOND, THIRD),
        (THIRD, None),
    ]
    assert (rig.doc["state"], rig.doc["pages"], rig.doc["records"]) == ("fetched", 3, 5)


def test_a_page_whose_checkpoint_fails_is_not_published_and_is_read_again_under_its_number():
    rig = Rig(THREE_PAGES)
    rig.store.failing_checkpoints = {1}
    with pytest.raises(ConnectionError):
        rig.fetch()
    assert rig.published_pages() == [0]
    rig.store.failing_checkpoints.clear()
    rig.clock.advance(60)  # the failure's backoff
    assert rig.fetch().outcome == "fetched"
    assert rig.published_pages() == [0, 1, 2]
    assert rig.published_ids() == [["t-0001", "t-0002"], ["t-0003", "t-0004"], ["t-0005"]]
    assert rig.doc["records"] == 5


def _land_all(rig: Rig) -> None:
    for batch in rig.publisher.batches:
        rig.store.record_batch(batch, [batch.batch_id])


def test_a_fetcher_dying_between_checkpoint_and_publish_costs_a_gap_read_landing_each_record_once():
    # The README's old known limit: a page published, then its fetcher died before the
    # checkpoint; read again after Duo published a late record inside it, the page differed,
    # and whichever version landed first won: one record twice, another never. Now the page
    # number is taken before the publish, so the lost page is a gap, read again from its
    # neighbours' tokens.
    rig = Rig(dict(THREE_PAGES))
    rig.publisher.failing_pages = {1}  # the fetcher dies publishing page 1
    with pytest.raises(TimeoutError):
        rig.fetch()
    assert (rig.doc["pages"], rig.doc["next_offset"]) == (2, THIRD)
    rig.publisher.failing_pages.clear()
    rig.clock.advance(60)
    assert rig.fetch().outcome == "fetched"
    assert rig.published_pages() == [0, 2]  # page 1 is never published under another content
    _land_all(rig)

    # Meanwhile Duo published a late record 3.5 (inside page 1) and one 4.5 (inside page 2).
    late = [telephony_item("t-late3", TASK.mintime + 3500)]
    late_in_2 = [telephony_item("t-late4", TASK.mintime + 4500)]
    rig.answers.clear()
    rig.answers.update(
        {
            SECOND: {
                "items": [item(3), *late, item(4)],
                "metadata": {"next_offset": THIRD},
            },
            THIRD: {"items": [*late_in_2, item(5)], "metadata": {"next_offset": None}},
        }
    )
    rig.clock.advance(LANDING_TIMEOUT_MS / 1000 + 1)
    assert rig.store.sweep(TASK.source).rereads == 1
    assert (rig.doc["next_offset"], rig.doc["read_until"]) == (SECOND, THIRD)
    rig.events.clear()

    report = rig.fetch()

    # One request: it ends at the token page 2 was read from, and page 2 landed.
    assert [e[1] for e in rig.events if e[0] == "duo"] == [SECOND]
    assert report.outcome == "fetched"
    assert rig.published_pages()[2:] == [3]
    assert rig.published_ids()[2:] == [["t-0003", "t-late3", "t-0004"]]
    _land_all(rig)
    assert rig.store.sweep(TASK.source).completed == 1
    landed = [i for m in rig.store.markers.values() for i in m["ids"]]
    # Each record once; 4.5, late in a page that landed, is the late-record check's to find.
    assert sorted(landed) == ["t-0001", "t-0002", "t-0003", "t-0004", "t-0005", "t-late3"]


def test_past_its_time_budget_a_fetch_hands_the_rest_of_the_window_on():
    four_pages = paged([page(1), page(2), page(3), page(4)])
    tokens = list(four_pages)
    rig = Rig(four_pages, budget=10.0, seconds_per_call=4.0)
    report = rig.fetch()
    assert (report.outcome, report.pages, report.error) == ("handed_on", 3, None)
    # Checkpointed, then given back, then sent again: the next delivery can claim it.
    assert rig.after_claim()[-4:] == [
        ("checkpoint", 2, tokens[3]),
        ("publish_batch", 2),
        ("release", None),
        ("publish_tasks", [TASK]),
    ]
    assert rig.doc["state"] == "planned"
    assert rig.doc["error"] is None

    rig.events.clear()
    report = rig.fetch(rig.publisher.tasks[0])
    assert report.outcome == "fetched"
    assert rig.after_claim()[0] == ("duo", tokens[3])
    assert rig.published_pages() == [0, 1, 2, 3]


def test_each_checkpoint_keeps_duos_count_and_the_records_read_for_the_progress_shown():
    pages = paged([page(1, 2), page(3, 4), page(5, 6), page(7)])
    for answer in pages.values():
        answer["metadata"]["total_objects"] = 7
    rig = Rig(pages, budget=10.0, seconds_per_call=4.0)
    assert rig.fetch().outcome == "handed_on"  # three pages, 4 s each

    # The planner's run reads it with the windows it sweeps.
    progress = rig.store.sweep(TASK.source).reading
    # 6 records in the 12 s since the claim: 30 a minute; 1 to go, 2 s.
    assert (progress.records, progress.total, progress.per_minute) == (6, 7, 30.0)
    assert progress.minutes_left * 60 == pytest.approx(2.0)


def test_a_stopping_instance_hands_the_window_on_after_the_page_in_hand():
    rig = Rig(THREE_PAGES, should_stop=True)
    report = rig.fetch()
    assert (report.outcome, report.pages) == ("handed_on", 1)
    assert rig.after_claim() == [
        ("duo", None),
        ("checkpoint", 0, SECOND),
        ("publish_batch", 0),
        ("release", None),
        ("publish_tasks", [TASK]),
    ]


def test_a_fetch_that_lost_its_lease_stops_and_leaves_the_new_owner_alone():
    rig = Rig(THREE_PAGES)
    taken_over = []

    def lease_runs_out_and_another_fetcher_claims() -> None:
        if rig.doc["pages"] and not taken_over:  # while the second page is read
            rig.clock.advance(LEASE + 1)
            taken_over.append(rig.store.claim(TASK.source, TASK.window_id, LEASE))

    rig.duo_options["during_call"] = lease_runs_out_and_another_fetcher_claims
    report = rig.fetch()
    assert (report.outcome, report.pages) == ("lost_lease", 1)
    assert [event[0] for event in rig.events].count("duo") == 2
    assert rig.doc["lease_owner"] == taken_over[0].owner
    assert (rig.doc["state"], rig.doc["pages"]) == ("fetching", 1)
    assert rig.publisher.tasks == []


def test_a_duo_failure_parks_the_window_until_a_retry_time_in_the_future():
    error = DuoTransientError("Duo answered HTTP 503")
    rig = Rig({FIRST: THREE_PAGES[FIRST], SECOND: error})
    report = rig.fetch()
    assert (report.outcome, report.error, report.pages) == ("failed", str(error), 1)
    assert rig.doc["state"] == "failed"
    assert rig.doc["error"] == str(error)
    assert rig.doc["retry_at_ms"] > now_ms(rig.clock)
    assert rig.doc["lease_owner"] is None
    assert (rig.doc["pages"], rig.doc["next_offset"]) == (1, SECOND)  # page 0 stays done


def test_the_retry_delay_doubles_with_each_failed_attempt_up_to_an_hour():
    rig = Rig({FIRST: DuoTransientError("Duo answered HTTP 500")})
    delays = []
    for _ in range(9):
        assert rig.fetch().outcome == "failed"
        delays.append((rig.doc["retry_at_ms"] - now_ms(rig.clock)) / MINUTE_MS)
        rig.clock.advance(delays[-1] * 60)
    # Duo's own trouble (a 5xx) only backs off: it never quarantines a window.
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert rig.doc["state"] == "failed"


def test_a_window_duo_would_refuse_fails_without_a_request():
    too_recent = WindowTask(TASK.source, NOW_MS - 5 * MINUTE_MS, NOW_MS - MINUTE_MS)
    rig = Rig(THREE_PAGES)
    rig.store.add(too_recent)
    report = rig.fetch(too_recent)
    assert report.outcome == "failed"
    assert "Duo has not published those logs yet" in report.error
    assert rig.store.doc(too_recent)["state"] == "failed"
    assert report.requests == 0


def test_enrichment_adds_the_event_type_and_the_sources_api_host():
    rig = Rig(THREE_PAGES, enrich_host={"eu-prod": "api-eu01.duosecurity.com"})
    rig.fetch()
    first = rig.publisher.batches[0].records[0]
    assert first == item(1) | {"eventtype": "telephony", "host": "api-eu01.duosecurity.com"}


def test_without_enrichment_records_are_published_as_duo_sent_them():
    rig = Rig(THREE_PAGES)
    rig.fetch()
    assert rig.publisher.batches[0].records == page(1, 2)


def test_an_id_repeated_in_a_page_or_across_pages_is_published_once():
    # Duo may serve the token's own event again at the top of the next page.
    rig = Rig(paged([page(1, 2, 2), page(2, 3)]))
    report = rig.fetch()
    assert rig.published_ids() == [["t-0001", "t-0002"], ["t-0003"]]
    assert (report.records, report.dropped) == (3, 2)
    assert rig.doc["records"] == 3


def test_the_report_counts_this_delivery_and_the_whole_window():
    four_pages = paged([page(1), page(2, 3), page(4, 5), page(6)])
    rig = Rig(
        four_pages, budget=2.0, seconds_per_call=1.25, rate_limited_per_call=2, transient_per_call=1
    )
    assert rig.fetch().outcome == "handed_on"
    report = rig.fetch()
    assert report == FetchReport(
        source="eu-prod",
        window_id=TASK.window_id,
        outcome="fetched",
        pages=2,
        records=3,
        dropped=0,
        requests=8,  # each answer came after two 429s and one 5xx
        rate_limited=4,
        transient_failures=2,
        seconds=2.5,
        error=None,
        window_records=6,
    )


def test_a_finished_window_is_skipped_without_asking_duo():
    rig = Rig(THREE_PAGES)
    rig.fetch()
    rig.events.clear()
    report = rig.fetch()
    assert report == FetchReport("eu-prod", TASK.window_id, "skipped")
    assert rig.events == []


# --- issue 8: re-reads, the retention edge, the lease, poison windows ----------------------


def test_a_reread_lands_only_records_not_in_the_bucket_whatever_the_page_boundaries():
    # Issue 8, case 3. The first read's pages were [1 2] [3 4] [5]; page 1 ([3 4]) never
    # landed. Since then a late record 6 arrived between 2 and 3, so the re-read's pages are
    # [1 2 6] [3 4] [5]: page boundaries moved. Only 6, 3 and 4 may land again.
    late = telephony_item("t-0006", TASK.mintime + 2500)
    rig = Rig(paged([[item(1), item(2), late], page(3, 4), page(5)]))
    rig.store.docs[TASK.source, TASK.window_id] |= {"pages": 3, "reread_from": 3}
    rig.store.record_batch(RecordBatch(TASK.source, TASK.window_id, 0, page(1, 2)), ["p0"])
    rig.store.record_batch(RecordBatch(TASK.source, TASK.window_id, 2, page(5)), ["p2"])

    report = rig.fetch()

    assert report.outcome == "fetched"
    # Numbered on from 3: no batch id, no object name, is reused.
    assert rig.published_pages() == [3, 4, 5]
    assert rig.published_ids() == [["t-0006"], ["t-0003", "t-0004"], []]
    assert report.already_landed == 3
    # The landed batches' spans are read once for the whole re-read, not once a page.
    assert rig.events.count(("landed_spans", TASK.window_id)) == 1


def test_a_quiet_window_publishes_nothing_and_is_done_at_once():
    # Most accounts are silent most minutes: an empty window cost a batch, its marker and a
    # sweep's write. Now nothing is outstanding once its one empty page is checkpointed.
    rig = Rig({None: {"items": [], "metadata": {"next_offset": None}}}, repair_checks=(HOUR,))
    report = rig.fetch()
    assert (report.outcome, report.pages, rig.publisher.batches) == ("fetched", 0, [])
    assert (rig.doc["state"], rig.doc["pages"], rig.doc["lease_owner"]) == ("done", 0, None)
    assert rig.store.sweep(TASK.source).completed == 0  # nothing left for the sweep


QUIET = {None: {"items": [], "metadata": {"next_offset": None}}}


def test_a_quiet_window_never_claimed_is_read_first_and_done_in_one_write_without_a_claim():
    rig = Rig(QUIET, repair_checks=(HOUR,))
    report = rig.fetch()
    assert report.outcome == "fetched"
    assert rig.events == [("duo", None), ("done_unread", TASK.window_id)]
    # As a claim and its checkpoint left it: done, the claim counted.
    assert (rig.doc["state"], rig.doc["attempts"], rig.doc["lease_owner"]) == ("done", 1, None)
    assert rig.doc["fetched_at_ms"] == rig.doc["done_at_ms"] == now_ms(rig.clock)


def test_a_window_with_records_is_claimed_after_its_first_page_and_goes_on_from_it():
    rig = Rig(THREE_PAGES)
    rig.fetch()
    assert [event[0] for event in rig.events[:3]] == ["duo", "claim", "checkpoint"]
    assert [params.get("next_offset") for params in rig.duo_requests] == [None, SECOND, THIRD]
    assert rig.published_ids() == [["t-0001", "t-0002"], ["t-0003", "t-0004"], ["t-0005"]]


def test_a_long_windows_first_records_set_its_source_back_to_every_run_once_before_counted():
    # A quiet source sleeps until its next window can be planned (shared.pipeline.wake):
    # records in this one mean more may follow each minute.
    rig = Rig(THREE_PAGES)
    rig.fetch()
    assert rig.woken == [(TASK.source, 0)]  # before its first page with records is counted
    assert rig.doc["records"] == 5


def test_a_source_is_woken_though_its_fetch_dies_after_the_first_records_checkpoint():
    # Redelivered, the window holds records already: the wake must not wait for that.
    rig = Rig(dict(THREE_PAGES))
    rig.publisher.failing_pages = {0}
    with pytest.raises(TimeoutError):
        rig.fetch()
    assert rig.woken == [(TASK.source, 0)]


def test_a_minute_window_an_empty_one_or_a_reread_wakes_no_source():
    minute = WindowTask(TASK.source, TASK.mintime, TASK.mintime + MINUTE_MS)
    rig = Rig(paged([page(1)]))
    rig.store.add(minute)
    assert rig.fetch(minute).outcome == "fetched"
    assert rig.woken == []  # a busy source's: it runs every minute
    rig = Rig(dict(QUIET), repair_checks=(HOUR,))
    rig.fetch()
    rig.store.docs[TASK.source, TASK.window_id] |= reopened(rig.doc, 0, NOW_MS)
    rig.answers[None] = {"items": page(1), "metadata": {"next_offset": None}}
    assert rig.fetch().reread  # late records of a window long passed
    assert rig.woken == []


def test_a_wake_that_cannot_be_written_leaves_the_records_fetched():
    rig = Rig(THREE_PAGES)
    rig.wake_fails = True
    assert rig.fetch().outcome == "fetched"
    assert rig.published_pages() == [0, 1, 2]


def _meanwhile(rig: Rig, change: Any) -> None:
    """``change`` runs once, while the first page of the fetch under test is read."""

    def once() -> None:
        if not rig.events.count(("meanwhile",)):
            rig.events.append(("meanwhile",))
            change()

    rig.duo_options["during_call"] = once


def test_a_window_fetched_by_another_fetcher_during_the_unclaimed_read_is_left_to_it():
    # Two deliveries of one task at once: both read the first page (a request each), the first
    # to write wins, and what the other read is dropped: no batch twice, none lost.
    rig = Rig(QUIET, repair_checks=(HOUR,))

    def other_fetcher() -> None:
        rig.answers = THREE_PAGES  # its first page held records (Duo's answer moved on)
        assert rig.fetch().outcome == "fetched"

    _meanwhile(rig, other_fetcher)
    report = rig.fetch()  # this one's first page: empty and the last
    assert (report.outcome, report.requests) == ("skipped", 1)
    assert rig.published_pages() == [0, 1, 2]  # the other fetcher's, each once
    assert (rig.doc["state"], rig.doc["pages"], rig.doc["records"]) == ("fetched", 3, 5)
    assert "done_unread" not in [event[0] for event in rig.events]


def test_two_deliveries_of_a_quiet_window_at_once_both_ask_duo_and_it_is_done_once():
    rig = Rig(QUIET, repair_checks=(HOUR,))
    reports = []
    _meanwhile(rig, lambda: reports.append(rig.fetch()))
    reports.append(rig.fetch())
    assert [(r.outcome, r.requests) for r in reports] == [("fetched", 1), ("skipped", 1)]
    assert [event[0] for event in rig.events].count("done_unread") == 1
    assert (rig.doc["state"], rig.doc["attempts"], rig.publisher.batches) == ("done", 1, [])


def test_a_window_sent_again_during_its_unclaimed_read_is_claimed_and_its_page_kept():
    # The sweep sent it again meanwhile (its task looked lost): the window changed, so the
    # write on what was read fails; the claim finds nothing read of it, and the page read
    # stands as its first, without asking Duo again.
    rig = Rig(QUIET, repair_checks=(HOUR,))

    def sweep_sends_it_again() -> None:
        rig.clock.advance(RESEND_AFTER_MS / 1000 + 1)
        assert rig.store.sweep(TASK.source).republish == [TASK]

    _meanwhile(rig, sweep_sends_it_again)
    report = rig.fetch()
    assert (report.outcome, report.requests) == ("fetched", 1)
    assert rig.after_claim() == [("duo", None), ("meanwhile",), ("checkpoint", 0, None)]
    assert (rig.doc["state"], rig.doc["attempts"]) == ("done", 1)


def test_a_window_the_sweep_sent_again_is_claimed_before_its_first_page_is_read():
    # Its task was lost, or its unclaimed read killed the fetcher: claimed first, a fetcher
    # dying on it counts towards quarantine.
    rig = Rig(QUIET)
    rig.doc["updated_at_ms"] += RESEND_AFTER_MS + 1
    rig.fetch()
    assert [event[0] for event in rig.events] == ["claim", "duo", "checkpoint"]


def test_a_duo_failure_of_the_unclaimed_read_is_counted_as_a_claimed_fetchs_is():
    error = DuoProtocolError("an item without an id")
    rig = Rig({FIRST: error})
    report = rig.fetch()
    assert (report.outcome, report.error) == ("failed", str(error))
    assert (rig.doc["state"], rig.doc["failures"], rig.doc["attempts"]) == ("failed", 1, 1)


def test_a_quiet_window_a_check_finds_a_record_in_is_read_again_from_page_zero():
    rig = Rig({None: {"items": [], "metadata": {"next_offset": None}}}, repair_checks=(HOUR,))
    rig.fetch()
    rig.store.docs[TASK.source, TASK.window_id] |= reopened(rig.doc, 0, NOW_MS)
    rig.answers[None] = {"items": page(1), "metadata": {"next_offset": None}}
    report = rig.fetch()
    # Counted as a repair's re-read (the bench's repair cost), though it numbered no page.
    assert (report.reread, rig.published_pages(), rig.doc["state"]) == (True, [0], "fetched")


def test_a_reread_that_finds_every_record_landed_publishes_nothing_and_is_done():
    rig = Rig(THREE_PAGES)
    rig.fetch()
    _land_all(rig)
    rig.store.sweep(TASK.source)
    # A late-record check found nothing new after all (Duo counted otherwise, then not).
    rig.store.docs[TASK.source, TASK.window_id] |= reread(rig.doc, "checked") | {"updated_at_ms": 0}
    rig.publisher.batches.clear()
    report = rig.fetch()
    assert (report.outcome, report.already_landed, rig.publisher.batches) == ("fetched", 5, [])
    assert (rig.doc["state"], rig.doc["pages"], rig.doc["reread_from"]) == ("done", 3, 3)
    assert rig.doc["read_records"] == 5  # the progress shown counts the unnumbered pages' reads


def test_empty_pages_before_a_reads_first_records_take_no_number_and_its_batch_starts_the_read():
    # Duo may answer a page with nothing but a token (past records a page filtered out).
    a, b = f"{TASK.mintime + 100},t-a", f"{TASK.mintime + 200},t-b"
    rig = Rig(
        {
            None: {"items": [], "metadata": {"next_offset": a}},
            a: {"items": [], "metadata": {"next_offset": b}},
            b: {"items": page(1), "metadata": {"next_offset": None}},
        }
    )
    rig.fetch()
    assert (rig.published_pages(), rig.publisher.batches[0].offsets) == ([0], (None, None))
    assert (rig.doc["pages"], rig.doc["read_records"]) == (1, 1)


def test_an_empty_last_page_after_published_ones_keeps_its_number_so_the_tokens_chain():
    # The bucket lookup and a gap's read know a batch by the tokens its neighbours ended and
    # started at, the read's last ending at none: a read that published pages ends with one.
    rig = Rig(paged([page(1, 2), []]))
    rig.fetch()
    assert rig.published_ids() == [["t-0001", "t-0002"], []]
    assert rig.publisher.batches[-1].offsets[1] is None
    assert rig.doc["state"] == "fetched"


def test_a_window_older_than_duos_retention_is_shrunk_and_the_loss_named():
    # Issue 8, case 2: the first window of a 180-day backlog still being fetched when its
    # start leaves the retention: fetch what Duo still has instead of failing for ever.
    from shared.duo.telephony import RETENTION_MS
    from shared.pipeline.planning import FETCH_RETENTION_MARGIN_MS

    edge = NOW_MS - RETENTION_MS + FETCH_RETENTION_MARGIN_MS
    old = WindowTask(TASK.source, edge - HOUR, edge + HOUR)
    inside = [telephony_item("t-in", edge + 1000)]
    rig = Rig({None: {"items": inside, "metadata": {}}})
    rig.store.add(old)

    report = rig.fetch(old)

    assert report.outcome == "fetched"
    assert report.retention_lost_ms == (old.mintime, edge - 1)
    assert rig.published_ids() == [["t-in"]]
    doc = rig.store.doc(old)
    assert (doc["retention_lost"], doc["retention_lost_ms"]) == (True, [old.mintime, edge - 1])
    assert rig.duo_requests[0]["mintime"] == str(edge)


def test_a_window_wholly_past_duos_retention_ends_without_a_batch_or_a_request():
    from shared.duo.telephony import RETENTION_MS

    gone = WindowTask(TASK.source, NOW_MS - RETENTION_MS - 2 * HOUR, NOW_MS - RETENTION_MS - HOUR)
    rig = Rig({})
    rig.store.add(gone)
    report = rig.fetch(gone)
    assert (report.outcome, report.requests) == ("fetched", 0)
    assert report.retention_lost_ms == (gone.mintime, gone.maxtime - 1)  # half-open
    assert rig.published_ids() == []
    assert rig.store.doc(gone)["state"] == "done"


def test_a_gap_read_past_duos_retention_names_only_the_gap_as_lost():
    # A backlog window's page 1 never landed; by the time its gap is read, the gap lies
    # wholly past Duo's retention: no request, and only the gap is named lost (pages 0 and 2
    # landed).
    from shared.duo.telephony import RETENTION_MS

    old = WindowTask(TASK.source, NOW_MS - RETENTION_MS - 3 * HOUR, NOW_MS - RETENTION_MS + HOUR)
    page_1_from, page_2_from = old.mintime + 600_000, old.mintime + 1_200_000
    rig = Rig({})
    rig.store.add(old)
    rig.store.doc(old).update(
        pages=3,
        reread_from=3,
        next_offset=f"{page_1_from},t-a",
        read_offset=f"{page_1_from},t-a",
        read_until=f"{page_2_from},t-b",
    )
    report = rig.fetch(old)
    assert (report.outcome, report.requests) == ("fetched", 0)
    assert report.retention_lost_ms == (page_1_from + 1, page_2_from)
    assert (rig.published_ids(), rig.store.doc(old)["state"]) == ([], "done")


def test_a_lease_lost_while_paging_stops_the_fetch_after_the_page_in_hand():
    from services.fetcher.window_fetch import LeaseKeeper

    renewals = [True, False, True]
    asked = []

    def renew() -> bool:
        asked.append(renewals[len(asked)])
        return asked[-1]

    keeper = LeaseKeeper(renew, every_seconds=3600)
    keeper.beat()
    assert not keeper.lost
    keeper.beat()
    assert keeper.lost
    keeper.beat()  # no further renewal is asked for once lost, and lost stays lost
    assert keeper.lost
    assert len(asked) == 2


def test_a_renewal_that_raises_is_tried_again_at_the_next_beat():
    from services.fetcher.window_fetch import LeaseKeeper

    answers = iter([ConnectionError("Firestore hiccup"), True])

    def renew() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    keeper = LeaseKeeper(renew, every_seconds=3600)
    keeper.beat()
    keeper.beat()
    assert not keeper.lost


@pytest.mark.parametrize(
    "response",
    [
        {"items": [{"ts": item(1)["ts"]}], "metadata": {}},
        {"items": [{"telephony_id": "t-0001", "ts": "yesterday"}], "metadata": {}},
        {"items": page(1), "metadata": {"next_offset": "x" * 1001}},
    ],
    ids=["item-without-id", "item-without-valid-ts", "over-long-token"],
)
def test_a_window_duo_answers_with_broken_data_for_is_quarantined_not_retried_for_ever(response):
    # Issue 8, case 7, through Duo's parser: broken data is the window's own trouble, one
    # request a try, counted; after MAX_FAILURES in a row the window stops.
    from shared.pipeline.windows import MAX_FAILURES

    rig = Rig({FIRST: response})
    for tries in range(1, MAX_FAILURES + 1):
        report = rig.fetch()
        assert (report.outcome, report.requests) == ("failed", 1)
        assert "Duo returned a" in report.error
        assert rig.doc["failures"] == tries
        rig.clock.advance(3600)
    assert rig.doc["state"] == "quarantined"
    assert rig.fetch().outcome == "skipped"


def test_a_publish_outage_stops_each_try_after_its_page_and_backs_off_in_a_row():
    # Pub/Sub is down: each try reads one page, checkpoints it (its number is its own) and
    # fails to publish it. The fetch stops there, the failure counts from before that
    # checkpoint, and the tries back off like Duo's 5xx; the window's own count is kept.
    six_pages = paged([page(n) for n in range(1, 7)])
    rig = Rig(six_pages)
    rig.publisher.failing_pages = set(range(6))
    rig.store.docs[TASK.source, TASK.window_id] |= {"failures": 3}
    delays = []
    for tries in range(1, 5):
        with pytest.raises(TimeoutError):
            rig.fetch()
        assert len(rig.duo_requests) == tries  # one page a try, never the next
        assert (rig.doc["state"], rig.doc["pages"], rig.doc["failures"]) == ("failed", tries, 3)
        delays.append((rig.doc["retry_at_ms"] - now_ms(rig.clock)) / MINUTE_MS)
        rig.clock.advance(delays[-1] * 60)
    assert delays == [8, 16, 32, 60]  # the fourth to seventh failures in a row
    assert rig.publisher.batches == []


@pytest.mark.parametrize("trouble", ["shared limiter contention", "firestore unavailable"])
def test_infrastructure_trouble_backs_off_and_never_quarantines_a_window(trouble):
    from google.api_core.exceptions import ServiceUnavailable

    from shared.gcp.rate_limiter import SharedRateLimitError
    from shared.pipeline.windows import MAX_FAILURES

    if trouble == "shared limiter contention":
        error: Exception = SharedRateLimitError("could not update the limiter in 10 attempts")
        rig = Rig({FIRST: error})  # raised by the limiter inside DuoApi.get
    else:
        error = ServiceUnavailable("Firestore is unavailable")
        rig = Rig(THREE_PAGES)
        rig.store.docs[TASK.source, TASK.window_id] |= {"pages": 3, "reread_from": 3}

        def unavailable(source: str, window_id: str) -> Any:
            raise error

        rig.store.landed_spans = unavailable  # read by a re-read at its first page
    delays = []
    for _ in range(MAX_FAILURES + 2):
        with pytest.raises(type(error)):
            rig.fetch()
        delays.append((rig.doc["retry_at_ms"] - now_ms(rig.clock)) / MINUTE_MS)
        rig.clock.advance(delays[-1] * 60)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert (rig.doc["state"], rig.doc["failures"]) == ("failed", 0)


def test_a_published_page_clears_the_count_and_a_later_failure_counts_from_there():
    from shared.duo.errors import DuoProtocolError
    from shared.pipeline.windows import MAX_FAILURES

    rig = Rig({FIRST: THREE_PAGES[FIRST], SECOND: DuoProtocolError("an item without an id")})
    rig.store.docs[TASK.source, TASK.window_id] |= {"failures": MAX_FAILURES - 1}
    report = rig.fetch()
    assert (report.outcome, rig.published_pages()) == ("failed", [0])
    assert (rig.doc["state"], rig.doc["failures"]) == ("failed", 1)


# --- late-record checks -------------------------------------------------------------------

CHECKS = (15 * MINUTE_MS, 24 * 60 * MINUTE_MS)


def checked_to(rig: Rig, until_ms: int) -> None:
    """The source's cursor, its first check level at ``until_ms`` (the second's not due)."""
    rig.store.cursors[TASK.source] = {
        "watermark_ms": NOW_MS,
        CHECK_LEVELS: [{"until_ms": until_ms}, {"until_ms": 0}],
    }


def level_until(rig: Rig) -> int:
    return rig.store.cursors[TASK.source][CHECK_LEVELS][0]["until_ms"]


def checked_rig(duo_count: Any) -> Rig:
    """TASK finished with two records landed, its first check due and sent."""
    rig = Rig({None: {"items": [], "metadata": {"total_objects": duo_count}}}, repair_checks=CHECKS)
    rig.store.docs[TASK.source, TASK.window_id] |= {"state": "done", "pages": 1, "records": 2}
    checked_to(rig, TASK.mintime)
    rig.store.record_batch(RecordBatch(TASK.source, TASK.window_id, 0, page(1, 2)), ["p0"])
    return rig


def test_a_check_whose_count_matches_moves_its_level_past_the_window_writing_no_window():
    # Duo holds the two landed records, and one in the next window's first millisecond.
    rig = checked_rig(2)
    rig.counting = CountingDuo([(TASK.mintime + 1000) * 1000, (TASK.mintime + 2000) * 1000])
    rig.counting.times_us.append(TASK.maxtime * 1000 + 300)
    before = dict(rig.doc)
    report = rig.fetcher.check(SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime))
    assert (report.outcome, report.landed, report.duo_count, report.requests) == (
        "matched",
        2,
        2,
        2,
    )
    # Duo's ends are inclusive: both counts end one millisecond past the window, the span's
    # end first, and their difference is the window's count.
    assert [(p["mintime"], p["maxtime"]) for p in rig.counting.params] == [
        (str(TASK.maxtime), str(TASK.maxtime + 1)),
        (str(TASK.mintime), str(TASK.maxtime + 1)),
    ]
    assert level_until(rig) == TASK.maxtime
    assert rig.doc == before and rig.publisher.tasks == []


@pytest.mark.parametrize("duo_count", [3, {"relation": "gte", "value": 2}])
def test_a_check_that_finds_more_or_cannot_tell_reads_the_window_again(duo_count):
    # Issue 8, case 1: a record Duo published late is in its window's count.
    rig = checked_rig(duo_count)
    report = rig.fetcher.check(SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime))
    assert (report.outcome, report.rereads) == ("repairing", 1)
    assert (rig.doc["state"], rig.doc["reread_from"], rig.doc["repairs"]) == ("planned", 1, 1)
    assert rig.publisher.tasks == [TASK]
    assert level_until(rig) == TASK.maxtime  # the re-read repairs it


def test_a_check_whose_level_moved_on_asks_duo_nothing():
    # Another delivery of the same check did it.
    rig = checked_rig(2)
    checked_to(rig, TASK.maxtime)
    report = rig.fetcher.check(SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime))
    assert (report.outcome, report.requests) == ("stale", 0)


def test_a_fetch_whose_lease_keeper_lost_the_lease_publishes_nothing_more(monkeypatch):
    # The keeper found another fetcher holding the window (this one stalled past its lease):
    # the page in hand is not published, so only the new owner publishes from here on.
    from services.fetcher import window_fetch

    class LosesAfterFirstPage(window_fetch.LeaseKeeper):
        @property
        def lost(self) -> bool:
            return rig.publisher.batches != []

        @lost.setter
        def lost(self, value: bool) -> None:
            pass

    monkeypatch.setattr(window_fetch, "LeaseKeeper", LosesAfterFirstPage)
    rig = Rig(THREE_PAGES)
    report = rig.fetch()
    assert (report.outcome, rig.published_pages()) == ("lost_lease", [0])


def test_a_check_of_windows_past_duos_retention_moves_them_on_without_a_request():
    from shared.duo.telephony import RETENTION_MS

    rig = checked_rig(2)
    rig.clock.advance(RETENTION_MS / 1000)
    report = rig.fetcher.check(SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime))
    assert (report.outcome, report.requests) == ("past_retention", 0)
    assert (rig.doc["state"], level_until(rig)) == ("done", TASK.maxtime)


def test_a_live_window_asks_for_live_first_requests_and_a_backfill_window_does_not():
    live = WindowTask("eu-prod", NOW_MS - 3 * MINUTE_MS, NOW_MS - 2 * MINUTE_MS)
    rig = Rig(paged([[]]))
    rig.store.add(live)
    rig.fetch(live)
    rig.fetch(TASK)
    assert rig.live == [True, False]


# A span of one-minute windows, finished and due for their first check.
SPAN_START = NOW_MS - 3 * HOUR


def span_rig(
    windows: int, landed_us: list[int], late_us: list[int], precision: str = "ms"
) -> tuple[Rig, list[WindowTask]]:
    """``windows`` finished one-minute windows from SPAN_START, each with one batch landed
    holding the records at ``landed_us`` in it (µs after SPAN_START); Duo holds those and the
    records at ``late_us``, published late and landed nowhere, and compares ``maxtime`` as
    ``precision`` says."""
    start_us = SPAN_START * 1000
    duo = CountingDuo([start_us + at for at in landed_us + late_us], precision)
    rig = Rig({}, repair_checks=CHECKS, counting=duo)
    tasks = [
        WindowTask(TASK.source, SPAN_START + i * MINUTE_MS, SPAN_START + (i + 1) * MINUTE_MS)
        for i in range(windows)
    ]
    for n, task in enumerate(tasks):
        rig.store.add(task)
        rig.store.docs[task.source, task.window_id]["state"] = "done"
        records = [
            telephony_item(f"r-{at}", SPAN_START + at // 1000)
            for at in landed_us
            if n * MINUTE_MS * 1000 <= at < (n + 1) * MINUTE_MS * 1000
        ]
        if records:
            rig.store.docs[task.source, task.window_id]["pages"] = 1
            rig.store.record_batch(RecordBatch(task.source, task.window_id, 0, records), ["p0"])
    checked_to(rig, SPAN_START)
    return rig, tasks


def check_span(rig: Rig, tasks: list[WindowTask]) -> Any:
    return rig.fetcher.check(SpanCheck(TASK.source, 0, tasks[0].mintime, tasks[-1].maxtime))


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_a_late_record_is_found_though_a_landed_one_shares_the_spans_last_millisecond(
    precision: str,
):
    # Issue 16, item 2. A landed record at the span's last millisecond + 500 µs, and a late
    # one missing. Duo comparing microseconds leaves the landed one out of a count up to
    # maxtime - 1, which then equals what landed though a record is missing: before, "landed
    # between the two counts" called it a match.
    last_ms_us = (MINUTE_MS - 1) * 1000 + 500
    rig, tasks = span_rig(1, [1_000_000, 2_000_000, last_ms_us], [30_000_000], precision)
    report = check_span(rig, tasks)
    assert (report.outcome, report.landed, report.duo_count) == ("repairing", 3, 4)
    assert rig.publisher.tasks == tasks


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_a_span_whose_last_millisecond_holds_landed_records_matches_when_nothing_is_missing(
    precision: str,
):
    # The same span with nothing missing, and records in the next window's first millisecond
    # (at .000000 and later), which no count may take for the span's.
    landed = [0, 2_000_000, (MINUTE_MS - 1) * 1000, (MINUTE_MS - 1) * 1000 + 999]
    rig, tasks = span_rig(1, landed, [MINUTE_MS * 1000, MINUTE_MS * 1000 + 1], precision)
    report = check_span(rig, tasks)
    assert (report.outcome, report.landed, report.duo_count, report.rereads) == (
        "matched",
        4,
        4,
        0,
    )


def test_one_late_record_in_a_span_of_thirty_windows_reads_only_its_window_again():
    # Issue 16, item 10: before, all thirty windows were read again. Now the span is halved
    # with counts (one request each) until the window holding the late record is found.
    landed = [n * MINUTE_MS * 1000 + 5_000_000 for n in range(30)]
    late = 17 * MINUTE_MS * 1000 + 40_000_000
    rig, tasks = span_rig(30, landed, [late])
    report = check_span(rig, tasks)
    assert (report.outcome, report.rereads) == ("repairing", 1)
    assert rig.publisher.tasks == [tasks[17]]
    # The span's two counts, then five halvings (30 -> 15 -> 8 -> 4 -> 2 -> 1).
    assert (report.requests, report.bisected) == (7, 5)
    assert [rig.store.doc(t)["state"] for t in tasks].count("planned") == 1
    assert level_until(rig) == tasks[-1].maxtime


def test_a_quiet_span_that_duo_holds_nothing_in_costs_one_count():
    # A quiet account's windows, nothing landed: one count from the span's start past its end
    # finds nothing, so the span's end is not counted (a request, and a wait for its slot).
    rig, tasks = span_rig(30, [], [])
    report = check_span(rig, tasks)
    assert (report.outcome, report.landed, report.duo_count, report.requests) == (
        "matched",
        0,
        0,
        1,
    )
    assert [(p["mintime"], p["maxtime"]) for p in rig.counting.params] == [
        (str(SPAN_START), str(tasks[-1].maxtime + 1))
    ]
    assert rig.publisher.tasks == []
    assert level_until(rig) == tasks[-1].maxtime


@pytest.mark.parametrize("precision", ["ms", "us"])
def test_a_late_record_in_a_quiet_span_is_found_with_the_usual_counts(precision: str):
    # Nothing landed, one record published late in window 3, and one in the next window's
    # first millisecond, which the first count takes too: the usual counts follow, the end
    # first, and only window 3 is read again.
    late = [3 * MINUTE_MS * 1000 + 7_000_000, 8 * MINUTE_MS * 1000]
    rig, tasks = span_rig(8, [], late, precision)
    report = check_span(rig, tasks)
    assert (report.outcome, report.landed, report.duo_count, report.rereads) == (
        "repairing",
        0,
        1,
        1,
    )
    assert rig.publisher.tasks == [tasks[3]]
    ends = [(p["mintime"], p["maxtime"]) for p in rig.counting.params[:3]]
    end = str(tasks[-1].maxtime + 1)
    assert ends == [(str(SPAN_START), end), (str(tasks[-1].maxtime), end), (str(SPAN_START), end)]


def test_a_quiet_span_whose_only_record_is_the_next_window_s_matches():
    rig, tasks = span_rig(2, [], [2 * MINUTE_MS * 1000])
    report = check_span(rig, tasks)
    assert (report.outcome, report.duo_count, report.rereads, report.requests) == (
        "matched",
        0,
        0,
        3,
    )


def test_a_window_holding_a_batch_twice_and_missing_a_record_is_read_again():
    # A batch landed twice (two records more) beside a missing late record: more landed than
    # Duo counts, which no count may call a match: the window is read again.
    rig, tasks = span_rig(1, [1_000_000, 2_000_000, 3_000_000], [40_000_000])
    twice = [telephony_item(f"r-{at}", SPAN_START + at // 1000) for at in (2_000_000, 3_000_000)]
    rig.store.docs[TASK.source, tasks[0].window_id]["pages"] = 2
    rig.store.record_batch(RecordBatch(TASK.source, tasks[0].window_id, 1, twice), ["p1"])
    report = check_span(rig, tasks)
    assert (report.outcome, report.landed, report.duo_count) == ("repairing", 5, 4)
    assert rig.publisher.tasks == tasks


def test_a_check_out_of_time_reads_again_every_window_it_has_not_cleared():
    # Each count takes a minute (Duo's limit is low): past the budget (4 min) the check stops
    # counting, and what it could not clear is read again rather than left unchecked.
    landed = [n * MINUTE_MS * 1000 + 5_000_000 for n in range(30)]
    rig, tasks = span_rig(30, landed, [17 * MINUTE_MS * 1000 + 40_000_000])
    requests = rig.counting.get

    def slow(*args: Any) -> Any:
        rig.clock.advance(60)
        return requests(*args)

    rig.counting.get = slow  # type: ignore[method-assign]
    report = check_span(rig, tasks)
    assert (report.outcome, report.requests) == ("repairing", 4)
    # Counted: the span (its end, its start), window 15's start (15-29 differs), window 22's
    # (15-21 differs, 22-29 is cleared); then the budget is spent.
    assert rig.publisher.tasks == tasks[15:22]
