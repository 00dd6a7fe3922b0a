"""The benchmark's memory check: a service whose peak grows with the backlog fails the run."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "catchup"


def _bench():
    loader = importlib.machinery.SourceFileLoader("bench_catchup", str(BENCH))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_flat_memory_across_sizes_passes() -> None:
    peaks = {10_000: {"fetcher": 89.0, "writer": 85.4}, 100_000: {"fetcher": 90.2, "writer": 85.9}}
    assert _bench().memory_growth(peaks) == []


def test_memory_that_follows_the_backlog_fails_naming_the_service() -> None:
    peaks = {10_000: {"fetcher": 89.0, "writer": 85.4}, 100_000: {"fetcher": 89.5, "writer": 120.0}}
    (problem,) = _bench().memory_growth(peaks)
    assert problem.startswith("writer peaked at 120.0 MiB for 100,000 records")


def test_one_size_has_nothing_to_compare() -> None:
    assert _bench().memory_growth({100_000: {"writer": 500.0}}) == []
