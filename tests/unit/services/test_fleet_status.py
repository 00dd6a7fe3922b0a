"""``duo-telephony status`` for a fleet: a thousand sources summarised on one screen."""

from __future__ import annotations

import io
import json
from threading import Event
from typing import Any

from services import cli, status
from services.fleet_status import LISTED, summary
from shared.clock import Clock
from tests.unit.services.test_status_exit import NOW, env, report  # noqa: F401 (a fixture)

HOUR = 3_600_000


def fleet_report(n: int) -> dict[str, Any]:
    """Source n of a synthetic fleet: every 100th refused by Duo, every 250th broken, every
    50th with a quarantined window, every 10th reading a backfill, lags growing with n."""
    r = report(f"acct-{n:04d}", quarantined=int(n % 50 == 0))
    r["watermark_ms"] = NOW - n * 60_000
    r["quarantined"] = [
        {"window_id": f"w{n}", "failures": 8, "error": "DuoProtocolError: no id"}
        for _ in range(r["windows"]["quarantined"])
    ]
    state = "refused" if n % 100 == 1 else "broken" if n % 250 == 2 else "active"
    r["registry"] = {"state": state, "origin": "child"}
    if state == "refused":
        r["registry"] |= {"code": 40301, "error": "Access forbidden", "fix": "grant Read Log"}
    if state == "broken":
        r["registry"] |= {"error": "DUO_SKEY_SECRET version not found"}
    r["progress"] = (
        {"records": 1_000, "total": 1_000 + n, "exact": True, "per_minute": 10.0}
        if n % 10 == 0
        else None
    )
    return r


FLEET = [fleet_report(n) for n in range(1, 1001)]


def test_a_thousand_sources_are_counted_by_registry_state_and_health():
    totals = summary(FLEET, NOW)
    assert totals["sources"] == 1000
    assert totals["states"] == {"active": 986, "gone": 0, "refused": 10, "broken": 4}
    assert totals["health"] == {
        "behind": 1000 - 60,  # more than an hour behind: acct-0061 onwards
        "no cursor": 0,
        "failed": 0,
        "quarantined": 20,
        "stalled": 0,
    }


def test_a_source_the_registry_does_not_list_counts_as_active():
    fleet = [report(f"s{n}") for n in range(3)]  # read before the registry: no entry
    assert summary(fleet, NOW)["states"] == {"active": 3, "gone": 0, "refused": 0, "broken": 0}


def test_the_worst_lags_come_first():
    assert [lag["source"] for lag in summary(FLEET, NOW)["worst_lags"]] == [
        "acct-1000",
        "acct-0999",
        "acct-0998",
        "acct-0997",
        "acct-0996",
    ]
    assert summary(FLEET, NOW)["worst_lags"][0]["lag_ms"] == 1000 * 60_000


def test_backfills_in_progress_add_their_records_left_and_name_the_longest():
    assert summary(FLEET, NOW)["backfills"] == {
        "count": 100,
        "records_left": sum(range(10, 1001, 10)),
        "longest_minutes_left": 100.0,  # acct-1000: 1,000 records at 10 a minute
    }


def test_the_summary_of_a_thousand_sources_fits_one_screen():
    out = io.StringIO()
    assert status.show(FLEET, NOW, as_json=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert len(lines) <= 40
    assert lines[0].startswith("fleet of 1,000 sources")
    assert "  registry    active 986, gone 0, refused 10, broken 4" in lines
    assert "    acct-0001 refused (Duo code 40301): Access forbidden; fix: grant Read Log" in lines
    assert "    duo-telephony retry acct-0050 w50  # DuoProtocolError: no id" in lines
    assert "    acct-0002 broken: DUO_SKEY_SECRET version not found" in lines
    assert "    and 9 more" in lines  # 14 refused or broken, 20 quarantined: LISTED of each
    assert "    and 15 more" in lines
    assert "  backfills   100 in progress, 50,500 records left, longest ~100 min left" in lines


def test_quarantined_windows_are_counted_beyond_those_a_report_names():
    fleet = [report(f"s{n}") for n in range(LISTED + 1)]
    fleet[0]["windows"]["quarantined"] = 60  # the report names STATUS_LIST (50) of them
    fleet[0]["quarantined"] = [
        {"window_id": f"w{n:02d}", "failures": 8, "error": "bad"} for n in range(50)
    ]
    out = io.StringIO()
    status.show(fleet, NOW, as_json=False, out=out)
    lines = out.getvalue().splitlines()
    assert "  quarantined windows: 60" in lines
    assert "    and 55 more" in lines


def test_a_refused_account_alone_makes_the_exit_code_1():
    fleet = [report(f"s{n}") for n in range(LISTED + 2)]
    assert status.show(fleet, NOW, as_json=False, out=io.StringIO()) == 0
    fleet[3]["registry"] = {"state": "refused", "code": 40301, "error": "Access forbidden"}
    out = io.StringIO()
    assert status.show(fleet, NOW, as_json=False, out=out) == 1
    assert "    s3 refused (Duo code 40301): Access forbidden" in out.getvalue().splitlines()


def test_a_few_sources_are_each_shown_in_full():
    fleet = [report(f"s{n}") for n in range(5)]
    out = io.StringIO()
    status.show(fleet, NOW, as_json=False, out=out)
    assert out.getvalue() == "".join(status.render(r, NOW) + "\n" for r in fleet)


def test_format_json_and_its_alias_print_every_report(env, capsys):  # noqa: F811
    env.setenv("GOOGLE_CLOUD_PROJECT", "acme-prod")

    def read(
        project: str, sources: list[str] | None, clock: Clock, answered: Event
    ) -> list[dict[str, Any]]:
        return FLEET

    env.setattr(status, "read_reports", read)
    for flags in (["--format", "json"], ["--json"]):
        assert cli.main(["status", *flags]) == 1
        assert json.loads(capsys.readouterr().out) == FLEET
