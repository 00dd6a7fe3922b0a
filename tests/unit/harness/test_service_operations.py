"""Adding up the services' operation totals from their log lines."""

from __future__ import annotations

from harness.benchmark import phase_total
from harness.service_operations import Totals, at, between, log_bytes, parse, totals_line


def test_a_totals_line_reads_back_and_other_lines_are_skipped() -> None:
    lines = [
        '{"severity": "INFO", "message": "window 1-2 fetched", "pages": 3}\n',
        totals_line(41, 100.0, {"firestore_reads": 3}),
        '{"harness_operations": {"firestore_reads": 9}, "pid": 4',  # cut by a SIGKILL
        "--- gunicorn ...\n",
    ]
    assert parse(lines) == [Totals(41, 100.0, {"firestore_reads": 3})]


TOTALS = [
    Totals(1, 10.0, {"firestore_reads": 5}),
    Totals(1, 20.0, {"firestore_reads": 8, "firestore_writes": 2}),
    Totals(2, 15.0, {"firestore_reads": 100}),  # a second worker (a restarted one)
    Totals(1, 30.0, {"firestore_reads": 11, "firestore_writes": 4}),
    Totals(2, 35.0, {"firestore_reads": 130}),
]


def test_a_moment_s_totals_are_each_worker_s_last_line_up_to_it_added_up() -> None:
    assert at(TOTALS, 9.0) == {}
    assert at(TOTALS, 20.0) == {"firestore_reads": 108, "firestore_writes": 2}
    assert at(TOTALS, 40.0) == {"firestore_reads": 141, "firestore_writes": 4}


def test_what_happened_between_two_moments() -> None:
    assert between(TOTALS, 20.0, 40.0) == {"firestore_reads": 33, "firestore_writes": 2}


def test_log_bytes_count_the_service_s_own_lines_within_the_span() -> None:
    early = '{"severity": "INFO", "time": "2026-11-29T10:00:00+00:00", "message": "a"}\n'
    late = '{"severity": "INFO", "time": "2026-11-29T10:01:00+00:00", "message": "bb"}\n'
    lines = [
        early,
        late,
        totals_line(1, 1.0, {"firestore_reads": 1}),  # the harness's, not the service's
        "--- gunicorn ...\n",
        "Traceback (most recent call last):\n",
    ]
    ten = 1_795_946_400.0  # 2026-11-29T10:00:00Z
    assert log_bytes(lines, None, ten + 60) == len(early) + len(late)
    assert log_bytes(lines, ten + 1, ten + 60) == len(late)
    assert log_bytes(lines, None, ten + 59) == len(early)


def test_a_phase_s_total_adds_up_the_services() -> None:
    figures = {
        "steady_per_min.planner.firestore_reads": 7.5,
        "steady_per_min.fetcher.firestore_reads": 2.0,
        "steady_per_min.writer.firestore_writes": 1.0,
        "backfill_per_1k.writer.firestore_reads": 100.0,
        "steady_per_min.writer.firestore_reads": None,  # a phase too short to scale
    }
    assert phase_total(figures, "steady_per_min", "firestore_reads") == 9.5
    assert phase_total(figures, "steady_per_min", "firestore_reads", ("fetcher",)) == 2.0
