"""The fan-out benchmark's fleet is one the planner takes: its sources file configures exactly
the N accounts timed, and no single account besides."""

from __future__ import annotations

from pathlib import Path

from harness.fanout_bench import sources_file
from services.settings import planner_settings


def test_the_benchmarks_sources_file_configures_n_accounts_and_nothing_else(tmp_path: Path):
    path = sources_file(tmp_path / "sources.json", "acme-prod", 1000)
    settings = planner_settings(
        {"GOOGLE_CLOUD_PROJECT": "acme-prod", "DUO_SOURCES_FILE": str(path)}
    )
    assert len(settings.configured) == 1000
    assert len({spec.id for spec in settings.configured}) == 1000
