"""bench/fleet's settings and figures: its late-record checks brought forward stand for
production's (as many checks, the same batching), its steady phase is one batch long after a
settle phase, and each service's Firestore operations per account-minute."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

from harness.fleet import FleetOptions
from services.settings import planner_settings
from shared.pipeline.repair import CHECK_BATCH_MS, DEFAULT_CHECKS_MS

FLEET = Path(__file__).resolve().parents[2] / "bench" / "fleet"


def _fleet():
    loader = importlib.machinery.SourceFileLoader("bench_fleet", str(FLEET))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _defaults():
    return _fleet().arguments().parse_args([])


def test_the_checks_brought_forward_are_as_many_as_productions_and_batched_alike() -> None:
    args = _defaults()
    brought = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "REPAIR_CHECKS": args.repair_checks})
    production = planner_settings({"GOOGLE_CLOUD_PROJECT": "p"})
    assert len(brought.repair_checks_ms) == len(production.repair_checks_ms)
    assert production.repair_checks_ms == DEFAULT_CHECKS_MS
    assert brought.repair_batch_ms == production.repair_batch_ms
    # The last check comes within the settle phase, so the backfill's checks are behind it.
    assert brought.repair_checks_ms[-1] < args.settle * 60_000


def test_the_steady_phase_is_one_check_batch_after_a_settle_phase() -> None:
    args = _defaults()
    assert args.steady * 60_000 == CHECK_BATCH_MS
    assert args.settle > 0


def test_the_settings_go_to_the_services_only_when_given() -> None:
    assert FleetOptions(repair_checks="2m,4m").service_env() == {"REPAIR_CHECKS": "2m,4m"}
    assert FleetOptions().service_env() == {}


def test_firestore_operations_per_account_minute_by_service() -> None:
    fleet = {
        "steady_seconds": 600.0,
        "readable_accounts": 200,
        "operations_steady": {
            "planner": {"firestore_reads": 6000, "firestore_writes": 2000},
            "writer": {"firestore_reads": 10, "storage_writes": 4},
        },
    }
    per_minute = _fleet().firestore_per_account_minute(fleet)
    assert per_minute == {
        "planner": {"reads": 3.0, "writes": 1.0},
        "writer": {"reads": pytest.approx(0.005), "writes": 0.0},
    }


def test_the_report_names_the_checks_and_each_services_firestore_line() -> None:
    fleet = {
        "accounts": 2,
        "readable_accounts": 2,
        "backfill_seconds": 60.0,
        "settle_seconds": 600.0,
        "steady_seconds": 120.0,
        "operations_steady": {"fetcher": {"firestore_reads": 8, "firestore_writes": 4}},
        "requests_per_account_minute": 0.5,
        "planner_call_seconds_steady": [0.2],
        "freshness": {"active": None, "after_quiet": None},
        "peak_mib": {"fetcher": 100.0},
        "check": {"missing": 0},
    }
    month = {
        "operations": {
            "firestore_read": 1.0,
            "firestore_write": 1.0,
            "run_request": 1.0,
            "storage_class_a": 1.0,
        },
        "usd_per_account": 0.1,
        "usd_fixed_per_deployment": 0.16,
        "usd_per_account_at_1000": 0.1,
        "cloud_run": {"modelled": False, "usd": 0.01},
    }
    result = {
        "settings": {"repair_checks": "2m,4m"},
        "fleet": fleet,
        "per_account_month": month,
        "scheduler_call": None,
    }
    lines = _fleet().report(result)
    assert "REPAIR_CHECKS=2m,4m standing for 15m,24h" in "\n".join(lines)
    assert "settle 10.0 min, steady 2.0 min" in lines[0]
    assert "fetcher 2.00 reads, 1.00 writes" in "\n".join(lines)
