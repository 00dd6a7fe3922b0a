"""What ``duo-telephony status`` prints for an operator."""

from services.status import render
from shared.clock import now_ms
from tests.fakes import FakeClock

NOW = now_ms(FakeClock(1_800_000_000))  # 2027-01-15T08:00:00Z


def report(**changes):
    base = {
        "source": "eu-prod",
        "exists": True,
        "watermark_ms": NOW - 3_725_000,
        "planned_until_ms": NOW - 60_000,
        "windows": {
            "planned": 3,
            "fetching": 1,
            "fetched": 0,
            "done": 1234,
            "failed": 2,
            "quarantined": 0,
        },
        "records": 1_234_567,
        "rereads": 0,
        "checks": 0,
        "repairs": 0,
        "quarantined": [],
        "stalled": [],
        "retention_lost_ms": [],
        "last_error": "window 1799996000000-1799996300000: Duo answered HTTP 500",
        "gap_ms": None,
    }
    base.update(changes)
    return base


def test_a_source_with_a_cursor():
    assert render(report(), NOW).splitlines() == [
        "source eu-prod",
        "  watermark   2027-01-15T06:57:55.000+00:00 (everything up to here is in Cloud Storage)",
        "  lag         3,725 s behind now",
        "  planned to  2027-01-15T07:59:00.000+00:00",
        "  windows     planned 3, fetching 1, fetched 0, done 1234, failed 2, quarantined 0",
        "  records     1,234,567 fetched by the windows kept (30 days)",
        "  re-reads    0 (windows read again because batches did not land)",
        "  late checks 0 spans checked against Duo's count, 0 found records Duo published late "
        "and read the window again",
        "  last error  window 1799996000000-1799996300000: Duo answered HTTP 500",
    ]


def test_quarantined_windows_and_retention_losses_are_named_with_what_to_do():
    quarantined = {
        "window_id": "1799996000000-1799996300000",
        "state": "quarantined",
        "error": "DuoProtocolError: an item without an id",
        "failures": 8,
        "updated_at_ms": NOW,
    }
    lines = render(
        report(quarantined=[quarantined], retention_lost_ms=[[NOW - 7_200_000, NOW - 3_600_001]]),
        NOW,
    ).splitlines()
    assert lines[-3:] == [
        "  quarantined 1799996000000-1799996300000 after 8 failures: "
        "DuoProtocolError: an item without an id",
        "              put it back: duo-telephony retry eu-prod 1799996000000-1799996300000",
        "  lost        2027-01-15T06:00:00.000+00:00 to 2027-01-15T06:59:59.999+00:00: left "
        "Duo's 180-day retention before it was fetched",
    ]


def test_a_window_stalled_on_the_bucket_is_named_with_the_permission_it_needs():
    stalled = {
        "window_id": "1799996000000-1799996300000",
        "state": "fetched",
        "error": "window 1799996000000-1799996300000: looking in the bucket for its batches [1] "
        "failed (Forbidden: 403 GET); the planner's service account needs "
        "roles/storage.objectViewer on the bucket (storage.objects.list and "
        "storage.objects.get); reading them again could land them twice, so the window waits "
        "for the next run",
        "failures": 0,
        "bucket_waits": 7,
        "updated_at_ms": NOW,
    }
    lines = render(report(stalled=[stalled]), NOW).splitlines()
    assert lines[-1] == (
        "  stalled     1799996000000-1799996300000 waited 7 planner runs for the bucket: "
        + stalled["error"]
    )


def test_no_error_and_nothing_planned_yet():
    text = render(report(last_error=None, planned_until_ms=None, watermark_ms=NOW), NOW)
    assert "  last error  none" in text
    assert "  planned to  -" in text
    assert "  lag         0 s behind now" in text


def test_lag_is_counted_from_the_given_now():
    text = render(report(watermark_ms=NOW - 1_500), NOW + 998_500)
    assert "  lag         1,000 s behind now" in text


def test_a_source_with_no_cursor_yet():
    empty = report(
        source="us-prod",
        exists=False,
        watermark_ms=None,
        planned_until_ms=None,
        windows={state: 0 for state in ("planned", "fetching", "fetched", "done", "failed")},
        last_error=None,
    )
    assert render(empty, NOW) == "source us-prod: no cursor yet (the planner has not run)"


def test_a_backfill_being_read_shows_its_bar_against_duos_count():
    progress = {"records": 12_000, "total": 20_000, "exact": True, "per_minute": 1000.0}
    lines = render(report(progress=progress), NOW).splitlines()
    assert lines[-1] == (
        "  backfill    [######....] 12,000 / 20,000 records (60 %), 1,000/min, ~8 min left"
    )
    assert "backfill" not in render(report(progress=None), NOW)
