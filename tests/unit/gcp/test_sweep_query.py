"""The sweep's query (WindowStore.sweep) asks for the open and the quarantined windows by state,
a page at a time."""

from shared.gcp.window_store import SWEPT_STATES
from shared.pipeline.windows import OPEN_STATES, QUARANTINED


def test_the_quarantined_windows_sort_after_every_open_state() -> None:
    # So every open window is read, and swept, before the quarantined ones, which the sweep
    # reads at most a page of (the rest are counted).
    assert sorted(SWEPT_STATES) == [*sorted(OPEN_STATES), QUARANTINED]
