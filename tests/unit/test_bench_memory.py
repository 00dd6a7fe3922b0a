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


def test_the_table_prints_every_figure_a_run_gives(capsys) -> None:
    # The figures' names as harness.benchmark.Measurement.figures() gives them.
    import argparse

    from harness.benchmark import Measurement
    from harness.catchup import Summary
    from harness.duo_requests import RequestCounts
    from harness.freshness import Freshness

    bench = _bench()
    run = Measurement(
        records=20_000,
        backfill_seconds=61.0,
        steady_seconds=300.0,
        requests=RequestCounts(24, 10, 2, 0, 0, 118.0),
        steady_requests=5,
        freshness_backfill=Freshness(60, 149.0, 177.0, 180.0),
        freshness_steady=None,
        operations_backfill={"writer": {"storage_writes": 30}},
        operations_steady={"planner": {"cloud_run_requests": 5}},
        live_records_steady=300,
        summary=Summary(simulated=True, missing=0, duplicated=0, objects=21),
    )
    figures = bench.medians([run.figures()]) | {"records": 20_000, "rate_limit": 120, "runs": 1}
    args = argparse.Namespace(plan_every=60.0, live=60.0, steady=5.0, kill_every=None)
    bench.print_table([("20,000 @ R=120", figures)], args)
    out = capsys.readouterr().out
    assert "24 (20, x1.20), 2" in out
    assert "149 / 177 / 180 (n=60)" in out
    assert "118.0 (120, 98%)" in out
    assert "1.5 / 0.0" in out  # 30 object writes, no reads, for 20,000 records
