"""Counting requests the way a strict Duo would: in any 60-second window."""

from __future__ import annotations

import bisect


def most_in_a_minute(starts: list[float]) -> int:
    """The largest number of starts inside one closed 60-second window."""
    starts = sorted(starts)
    return max(bisect.bisect_right(starts, s + 60.0) - i for i, s in enumerate(starts))
