"""The benchmark's report: medians over repeats, and the memory check (a service whose peak
grows with the backlog fails the run)."""

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


def column(records: int, rate: int, fetcher: float, writer: float):
    figures = {"records": records, "rate_limit": rate}
    return ("", figures | {"peak_mib.fetcher": fetcher, "peak_mib.writer": writer})


def test_flat_memory_across_sizes_passes() -> None:
    columns = [column(10_000, 120, 89.0, 85.4), column(100_000, 120, 90.2, 85.9)]
    assert _bench().memory_growth(columns) == []


def test_memory_that_follows_the_backlog_fails_naming_the_service() -> None:
    columns = [column(10_000, 120, 89.0, 85.4), column(100_000, 120, 89.5, 120.0)]
    (problem,) = _bench().memory_growth(columns)
    assert problem.startswith("writer peaked at 120.0 MiB for 100,000 records")


def test_sizes_are_compared_at_the_same_rate_only() -> None:
    # A slower run may hold more at once; only the backlog's size is under test.
    columns = [column(10_000, 2, 89.0, 85.4), column(100_000, 120, 89.5, 120.0)]
    assert _bench().memory_growth(columns) == []


def test_one_size_has_nothing_to_compare() -> None:
    assert _bench().memory_growth([column(100_000, 120, 500.0, 500.0)]) == []


def test_medians_take_each_figure_over_the_runs_that_have_it() -> None:
    runs = [
        {"p95": 10.0, "requests": 21.0, "fresh": None},
        {"p95": 30.0, "requests": 20.0, "fresh": None},
        {"p95": 11.0, "requests": 25.0, "fresh": None, "kills": 3.0},
        {"p95": 40.0, "requests": None, "fresh": None},
    ]
    assert _bench().medians(runs) == {"p95": 20.5, "requests": 21.0, "fresh": None, "kills": 3.0}


def test_totals_add_the_services_of_one_phase() -> None:
    figures = {
        "steady_per_min.planner.firestore_reads": 7.5,
        "steady_per_min.fetcher.firestore_reads": 2.0,
        "steady_per_min.writer.firestore_writes": 1.0,
        "backfill_per_1k.writer.firestore_reads": 100.0,
    }
    assert _bench().total(figures, "steady_per_min", "firestore_reads") == 9.5
