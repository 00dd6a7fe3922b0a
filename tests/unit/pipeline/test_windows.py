"""The window state machine's operator rule (a stopped window put back), its gap rule (the
part of a window read again for batches that never landed) and which landed batches a re-read
page is compared with."""

from __future__ import annotations

from shared.pipeline.messages import RecordBatch
from shared.pipeline.windows import (
    LANDING_TIMEOUT_MS,
    MAX_REREADS,
    PASSED,
    Gap,
    checkpoint,
    claim,
    gap,
    gap_times_us,
    landed_marker,
    marker_offsets,
    new_window,
    overlapping,
    past,
    requeue,
    reread,
    superseded,
    sweep_step,
)


def test_a_window_put_back_after_a_complete_read_is_read_again_landing_only_what_is_missing():
    doc = new_window(0, 60_000, 0) | {"state": "quarantined", "pages": 5, "reread_from": 3}
    update = requeue(doc, now=1)
    assert (update["state"], update["reread_from"], update["updated_at_ms"]) == ("planned", 5, 0)


def test_a_window_put_back_mid_read_resumes_from_its_checkpoint():
    doc = new_window(0, 60_000, 0) | {"state": "failed", "pages": 2, "next_offset": "1,a"}
    update = requeue(doc, now=1)
    assert update["reread_from"] == 0 and "next_offset" not in update


def test_only_a_stopped_window_is_put_back():
    assert requeue(new_window(0, 60_000, 0), now=1) is None


# --- a gap: the batches of a read that never landed, read again from their neighbours -------


def _fetched(pages: int, **fields: object) -> dict[str, object]:
    return new_window(0, 60_000, 0) | {"state": "fetched", "pages": pages} | fields


def _landed(*pages: int) -> dict[int, tuple[str | None, str | None]]:
    """Landed pages of a read whose page n was read from token ``t<n>`` (page 0 from None)
    up to ``t<n+1>``; the read has 6 pages, the last ends with None."""
    return {
        n: (f"{n}000,t{n}" if n else None, f"{n + 1}000,t{n + 1}" if n < 5 else None) for n in pages
    }


def test_a_gap_in_the_middle_is_read_from_the_landed_batch_before_to_the_one_after():
    found = gap(_fetched(6), _landed(0, 1, 4, 5))
    assert found == Gap(2, 3, "2000,t2", "4000,t4")


def test_a_missing_first_page_is_read_from_the_reads_start_and_a_missing_last_to_its_end():
    assert gap(_fetched(6), _landed(1, 2, 3, 4)) == Gap(0, 5, None, None)
    ranged = _fetched(6, reread_from=2, read_offset="2000,t2", read_until="9000,t9")
    assert gap(ranged, _landed(3, 4)) == Gap(2, 5, "2000,t2", "9000,t9")


def test_a_gap_next_to_a_marker_without_tokens_reads_the_whole_window():
    assert gap(_fetched(4), {0: None, 2: _landed(2)[2], 3: _landed(3)[3]}) is None
    assert gap(_fetched(3), {0: _landed(0)[0], 2: None}) is None


def test_nothing_missing_is_no_gap():
    assert gap(_fetched(2), _landed(0, 1)) is None


def test_a_gap_read_ends_at_the_next_landed_batchs_token_or_past_its_time():
    assert past("4000,t4", "4000,t4")
    assert past("4001,t9", "4000,t4")
    assert not past("4000,t3", "4000,t4")  # the same millisecond may hold more of the gap
    assert not past("3999,t9", "4000,t4")
    assert not past("opaque", "4000,t4") and past("opaque", "opaque")


def test_a_whole_window_reread_forgets_a_gap_reads_bounds():
    doc = _fetched(4, read_offset="1000,t1", read_until="2000,t2")
    update = reread(doc, "counted otherwise")
    assert (update["next_offset"], update["read_offset"], update["read_until"]) == (None,) * 3
    assert update["reread_from"] == 4


def test_a_gaps_records_lie_between_its_tokens_milliseconds_or_the_windows_ends():
    doc = _fetched(6)
    assert gap_times_us(doc, Gap(2, 3, "2000,t2", "4000,t4")) == (2_000_000, 4_000_999)
    assert gap_times_us(doc, Gap(0, 5, None, None)) == (0, 60_000_000 - 1)
    assert gap_times_us(doc, Gap(2, 3, "opaque", "4000,t4")) == (0, 4_000_999)
    assert gap_times_us(doc, None) == (0, 60_000_000 - 1)


