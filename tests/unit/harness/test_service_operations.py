"""Adding up the services' operation totals from their log lines."""

from __future__ import annotations

from harness.benchmark import phase_operations, phase_total
from harness.service_operations import (
    LOG_BYTES,
    Totals,
    at,
    between,
    log_bytes,
    parse,
    requests_between,
    totals_line,
)


def test_a_totals_line_reads_back_and_other_lines_are_skipped() -> None:
    lines = [
        '{"severity": "INFO", "message": "window 1-2 fetched", "pages": 3}\n',
        totals_line(41, 100.0, {"firestore_reads": 3}),
        '{"harness_operations": {"firestore_reads": 9}, "pid": 4',  # cut by a SIGKILL
        "--- gunicorn ...\n",
    ]
    assert parse(lines) == [Totals(41, 100.0, {"firestore_reads": 3})]


def test_a_totals_line_names_its_request_s_start_and_end() -> None:
    [entry] = parse([totals_line(41, 100.0, {"cloud_run_requests": 1}, (99.75, 100.0))])
    assert entry == Totals(41, 100.0, {"cloud_run_requests": 1}, (99.75, 100.0))


def test_a_phase_s_requests_are_those_that_ended_in_it() -> None:
    totals = [
        Totals(1, 10.0, {}, (9.0, 10.0)),
        Totals(1, 20.0, {}, (19.5, 20.0)),
        Totals(2, 25.0, {}, (15.0, 25.0)),  # began before the phase: counted whole
        Totals(1, 30.0, {}, (29.0, 30.0)),
    ]
    assert requests_between(totals, 10.0, 25.0) == [(19.5, 20.0), (15.0, 25.0)]
    assert requests_between(totals, None, 10.0) == [(9.0, 10.0)]
    # lines written before they named the request: nothing to model from
    assert requests_between([Totals(1, 10.0, {})], None, 20.0) is None
    # a log begun before they did: the requests named; a log without a line: none
    begun = [Totals(1, 10.0, {}), Totals(1, 20.0, {}, (19.5, 20.0))]
    assert requests_between(begun, None, 20.0) == [(19.5, 20.0)]
    assert requests_between([], None, 20.0) == []


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


def test_a_worker_s_totals_are_its_latest_line_whatever_order_the_lines_come_in() -> None:
    shuffled = [TOTALS[3], TOTALS[0], TOTALS[1]]  # worker 1's, the latest first
    assert at(shuffled, 40.0) == {"firestore_reads": 11, "firestore_writes": 4}


def test_what_happened_between_two_moments() -> None:
    assert between(TOTALS, 20.0, 40.0) == {"firestore_reads": 33, "firestore_writes": 2}


def test_log_bytes_count_the_service_s_own_lines_within_the_span() -> None:
    early = '{"severity": "INFO", "time": "2026-11-29T10:00:00+00:00", "message": "a"}\n'
    late = '{"severity": "INFO", "time": "2026-11-29T10:01:00+00:00", "message": "bé"}\n'
    lines = [
        early,
        late,
        totals_line(1, 1.0, {"firestore_reads": 1}),  # the harness's, not the service's
        "--- gunicorn ...\n",
        "Traceback (most recent call last):\n",
    ]
    ten = 1_795_946_400.0  # 2026-11-29T10:00:00Z
    # Cloud Logging counts bytes, not characters (the é is two)
    assert log_bytes(lines, None, ten + 60) == len(early) + len(late) + 1
    assert log_bytes(lines, ten, ten + 60) == len(early) + len(late) + 1  # from its start
    assert log_bytes(lines, ten + 1, ten + 60) == len(late) + 1
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


def test_a_phase_s_operations_hold_its_requests_billable_instance_time() -> None:
    def served(at: float, began: float, count: int) -> str:
        return totals_line(7, at, {"cloud_run_requests": count}, (began, at))

    logs = {
        "planner": [
            served(99.0, 98.0, 1),  # before the phase
            served(101.0, 100.0, 2),
            served(101.5, 100.5, 3),
            served(200.0, 199.0, 4),
        ],
        "writer": [totals_line(8, 101.0, {"cloud_run_requests": 1})],  # an older log
    }
    phase = phase_operations(logs, 100.0, 150.0)
    # two requests of 1 s overlapping by half: one instance busy 1.5 s
    assert phase["planner"]["cloud_run_requests"] == 2
    assert phase["planner"]["cloud_run_billable_ms"] == 1500
    assert phase["writer"] == {"cloud_run_requests": 1, LOG_BYTES: 0}
