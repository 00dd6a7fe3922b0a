"""How often each account of a fleet was read, from its window documents: the span of each
window after the backfill's and the time between the reads (``fetched_at_ms``) that follow."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reads:
    windows: int  # after the backfill's first
    longest_span_ms: int  # of those windows: how much one read covers at most
    longest_gap_ms: int  # between two successive reads
    newest_end_ms: int  # the end of the newest window


def reads(docs: Iterable[Mapping[str, Any]]) -> Reads:
    """An account's reads, from its window documents (the first, its backfill, left out)."""
    ordered = sorted(docs, key=lambda doc: doc["mintime"])
    live = ordered[1:]
    fetched = [doc["fetched_at_ms"] for doc in live if "fetched_at_ms" in doc]
    return Reads(
        windows=len(live),
        longest_span_ms=max((doc["maxtime"] - doc["mintime"] for doc in live), default=0),
        longest_gap_ms=max((b - a for a, b in itertools.pairwise(fetched)), default=0),
        newest_end_ms=ordered[-1]["maxtime"] if ordered else 0,
    )
