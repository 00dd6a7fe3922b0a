"""The demo refuses options it cannot run before it starts anything, naming the flag."""

from __future__ import annotations

import pytest

from harness import demo
from harness.catchup import RunOptions, Summary
from services.cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--lookback", "200d"], "--lookback: Duo keeps 180 days of logs; use at most 180d"),
        (["--lookback", "yesterday"], "--lookback: 'yesterday' is not a duration"),
        (["--days", "0"], "--days"),
        (["--days", "181"], "--days"),
        (["--records", "-1"], "--records"),
        (["--rate-limit", "0"], "--rate-limit"),
        (["--rate-limit-changes", "10"], "--rate-limit-changes: '10' is not LIMIT@WHEN"),
        (["--pipeline-rate-limit", "fast"], "--pipeline-rate-limit: 'fast' is neither auto"),
        (["--pipeline-rate-limit", "0"], "--pipeline-rate-limit: 0 is outside"),
        (["--fail-rate", "1.5"], "--fail-rate"),
        (["--malformed-rate", "-0.1"], "--malformed-rate"),
        (["--live", "-5"], "--live"),
        (["--timeout", "0"], "--timeout"),
        (["--bucket", "Not_A_Bucket"], "--bucket"),
        (["--prefix", "a//b"], "--prefix"),
        (["--run-for", "half an hour"], "--run-for: 'half an hour' is not a duration"),
        (["--run-for", "0m"], "--run-for: use a duration of a minute or more"),
        (["--run-for", "30s"], "--run-for: use a duration of a minute or more"),
    ],
)
def test_a_bad_option_is_named_and_nothing_starts(argv, named, monkeypatch, capsys):
    def must_not_start(*_args, **_kwargs):
        raise AssertionError("the demo started the pipeline with options it should refuse")

    monkeypatch.setattr(demo, "run_catchup", must_not_start)
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("duo-telephony demo: ")
    assert named in err


def test_the_default_lookback_covers_the_simulated_days_within_retention():
    assert RunOptions(days=2).first_lookback == "49h"
    assert RunOptions(days=180).first_lookback == "4320h"
    assert RunOptions(days=2, lookback="7d").first_lookback == "7d"
    RunOptions(days=180).check()


@pytest.mark.parametrize(
    ("argv", "steady", "heading"),
    [
        (["--run-for", "30m"], {"run_for": 1800}, "settled: every window fetched and checked"),
        (["--keep-running"], {"run_for": None}, "caught up"),  # until Ctrl-C
        ([], None, "caught up"),  # no steady state
    ],
)
def test_run_for_keeps_collecting_that_long_and_then_settles(
    argv, steady, heading, monkeypatch, capsys, tmp_path
):
    kept: list[object] = []

    def caught_up(_options, _log_dir, progress, keep_running):
        kept.append(keep_running)
        return Summary(simulated=False, duplicated=0)

    monkeypatch.setattr(demo, "run_catchup", caught_up)
    assert main(["demo", "--log-dir", str(tmp_path), *argv]) == 0
    [keep_running] = kept
    if steady is None:
        assert keep_running is None
    else:
        assert keep_running.func is demo._steady_state
        assert keep_running.keywords == steady
    assert capsys.readouterr().out.startswith(f"\n{heading}\n")
