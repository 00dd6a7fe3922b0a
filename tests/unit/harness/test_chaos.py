"""The crash benchmark's bookkeeping: a window a killed fetcher held counts as taken up again
once it is claimed again (more attempts) or finished, not before."""

from __future__ import annotations

import os

from harness.chaos import Chaos, worker_pids


def test_a_held_window_is_recovered_when_claimed_again_or_finished():
    docs = {
        "a": {"state": "fetching", "attempts": 1},
        "b": {"state": "fetching", "attempts": 2},
        "c": {"state": "fetching", "attempts": 1},
    }
    chaos = Chaos(pipeline=None, windows=lambda: docs)  # type: ignore[arg-type]
    watched = {"a": (0.0, 1), "b": (0.0, 2), "c": (0.0, 1)}
    chaos._follow(watched)
    assert set(watched) == {"a", "b", "c"} and chaos.report.recoveries == []

    docs["a"] = {"state": "fetching", "attempts": 2}  # another fetcher claimed it
    docs["b"] = {"state": "fetched", "attempts": 2}  # or it finished
    chaos._follow(watched)
    assert set(watched) == {"c"}
    assert len(chaos.report.recoveries) == 2


def test_the_workers_of_a_master_are_its_children():
    assert worker_pids(os.getppid()) and os.getpid() in worker_pids(os.getppid())
