"""``duo-telephony demo``: the whole pipeline on this machine, from Duo to the bucket, checked.

Uses the Duo simulator unless DUO_API_HOST, DUO_IKEY and DUO_SKEY name a real account.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.catchup import LocalStack, RunOptions, Summary, format_summary, run_catchup, settle
from harness.fleet import (
    FleetCheck,
    FleetOptions,
    caught_up,
    check_fleet,
    fleet_stack,
    fleet_status,
    format_check,
)
from harness.scheduler import Scheduler
from services.settings import ConfigError, parse_duration
from simulator.dataset import VISIBILITY_DELAY_US

SCHEDULER_PERIOD_SECONDS = 60
T = TypeVar("T")
DEFAULT_REFUSED_SHARE = 0.1  # the fleet demo's children refused, to show how they are shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = RunOptions()
    parser.add_argument(
        "--records",
        type=int,
        default=defaults.records,
        help="simulated records (default %(default)s)",
    )
    parser.add_argument(
        "--days",
        type=float,
        default=defaults.days,
        help="days the records span, ending 2 min ago (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="simulator seed (default %(default)s)"
    )
    parser.add_argument(
        "--lookback",
        default=None,
        help="how far back the first plan reaches, e.g. 36h or 7d (default: the days + 1h)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=defaults.rate_limit,
        metavar="PER_MINUTE",
        help="Duo requests per minute, enforced by the simulator and kept by the pipeline",
    )
    parser.add_argument(
        "--rate-limit-changes",
        default="",
        metavar="LIMIT@WHEN,...",
        help="the simulator's limit changes while it runs, e.g. 10@5m",
    )
    parser.add_argument(
        "--pipeline-rate-limit",
        default="",
        metavar="auto|R",
        help="what the pipeline is told (DUO_RATE_LIMIT_PER_MINUTE); default: --rate-limit",
    )
    parser.add_argument(
        "--bucket",
        default=defaults.bucket,
        help="bucket on the Storage emulator (default %(default)s)",
    )
    parser.add_argument(
        "--prefix", default=defaults.prefix, help="object prefix (default %(default)s)"
    )
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz objects")
    parser.add_argument(
        "--enrich",
        action="store_true",
        help="add eventtype and host to each record as Duo's Python client does",
    )
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="simulated share of 5xx answers"
    )
    parser.add_argument(
        "--malformed-rate", type=float, default=0.0, help="simulated share of broken bodies"
    )
    parser.add_argument(
        "--live",
        type=float,
        default=0.0,
        metavar="PER_MINUTE",
        help="simulated records arriving while it runs",
    )
    parser.add_argument(
        "--late-rate",
        type=float,
        default=0.0,
        help="simulated share of records Duo publishes late (repaired by the late-record checks)",
    )
    parser.add_argument(
        "--late-by",
        default="0s",
        metavar="DURATION",
        help="how long after its two minutes Duo publishes the late records, e.g. 10m",
    )
    parser.add_argument(
        "--boundary-precision",
        choices=("ms", "us"),
        default="ms",
        help="whether the simulated Duo compares maxtime with the records' microseconds",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="give up after this many seconds (default %(default)s)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after catching up, keep collecting (planner every minute) until Ctrl-C",
    )
    parser.add_argument(
        "--run-for",
        default=None,
        metavar="DURATION",
        help="keep collecting this long (e.g. 30m), then stop the live records, wait until "
        "every window has had its first late-record check, and check the bucket again",
    )
    fleet = parser.add_argument_group(
        "a fleet",
        "many Duo accounts (the simulator's fleet): each account's records checked against its "
        "ground truth; --records, --days and --live are the whole fleet's",
    )
    fleet.add_argument(
        "--accounts",
        type=int,
        default=0,
        metavar="N",
        help="N accounts with their own keys, read from a sources file (DUO_SOURCES_FILE)",
    )
    fleet.add_argument(
        "--msp-children",
        type=int,
        default=0,
        metavar="N",
        help="an MSP parent with N children, discovered by the planner (DUO_MSP_PARENT)",
    )
    fleet.add_argument(
        "--refused-share",
        type=float,
        default=None,
        help="share of the children in another Duo deployment, refused (default "
        f"{DEFAULT_REFUSED_SHARE})",
    )
    fleet.add_argument(
        "--activity-distribution",
        choices=("even", "zipf"),
        default="zipf",
        help="how the records spread over the accounts (default %(default)s: most quiet)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="where the processes log (default: a new temporary directory)",
    )


def run(args: argparse.Namespace) -> int:
    # SIGTERM ends the demo like Ctrl-C: every process it started is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.accounts or args.msp_children:
        return run_fleet(args)
    options = RunOptions(
        records=args.records,
        days=args.days,
        seed=args.seed,
        lookback=args.lookback,
        rate_limit=args.rate_limit,
        rate_limit_changes=args.rate_limit_changes,
        pipeline_rate_limit=args.pipeline_rate_limit,
        bucket=args.bucket,
        prefix=args.prefix,
        gzip=args.gzip,
        enrich=args.enrich,
        fail_rate=args.fail_rate,
        malformed_rate=args.malformed_rate,
        live=args.live,
        late_rate=args.late_rate,
        late_by=args.late_by,
        boundary_precision=args.boundary_precision,
        timeout=args.timeout,
    )
    try:
        options.check()
        run_for = parse_duration(args.run_for, "--run-for") if args.run_for else None
        if run_for is not None and run_for < 60:
            raise ConfigError("--run-for: use a duration of a minute or more, e.g. 30m")
    except ConfigError as error:
        print(f"duo-telephony demo: {error}", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="duo-telephony-demo-"))
    keep_running = None
    if args.keep_running or run_for is not None:
        keep_running = functools.partial(_steady_state, run_for=run_for)
    summary, code = _reported(
        log_dir,
        lambda: run_catchup(
            options,
            log_dir,
            progress=lambda line: print(line, flush=True),
            keep_running=keep_running,
        ),
    )
    if summary is None:
        return code
    heading = "caught up" if run_for is None else "settled: every window fetched and checked"
    print(f"\n{heading}\n" + format_summary(summary))
    if not summary.ok:
        print("\nFAILED: the bucket does not match Duo's records", file=sys.stderr)
        return 1
    return 0


def run_fleet(args: argparse.Namespace) -> int:
    """The fleet demo: every account caught up (the planner as often as the single-account
    demo's catch-up), the fleet's status, and each account checked against its ground truth."""
    options = FleetOptions(
        accounts=args.accounts,
        msp_children=args.msp_children,
        refused_share=(
            args.refused_share
            if args.refused_share is not None
            else DEFAULT_REFUSED_SHARE * bool(args.msp_children)
        ),
        distribution=args.activity_distribution,
        records=args.records,
        days=args.days,
        live=args.live,
        seed=args.seed,
        rate_limit=args.rate_limit,
        timeout=args.timeout,
    )
    try:
        options.check()
    except ConfigError as error:
        print(f"duo-telephony demo: {error}", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="duo-telephony-fleet-"))
    check, code = _reported(log_dir, lambda: _fleet_caught_up(options, log_dir))
    if check is None:
        return code
    print("\neach account against its ground truth\n" + format_check(check))
    if not check.ok:
        print("\nFAILED: the bucket does not match Duo's records", file=sys.stderr)
        return 1
    return 0


def _fleet_caught_up(options: FleetOptions, log_dir: Path) -> FleetCheck:
    say = functools.partial(print, flush=True)
    with fleet_stack(options, log_dir, say) as stack:
        started = time.monotonic()
        until_ms = int(time.time() * 1000) - VISIBILITY_DELAY_US // 1000
        scheduler = Scheduler(stack.pipeline.trigger_planner, RunOptions.plan_every, say)
        while True:
            scheduler.poll()
            done, total = caught_up(stack, until_ms)
            elapsed = time.monotonic() - started
            say(f"[{elapsed:6.1f}s] {done} of {total} accounts caught up (or shown refused)")
            if done == total:
                break
            if elapsed > options.timeout:
                raise TimeoutError(f"not caught up after {options.timeout:.0f} s")
            time.sleep(RunOptions.plan_every)
        say("\n" + fleet_status(stack.pipeline.config.project))
        return check_fleet(stack)


def _reported(log_dir: Path, work: Callable[[], T]) -> tuple[T | None, int]:
    """``work()``'s result, or None and the exit code once its failure or Ctrl-C is told."""
    try:
        return work(), 0
    except KeyboardInterrupt:
        print("\ninterrupted: every process the demo started is stopped", file=sys.stderr)
        return None, 130
    except Exception as error:
        print(f"duo-telephony demo failed: {error}\nlogs in {log_dir}", file=sys.stderr)
        return None, 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _steady_state(stack: LocalStack, caught_up: Summary, run_for: float | None) -> Summary:
    """Collects as production does (the planner every minute) until Ctrl-C, or for
    ``run_for`` seconds and then until every window is fetched and checked; the summary is
    the catch-up's, or the settled one's."""
    print("\ncaught up\n" + format_summary(caught_up), flush=True)
    print(beside_commands(stack), flush=True)
    until = "Ctrl-C to stop" if run_for is None else f"for {run_for / 60:g} min"
    print(f"keeping on: the planner runs every {SCHEDULER_PERIOD_SECONDS} s; {until}", flush=True)
    deadline = None if run_for is None else time.monotonic() + run_for

    def plan() -> dict[str, Any]:
        handed_out = stack.pipeline.trigger_planner()
        # What each source planned is in the planner's log (its /plan requests).
        print(
            f"handed out {handed_out['sources']} source(s) to plan in {handed_out['slices']} "
            "slice(s)",
            flush=True,
        )
        return handed_out

    scheduler = Scheduler(plan, SCHEDULER_PERIOD_SECONDS, lambda line: print(line, flush=True))
    try:
        scheduler.run_until(
            lambda: deadline is not None and time.monotonic() >= deadline, time.sleep
        )
    except KeyboardInterrupt:
        if run_for is not None:
            raise
        return caught_up
    return settle(stack, SCHEDULER_PERIOD_SECONDS, progress=lambda line: print(line, flush=True))


def beside_commands(stack: LocalStack) -> str:
    """The commands that look at what the demo runs, from another shell, while it runs."""
    variables = " ".join(f"{name}={value}" for name, value in sorted(stack.cloud_env.items()))
    location = f"gs://{stack.options.bucket}/{stack.options.prefix}"
    source = stack.pipeline.config.source
    return "\n".join(
        [
            "\nfrom another shell in this checkout, while it runs:",
            f"  export {variables}",
            f"  ./dev status --source {source}",
            f"  ./dev verify {location}",
            f"  ./dev udm {location} --format table | head -20",
        ]
    )
