"""The ids everything in the pipeline is keyed by: sources, windows and batches.

Each pattern is written once here; the message schemas, the settings, the Firestore paths and
the object names all use these.
"""

from __future__ import annotations

import re

# A Duo account's id: it appears in Firestore paths, Pub/Sub attributes and object names.
SOURCE_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
# ``<mintime>-<maxtime>``, both 13-digit milliseconds, so ids sort by time.
WINDOW_ID_PATTERN = r"[0-9]{13}-[0-9]{13}"
# Pages are numbered in five digits, which keeps object names in order.
MAX_PAGE = 99_999
# Times before this are seconds mistaken for milliseconds (1973 in ms).
MIN_EPOCH_MS = 100_000_000_000


def window_id(mintime: int, maxtime: int) -> str:
    """Deterministic: the same window always has the same id, whoever plans it."""
    return f"{mintime:013d}-{maxtime:013d}"


def parse_window_id(window: str) -> tuple[int, int]:
    """``(mintime, maxtime)`` of a window id; ValueError for what ``window_id`` would not write."""
    if not re.fullmatch(WINDOW_ID_PATTERN, window):
        raise ValueError(f"{window!r} is not a window id (<mintime>-<maxtime>, 13 digits each)")
    mintime, maxtime = window.split("-")
    return int(mintime), int(maxtime)


def batch_id(window: str, page: int) -> str:
    return f"{window}-p{page:05d}"
