"""``duo-telephony simulate``: a local stand-in for Duo's telephony log endpoint.

The default keys are public demo values, not secrets: the simulator prints them on start so a
collector can be pointed at it. ``DUO_SIM_SKEY`` overrides the secret key when ``--skey`` is not
given.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import threading
from collections.abc import Callable

from shared.clock import SystemClock
from shared.duo.secret import Secret
from simulator.api import ApiOptions, TelephonyApi
from simulator.dataset import Dataset, DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import ACCOUNTS_PATH, FleetApi
from simulator.server import SimulatorServer

DEFAULT_PORT = 18443
DEMO_IKEY = "DIDEMOSIMULATOR00001"
DEMO_SKEY = "duoSimulatorDemoSecretKeyNotSecret000000"  # 40 characters, like a real one
SKEY_ENV = "DUO_SIM_SKEY"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction within [0, 1]")
    return value


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must be >= 0")
        return value

    return parse


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 10m or 2h")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def rate_limit_changes(text: str) -> tuple[tuple[float, int], ...]:
    """``10@10m,60@30m``: the limit becomes 10 a minute 10 minutes after the start, then 60."""
    changes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        limit, at, after = part.partition("@")
        if not at or not limit.isdigit():
            raise argparse.ArgumentTypeError(f"{part!r} is not LIMIT@WHEN, like 10@10m")
        changes.append((_duration(after), int(limit)))
    if changes != sorted(changes, key=lambda change: change[0]):
        raise argparse.ArgumentTypeError(f"{text!r}: list the changes in time order")
    return tuple(changes)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return value


def _days(text: str) -> float:
    value = float(text)
    if not 0 < value <= 180:
        raise argparse.ArgumentTypeError("days must be within (0, 180]: Duo keeps 180 days")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="default %(default)s; 0 picks a free port"
    )
    parser.add_argument("--ikey", default=DEMO_IKEY, help="integration key (default %(default)s)")
    parser.add_argument(
        "--skey",
        default=None,
        help=f"secret key (default: ${SKEY_ENV}, else a fixed demo key that is printed)",
    )
    parser.add_argument(
        "--records", type=_non_negative(int), default=5000, help="default %(default)s"
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=2.0,
        help="span of the records, ending 2 minutes before start (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="same seed, same records (default 7)")
    parser.add_argument(
        "--rate-limit",
        type=_non_negative(int),
        default=0,
        metavar="PER_MINUTE",
        help="requests per minute for the whole simulator (a fleet: see --rate-limit-scope), "
        "then 429 (default: off)",
    )
    parser.add_argument(
        "--rate-limit-changes",
        type=rate_limit_changes,
        default=(),
        metavar="LIMIT@WHEN,...",
        help="the limit changes while running, e.g. 10@10m: 10 a minute from 10 minutes on",
    )
    parser.add_argument(
        "--live",
        type=_non_negative(float),
        default=0.0,
        metavar="PER_MINUTE",
        help="new records arriving per minute while running (default: none)",
    )
    parser.add_argument(
        "--late-rate",
        type=_fraction,
        default=0.0,
        help="share of records Duo publishes late (default: none)",
    )
    parser.add_argument(
        "--late-by",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="how long after the usual two minutes the late records appear, e.g. 10m",
    )
    parser.add_argument("--fail-rate", type=_fraction, default=0.0, help="fraction answered 5xx")
    parser.add_argument(
        "--slow",
        type=_non_negative(float),
        default=0.0,
        metavar="SECONDS",
        help="latency added to every API request",
    )
    parser.add_argument(
        "--malformed-rate", type=_fraction, default=0.0, help="fraction of 200s with a broken body"
    )
    parser.add_argument(
        "--repeat-boundary",
        action="store_true",
        help="each next page starts with the event its token names (clients must deduplicate)",
    )
    parser.add_argument(
        "--final-offset",
        choices=("absent", "null", "echo"),
        default="absent",
        help="next_offset on the last page: left out, null, or echo (the last page has a "
        "token and the page after it is empty and hands it back)",
    )
    parser.add_argument(
        "--boundary-precision",
        choices=("ms", "us"),
        default="ms",
        help="compare maxtime with the records' microseconds (us) or take in its whole "
        "millisecond (ms, the default)",
    )
    fleet = parser.add_argument_group(
        "a fleet", "many Duo accounts on the one port; --records and --live are the fleet's"
    )
    fleet.add_argument(
        "--accounts",
        type=_non_negative(int),
        default=0,
        metavar="N",
        help="N accounts, each with its own keys and host (listed at /__sim__/accounts)",
    )
    fleet.add_argument(
        "--msp-children",
        type=_non_negative(int),
        default=0,
        metavar="N",
        help="an MSP parent (--ikey, --skey) whose Accounts API lists N children, each read "
        "with the parent's keys and its account_id at its own api_hostname",
    )
    fleet.add_argument(
        "--refused-share",
        type=_fraction,
        default=0.0,
        help="share of the children that refuse the parent's keys (40301), as children in "
        "another Duo deployment do",
    )
    fleet.add_argument(
        "--activity-distribution",
        choices=("even", "zipf"),
        default="even",
        help="how the records spread over the accounts: evenly, or zipf (most accounts quiet, "
        "a few busy; which ones depends on --seed)",
    )
    fleet.add_argument(
        "--rate-limit-scope",
        choices=("account", "parent"),
        default="account",
        help="--rate-limit per account, or per credentials (the MSP parent's keys share one)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")


def _fleet_spec(args: argparse.Namespace) -> FleetSpec | None:
    """The fleet asked for, or None for the single account; raises ValueError naming the
    option that cannot be used."""
    if args.refused_share and not args.msp_children:
        raise ValueError("--refused-share needs --msp-children")
    if args.rate_limit_scope == "parent" and not args.msp_children:
        raise ValueError("--rate-limit-scope parent needs --msp-children")
    fleet = args.accounts or args.msp_children
    if not fleet and args.activity_distribution != "even":
        raise ValueError("--activity-distribution needs --accounts or --msp-children")
    if not fleet:
        return None
    return FleetSpec(
        accounts=args.accounts,
        msp_children=args.msp_children,
        refused_share=args.refused_share,
        distribution=args.activity_distribution,
        rate_limit_scope=args.rate_limit_scope,
    )


def run(args: argparse.Namespace) -> int:
    # Handlers first: a SIGTERM while the data set is generated must still end cleanly.
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        fleet = _fleet_spec(args)
    except ValueError as error:
        print(f"duo-telephony simulate: {error}", file=sys.stderr)
        return 2
    skey = Secret(args.skey or os.environ.get(SKEY_ENV) or DEMO_SKEY)
    clock = SystemClock()
    dataset_spec = DatasetSpec(
        records=args.records,
        days=args.days,
        seed=args.seed,
        live_per_minute=args.live,
        late_rate=args.late_rate,
        late_by_seconds=args.late_by,
    )
    options = ApiOptions(
        rate_limit_per_minute=args.rate_limit,
        rate_limit_changes=args.rate_limit_changes,
        fail_rate=args.fail_rate,
        slow_seconds=args.slow,
        malformed_rate=args.malformed_rate,
        repeat_boundary=args.repeat_boundary,
        final_offset=args.final_offset,
        boundary_precision=args.boundary_precision,
    )
    api: TelephonyApi | FleetApi
    if fleet is None:
        dataset = Dataset(dataset_spec, start=clock.now())
        # Faults get their own RNG stream so they never change the data set.
        api = TelephonyApi(
            dataset, {args.ikey: skey}, clock, random.Random(f"faults:{args.seed}"), options
        )
    else:
        api = FleetApi(fleet, dataset_spec, (args.ikey, skey), clock, options)
    try:
        server = SimulatorServer(api, port=args.port, verbose=args.verbose)
    except OSError as error:
        print(
            f"duo-telephony simulate: cannot listen on 127.0.0.1:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    server.start()
    # It is a simulator: printing its demo secret key is the point.
    if isinstance(api, FleetApi):
        print(_fleet_ready(api, server, args.ikey, skey), flush=True)
    else:
        print(
            f"Duo simulator ready at {server.base_url} with {len(api.dataset)} records: "
            f"ikey={args.ikey} skey={skey.reveal()} "
            f"(plain HTTP; e.g. DUO_API_HOST=http://{server.host_port}; "
            f"ground truth at {server.base_url}/__sim__/records)",
            flush=True,
        )
    while not stop.wait(0.5):
        pass
    server.stop()
    print("Duo simulator stopped", flush=True)
    return 0


def _fleet_ready(api: FleetApi, server: SimulatorServer, ikey: str, skey: Secret) -> str:
    spec = api.spec
    records = sum(api.records(account.account_id) for account in api.accounts)
    parts = [f"Duo simulator ready at {server.base_url} with {records} records"]
    if spec.accounts:
        parts.append(f"{spec.accounts} accounts with their own keys")
    if spec.msp_children:
        parts.append(
            f"an MSP parent ikey={ikey} skey={skey.reveal()} with {spec.msp_children} children "
            f"({spec.refused} refusing its keys)"
        )
    return (
        "; ".join(parts) + f" (plain HTTP; accounts, keys and hosts at "
        f"{server.base_url}{ACCOUNTS_PATH}; ground truth at "
        f"{server.base_url}/__sim__/records?account_id=...)"
    )
