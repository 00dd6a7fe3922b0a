"""Which objects found in the bucket under a window's missing batches' names are those batches.

An object can hold other records under a batch's name (one the writer refused to mark: left by
an earlier life of the window's state, or by hand); marking it would call the batch landed with
its own records nowhere. A batch is known by the paging tokens it was read between, and those
chain: a page starts at the token the page before it ended at (the read's first page at the
read's start), and the read's last page ends without one. So an object is taken as its page's
batch only when its tokens are the ones its page's neighbours say, and an object that is not is
left alone: its page is read again, under a new number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from shared.pipeline.windows import PageOffsets


class Found(Protocol):
    @property
    def page(self) -> int: ...

    @property
    def offsets(self) -> PageOffsets | None: ...


F = TypeVar("F", bound=Found)
_UNKNOWN = object()  # a token the window cannot tell (None is a token: a read's end or start)


def own_batches(
    doc: Mapping[str, Any], landed: Mapping[int, PageOffsets | None], found: Iterable[F]
) -> list[F]:
    """The objects of ``found`` that are batches of the window's last read, by page: each has
    the tokens its page was read between, as far as the window's read (``doc``), its landed
    batches (``landed``: offsets by page) and the objects already taken tell them. At least one
    of the two tokens must be told: an object between two pages nothing is known of is not
    taken. Neither is an object without tokens, nor one of two that match the same page."""
    start, pages = doc.get("reread_from", 0), doc["pages"]
    known: dict[int, PageOffsets | None] = dict(landed)

    def told(page: int, side: int) -> object:
        """The token page ``page`` starts (``side`` 0) or ends (1) at, or _UNKNOWN."""
        if page == (start if side == 0 else pages - 1):
            return doc.get("read_offset") if side == 0 else None
        neighbour = known.get(page - 1 if side == 0 else page + 1)
        return _UNKNOWN if neighbour is None else neighbour[1 - side]

    by_page: dict[int, list[F]] = defaultdict(list)
    for candidate in found:
        if start <= candidate.page < pages and candidate.page not in known:
            by_page[candidate.page].append(candidate)
    taken: list[F] = []
    while True:  # a page taken tells its neighbours' tokens: until nothing more is taken
        more = False
        for page in sorted(set(by_page) - set(known)):
            tokens = (told(page, 0), told(page, 1))
            if tokens == (_UNKNOWN, _UNKNOWN):
                continue
            matching = [
                candidate
                for candidate in by_page[page]
                if candidate.offsets is not None
                and all(
                    want is _UNKNOWN or want == token
                    for want, token in zip(tokens, candidate.offsets, strict=True)
                )
            ]
            if len(matching) == 1:
                known[page] = matching[0].offsets
                taken.append(matching[0])
                more = True
        if not more:
            return sorted(taken, key=lambda candidate: candidate.page)
