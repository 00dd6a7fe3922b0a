"""The fan-out benchmark's fleet is one the planner takes: its sources file configures exactly
the N accounts timed, and no single account besides; the scheduler's call is timed on its
cadence, the first call (the registry written) apart."""

from __future__ import annotations

from pathlib import Path

from harness.fanout_bench import sources_file, time_calls
from services.settings import planner_settings


def test_the_benchmarks_sources_file_configures_n_accounts_and_nothing_else(tmp_path: Path):
    path = sources_file(tmp_path / "sources.json", "acme-prod", 1000)
    settings = planner_settings(
        {"GOOGLE_CLOUD_PROJECT": "acme-prod", "DUO_SOURCES_FILE": str(path)}
    )
    assert len(settings.configured) == 1000
    assert len({spec.id for spec in settings.configured}) == 1000


class Clock:
    """A timer that advances only when a call takes time or the timer sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_scheduler_call_is_timed_on_its_cadence_first_call_apart() -> None:
    clock = Clock()
    durations = iter([4.0, 0.5, 70.0, 0.75])
    starts: list[float] = []

    def call() -> dict[str, int]:
        starts.append(clock.now)
        clock.now += next(durations)
        return {"sources": 1000, "slices": 40}

    times = time_calls(
        call, 3, every=60.0, say=lambda _: None, timer=lambda: clock.now, sleep=clock.sleep
    )
    # Each call starts a minute after the one before, or at once after a longer one.
    assert starts == [0.0, 60.0, 120.0, 190.0]
    assert times.first_seconds == 4.0 and times.seconds == [0.5, 70.0, 0.75]
    assert times.figures() == {
        "sources": 1000,
        "slices": 40,
        "first_call_seconds": 4.0,
        "later_calls_seconds": [0.5, 70.0, 0.75],
        "later_median_seconds": 0.75,
    }