def _sweep_after_timeout(doc: dict[str, object], landed: dict[int, object]):
    return sweep_step(
        doc,
        LANDING_TIMEOUT_MS + 1,
        lambda start: sum(page >= start for page in landed),
        lambda start: {page: offsets for page, offsets in landed.items() if page >= start},
    )


def test_a_window_is_quarantined_after_three_rereads_in_a_row_not_three_in_its_life():
    doc = _fetched(2, fetched_at_ms=0, landing_rereads=MAX_REREADS - 1, rereads=7)
    step = _sweep_after_timeout(doc, _landed(0))
    assert step.reread and step.update["landing_rereads"] == MAX_REREADS
    assert step.update["rereads"] == 8  # the lifetime count status shows
    doc |= step.update | {"state": "fetched", "fetched_at_ms": 0, "pages": 3}  # its page lost too
    assert _sweep_after_timeout(doc, _landed(0)).update["state"] == "quarantined"
    # Landing every batch in between starts the count again.
    done = _sweep_after_timeout(_fetched(2, landing_rereads=MAX_REREADS), _landed(0, 1))
    assert done.completed and done.update["landing_rereads"] == 0


# --- a re-read page leaves out the ids of the landed batches its time span overlaps --------

# Landed batches by (name, first record µs, last record µs); "empty" landed no records.
_LANDED = [("a", 100, 200), ("b", 300, 300), ("empty", None, None)]


def test_a_page_meets_every_landed_batch_its_span_touches_both_ends_included():
    assert overlapping(_LANDED, 200, 300) == ["a", "b"]
    assert overlapping(_LANDED, 150, 150) == ["a"]
    assert overlapping(_LANDED, 0, 1000) == ["a", "b"]


def test_a_page_between_or_outside_the_landed_batches_meets_none():
    assert overlapping(_LANDED, 201, 299) == []
    assert overlapping(_LANDED, 0, 99) == []
    assert overlapping(_LANDED, 301, 400) == []


# --- a landed batch's tokens, and the batches a re-read replaced ---------------------------


def test_a_markers_tokens_are_read_back_a_read_start_or_end_included():
    for offsets in [(None, "1,a"), ("1,a", "2,b"), ("2,b", None), (None, None)]:
        batch = RecordBatch("acme", "w", 0, [], offsets)
        assert marker_offsets(landed_marker(batch, [], now=0)) == offsets


def test_a_marker_written_without_tokens_has_none():
    assert marker_offsets(landed_marker(RecordBatch("acme", "w", 0, []), [], now=0)) is None
    assert marker_offsets({"page": 0, "offset": None}) is None  # one token is not a batch's


def test_only_pages_numbered_before_a_reread_are_superseded():
    reread_doc = _fetched(5, reread_from=3)
    assert [superseded(reread_doc, page) for page in (0, 2, 3, 4)] == [True, True, False, False]
    assert not superseded(_fetched(5), 0)  # never read again


# --- an empty read: no number, no batch, done at once ---------------------------------------


def _claimed(**fields: object) -> tuple[dict[str, object], object]:
    doc = new_window(0, 60_000, 0) | fields
    held, update = claim(doc, "eu", "w", "me", 1, 60_000)
    assert held is not None and update is not None
    return doc | update, held


def test_an_empty_read_takes_no_number_and_is_done_at_once():
    doc, held = _claimed()
    after, update = checkpoint(held, doc, None, 0, 2, 60_000, checks=(3_600_000,))
    assert (after.pages, update["pages"], update["state"]) == (0, 0, "done")
    assert update["lease_owner"] is None
    assert update["expire_at"] is None  # ahead of the watermark: kept


def test_an_empty_reread_behind_the_watermark_expires():
    doc, held = _claimed(pages=3, reread_from=3, **{PASSED: 1})
    _, update = checkpoint(held, doc, None, 0, 2, 60_000, checks=(1, 2))
    assert (update["pages"], update["state"]) == (3, "done")
    assert update["expire_at"] is not None


def test_once_a_read_numbered_a_page_its_empty_pages_are_numbered_and_it_waits_for_landing():
    doc, held = _claimed()
    held, update = checkpoint(held, doc, "1,a", 1, 2, 60_000)
    doc |= update
    _, update = checkpoint(held, doc, None, 0, 3, 60_000)
    assert (update["pages"], update["state"]) == (2, "fetched")


def test_a_reads_leading_empty_pages_take_no_number():
    doc, held = _claimed()
    after, update = checkpoint(held, doc, "1,a", 0, 2, 60_000)
    assert (after.pages, after.next_offset, "state" in update) == (0, "1,a", False)
