"""Which objects found under a window's missing batches' names are taken as those batches: the
ones whose paging tokens are their pages' (issue 16, item 3)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.pipeline.found_batches import own_batches
from shared.pipeline.windows import PageOffsets

# A read of five pages: page n was read from TOKENS[n] to TOKENS[n + 1].
TOKENS: list[str | None] = [None, "100,a", "200,b", "300,c", "400,d", None]
DOC = {"pages": 5, "reread_from": 0, "read_offset": None}


@dataclass(frozen=True)
class Obj:
    page: int
    offsets: PageOffsets | None
    name: str = ""


def read(page: int) -> PageOffsets:
    return (TOKENS[page], TOKENS[page + 1])


def landed(*pages: int) -> dict[int, PageOffsets | None]:
    return {page: read(page) for page in pages}


def test_an_object_whose_tokens_are_its_pages_is_taken():
    found = [Obj(2, read(2))]
    assert own_batches(DOC, landed(0, 1, 3, 4), found) == found


def test_an_object_holding_other_records_under_a_batch_name_is_left():
    # Read between other tokens (another life of the window, or by hand), or without any.
    for other in [Obj(2, ("150,x", "250,y")), Obj(2, (TOKENS[2], "250,y")), Obj(2, None)]:
        assert own_batches(DOC, landed(0, 1, 3, 4), [other]) == []


def test_of_two_objects_under_a_page_the_one_with_its_tokens_is_taken():
    mine = Obj(2, read(2), "mine")
    found = [Obj(2, ("150,x", "250,y"), "other"), mine]
    assert own_batches(DOC, landed(0, 1, 3, 4), found) == [mine]


def test_two_objects_with_a_pages_tokens_are_left_both():
    # Which one holds the batch's records cannot be told: the page is read again.
    found = [Obj(2, read(2), "one"), Obj(2, read(2), "two")]
    assert own_batches(DOC, landed(0, 1, 3, 4), found) == []


def test_the_reads_first_and_last_pages_are_told_by_the_reads_ends():
    found = [Obj(0, read(0)), Obj(4, read(4))]
    assert own_batches(DOC, landed(1, 2, 3), found) == found
    assert own_batches(DOC, landed(1, 2, 3), [Obj(4, (TOKENS[4], "500,e"))]) == []
    # A re-read of a gap starts at its own token.
    reread = {"pages": 7, "reread_from": 5, "read_offset": "150,x"}
    assert own_batches(reread, {6: ("250,y", None)}, [Obj(5, ("150,x", "250,y"))]) == [
        Obj(5, ("150,x", "250,y"))
    ]
    assert own_batches(reread, {6: ("250,y", None)}, [Obj(5, (None, "250,y"))]) == []


def test_a_run_of_found_batches_chains_from_a_landed_neighbour_either_way():
    found = [Obj(3, read(3)), Obj(2, read(2)), Obj(1, read(1))]
    assert own_batches(DOC, landed(0, 4), found) == found[::-1]
    # Page 0's marker holds no tokens: the run is told from page 4 down.
    assert own_batches(DOC, {0: None, 4: read(4)}, found) == found[::-1]


def test_a_page_between_pages_nothing_is_known_of_is_not_taken():
    # Pages 1 and 3 never landed, and their markers hold no tokens for page 2's ends.
    assert own_batches(DOC, landed(0, 4), [Obj(2, read(2))]) == []
    assert own_batches(DOC, {0: read(0), 1: None, 3: None, 4: read(4)}, [Obj(2, read(2))]) == []


def test_a_page_landed_already_or_outside_the_read_is_not_taken_again():
    assert own_batches(DOC, landed(0, 1, 2, 3, 4), [Obj(2, read(2))]) == []
    reread = {"pages": 7, "reread_from": 5, "read_offset": None}
    assert own_batches(reread, {}, [Obj(0, read(0))]) == []
