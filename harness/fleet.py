"""A fleet through the whole local pipeline: the Duo simulator's fleet (accounts with their own
keys, read from a sources file, and an MSP parent's children, discovered by the planner), the
three services, and each account's landed records held against its ground truth.

The fleet demo, the fleet benchmark and the fleet integration tests all start a fleet here.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from google.cloud import storage

from harness.catchup import DEMO_PROJECT, environment, new_run_id
from harness.emulators import LocalCloud
from harness.pipeline import LocalPipeline, PipelineConfig
from services.fleet_status import summary
from services.settings import ConfigError
from services.status import read_reports, render_summary
from shared.clock import SystemClock
from shared.duo.records import record_time_ms
from shared.duo.secret import Secret
from shared.gcp.clients import firestore_client, storage_client
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.objects import decode_records, parse_object_name
from shared.pipeline.sources import REFUSED
from shared.pipeline.topics import TopicNames
from simulator.api import ApiOptions
from simulator.dataset import DatasetSpec
from simulator.fleet import FleetSpec
from simulator.fleet_api import ACCOUNTS_PATH, FleetApi
from simulator.server import SimulatorServer

PARENT_ID = "msp"
PARENT_IKEY = "DIMSPPARENTINTEGRATE"
# A simulator's key: a demo value, like simulator.command's DEMO_SKEY.
PARENT_SKEY = "MspParentSecretKeyForTheLocalFleet000000"
SECRETS_PROJECT = "projects/duo-telephony-local/secrets"


@dataclass(frozen=True)
class FleetOptions:
    accounts: int = 0  # accounts with their own keys, in the sources file
    msp_children: int = 0  # the MSP parent's children, discovered by the planner
    refused_share: float = 0.0
    distribution: str = "zipf"
    records: int = 5000  # the fleet's backlog, spread over the accounts
    days: float = 1.0
    live: float = 0.0  # the fleet's live records a minute, spread as the backlog is
    seed: int = 7
    rate_limit: int = 60  # each account's Duo requests a minute
    bucket: str = "duo-telephony-fleet"
    prefix: str = "customers"  # each account's objects under PREFIX/ACCOUNT_ID/
    timeout: float = 1800.0
    # REPAIR_CHECKS for the services ("": their default), so a bench can bring the checks'
    # ages forward.
    repair_checks: str = ""

    def service_env(self) -> dict[str, str]:
        """The services' variables these options set beyond the fleet's own."""
        return {"REPAIR_CHECKS": self.repair_checks} if self.repair_checks else {}

    @property
    def lookback(self) -> str:
        return f"{int(self.days * 24) + 1}h"

    def spec(self) -> FleetSpec:
        return FleetSpec(
            accounts=self.accounts,
            msp_children=self.msp_children,
            refused_share=self.refused_share,
            distribution=self.distribution,  # type: ignore[arg-type]
        )

    def check(self) -> None:
        """Refuses options that cannot run before anything starts, naming the flag."""
        if self.accounts < 0 or self.msp_children < 0:
            raise ConfigError("--accounts/--msp-children: the numbers must be 0 or more")
        if self.accounts + self.msp_children < 1:
            raise ConfigError("--accounts/--msp-children: a fleet needs at least one account")
        if not 0 <= self.refused_share <= 1:
            raise ConfigError(f"--refused-share: {self.refused_share} must be within [0, 1]")
        if self.refused_share and not self.msp_children:
            raise ConfigError("--refused-share needs --msp-children")
        if self.distribution not in ("even", "zipf"):
            raise ConfigError(f"--activity-distribution: use even or zipf, not {self.distribution}")
        if self.records < 0:
            raise ConfigError(f"--records: {self.records} must be 0 or more")
        if not 0 < self.days <= 180:
            raise ConfigError("--days: Duo keeps 180 days; use more than 0 and at most 180")
        if self.live < 0:
            raise ConfigError(f"--live: {self.live} must be 0 or more records a minute")
        if self.rate_limit < 1:
            raise ConfigError(f"--rate-limit: {self.rate_limit} must be at least 1 a minute")


def account_prefix(prefix: str, account_id: str) -> str:
    return f"{prefix}/{account_id}"


def source_of(account_id: str) -> str:
    """The source id the registry gives an account: a child's is its lower-cased id, and the
    sources file here names each account so too."""
    return account_id.lower()


@contextlib.contextmanager
def fleet_simulator(options: FleetOptions) -> Iterator[SimulatorServer]:
    dataset = DatasetSpec(
        records=options.records, days=options.days, seed=options.seed, live_per_minute=options.live
    )
    api = FleetApi(
        options.spec(),
        dataset,
        (PARENT_IKEY, Secret(PARENT_SKEY)),
        SystemClock(),
        ApiOptions(rate_limit_per_minute=options.rate_limit),
    )
    with SimulatorServer(api, port=0) as server:
        yield server


def listed_accounts(sim: SimulatorServer) -> list[dict[str, Any]]:
    """The simulator's accounts with their keys, refusals and record counts."""
    return requests.get(f"{sim.base_url}{ACCOUNTS_PATH}", timeout=30).json()


def fleet_env(sim: SimulatorServer, prefix: str, directory: Path) -> dict[str, str]:
    """The services' variables for the simulator's fleet: a sources file for the accounts with
    their own keys, the MSP parent for the children, each account under its own prefix, and
    the secrets as ``DUO_LOCAL_SECRETS`` (the simulator's demo keys, not real ones)."""
    secrets: dict[str, str] = {}
    env: dict[str, str] = {}
    own = [a for a in listed_accounts(sim) if not a["msp_child"]]
    if own:
        entries = []
        for account in own:
            source = source_of(account["account_id"])
            secret = f"{SECRETS_PROJECT}/{source}/versions/1"
            secrets[secret] = account["skey"]
            entries.append(
                {
                    "id": source,
                    "name": account["name"],
                    "api_host": sim.base_url,
                    "ikey": account["ikey"],
                    "skey_secret": secret,
                    "destination": {"prefix": account_prefix(prefix, account["account_id"])},
                }
            )
        path = directory / "sources.json"
        path.write_text(json.dumps(entries, indent=1))
        env["DUO_SOURCES_FILE"] = str(path)
    if isinstance(sim.api, FleetApi) and sim.api.spec.msp_children:
        secret = f"{SECRETS_PROJECT}/{PARENT_ID}/versions/1"
        secrets[secret] = PARENT_SKEY
        parent = {
            "id": PARENT_ID,
            "api_host": sim.base_url,
            "ikey": PARENT_IKEY,
            "skey_secret": secret,
            "destination": {"prefix": account_prefix(prefix, "{account_id}")},
            # The budget the simulator counts the children's reads against.
            "rate_limit": sim.api.spec.rate_limit_scope,
        }
        env["DUO_MSP_PARENT"] = json.dumps(parent)
    env["DUO_LOCAL_SECRETS"] = json.dumps(secrets)
    return env


@dataclass
class FleetStack:
    pipeline: LocalPipeline
    sim: SimulatorServer
    options: FleetOptions
    cloud_env: dict[str, str]

    @property
    def api(self) -> FleetApi:
        assert isinstance(self.sim.api, FleetApi)
        return self.sim.api


@contextlib.contextmanager
def fleet_stack(
    options: FleetOptions,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    planner_only: bool = False,
) -> Iterator[FleetStack]:
    """Emulators, the fleet simulator and the three services (or the planner alone, its
    tasks left unread); all stopped on the way out."""
    options.check()
    run_id = new_run_id(time.time())
    with (
        LocalCloud(log_dir, project=DEMO_PROJECT) as cloud,
        fleet_simulator(options) as sim,
        environment(cloud.env),
    ):
        config = PipelineConfig(
            project=cloud.project,
            bucket=options.bucket,
            prefix=options.prefix,
            rate_per_minute=options.rate_limit,
            lookback=options.lookback,
            topics=TopicNames.with_suffix(run_id),
            extra_env=fleet_env(sim, options.prefix, log_dir) | options.service_env(),
        )
        progress(f"logs in {log_dir}; emulators: {', '.join(cloud.started) or 'given'}")
        progress(
            f"Duo: fleet simulator at {sim.base_url}: {options.accounts} account(s) in the "
            f"sources file, {options.msp_children} MSP child(ren); "
            f"bucket gs://{options.bucket}/{options.prefix}/ACCOUNT_ID/"
        )
        pipeline = LocalPipeline(config, cloud.env, log_dir)
        if planner_only:
            pipeline.start_planner_only()
        else:
            pipeline.start()
        try:
            yield FleetStack(pipeline, sim, options, dict(cloud.env))
        finally:
            pipeline.stop()


def watermarks(project: str) -> dict[str, int]:
    """Every source's watermark (0 before its first), from the cursors in one query."""
    db = firestore_client(project)
    try:
        cursors = WindowStore(db, SystemClock()).source("-").parent
        return {doc.id: (doc.to_dict() or {}).get("watermark_ms") or 0 for doc in cursors.stream()}
    finally:
        db.close()


def registry_entries(project: str) -> dict[str, dict[str, Any]]:
    db = firestore_client(project)
    try:
        return SourceRegistry(db, SystemClock()).entries()
    finally:
        db.close()


@dataclass(frozen=True)
class Landed:
    """One record in the bucket: its account's source, id, ``ts`` and its object's creation
    (fake-gcs-server sets it at upload), in epoch seconds."""

    source: str
    telephony_id: str
    ts: float
    created: float


def landed_records(bucket: storage.Bucket, prefix: str) -> Iterator[Landed]:
    for blob in bucket.list_blobs(prefix=f"{prefix}/"):
        name = parse_object_name(blob.name)
        created = blob.time_created.timestamp()
        for record in decode_records(blob.download_as_bytes(), name.gzip):
            ts = record_time_ms(record) / 1000
            yield Landed(name.source, record["telephony_id"], ts, created)


def landed(bucket: storage.Bucket, prefix: str) -> dict[str, Counter]:
    """Records landed under ``prefix``, by source: telephony id -> times landed."""
    found: dict[str, Counter] = {}
    for record in landed_records(bucket, prefix):
        found.setdefault(record.source, Counter())[record.telephony_id] += 1
    return found


def truth(sim: SimulatorServer, account_id: str) -> dict[str, float]:
    """The account's records as the simulator holds them now: telephony id -> ts (s)."""
    body = requests.get(
        f"{sim.base_url}/__sim__/records", params={"account_id": account_id}, timeout=60
    ).text
    records = (json.loads(line) for line in body.splitlines())
    return {r["telephony_id"]: record_time_ms(r) / 1000 for r in records}


@dataclass
class AccountCheck:
    account_id: str
    source: str
    state: str  # the registry's, or "unregistered"
    refused: bool  # the simulator refuses the parent's keys for it
    expected: int = 0  # ground truth below its watermark
    landed: int = 0
    missing: int = 0
    duplicated: int = 0
    error: str = ""  # what the registry says Duo answered, for a refused or broken account

    @property
    def ok(self) -> bool:
        if self.refused:
            return self.state == REFUSED  # shown as refused, not a failure
        return self.state != "unregistered" and self.missing == 0 and self.duplicated == 0


@dataclass
class FleetCheck:
    accounts: list[AccountCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.accounts)

    def totals(self) -> dict[str, int]:
        readable = [a for a in self.accounts if not a.refused]
        return {
            "accounts": len(self.accounts),
            "checked": len(readable),
            "refused": sum(a.refused and a.state == REFUSED for a in self.accounts),
            "failed": sum(not a.ok for a in self.accounts),
            "expected": sum(a.expected for a in readable),
            "landed": sum(a.landed for a in readable),
            "missing": sum(a.missing for a in readable),
            "duplicated": sum(a.duplicated for a in readable),
        }


def truths(sim: SimulatorServer) -> dict[str, dict[str, float]]:
    """Every account's ground truth, by account id."""
    return {a["account_id"]: truth(sim, a["account_id"]) for a in listed_accounts(sim)}


def check_fleet(stack: FleetStack, known: dict[str, dict[str, float]] | None = None) -> FleetCheck:
    """Every account's landed records against its ground truth (``known``, or read now) below
    its watermark: none missing, none twice; a refused child must be shown as refused."""
    known = known if known is not None else truths(stack.sim)
    project = stack.pipeline.config.project
    marks, entries = watermarks(project), registry_entries(project)
    bucket = storage_client(project).bucket(stack.options.bucket)
    found = landed(bucket, stack.options.prefix)
    check = FleetCheck()
    for account in listed_accounts(stack.sim):
        source = source_of(account["account_id"])
        entry = entries.get(source) or {}
        result = AccountCheck(
            account_id=account["account_id"],
            source=source,
            state=entry.get("state", "unregistered"),
            refused=account["refused"],
            error=_one_line(entry.get("error")),
        )
        if not account["refused"]:
            below = marks.get(source, 0) / 1000
            expected = {i for i, ts in known[account["account_id"]].items() if ts < below}
            got = found.get(source, Counter())
            result.expected, result.landed = len(expected), sum(got.values())
            result.missing = len(expected - got.keys())
            result.duplicated = sum(1 for count in got.values() if count > 1)
        check.accounts.append(result)
    return check


def _one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text or ""))[:200]


def format_check(check: FleetCheck, listed: int = 10) -> str:
    """The totals, then the accounts that failed (at most ``listed``) and the refused ones."""
    t = check.totals()
    lines = [
        f"accounts {t['accounts']}: {t['checked']} checked against the ground truth, "
        f"{t['refused']} refused by Duo (shown as refused), {t['failed']} failed",
        f"records expected {t['expected']:,}, landed {t['landed']:,}, missing {t['missing']}, "
        f"duplicated {t['duplicated']}",
    ]
    failed = [a for a in check.accounts if not a.ok]
    for a in failed[:listed]:
        lines.append(
            f"  FAILED {a.account_id} ({a.state}): expected {a.expected}, missing {a.missing}, "
            f"duplicated {a.duplicated} {a.error}".rstrip()
        )
    if len(failed) > listed:
        lines.append(f"  and {len(failed) - listed} more failed")
    refused = [a for a in check.accounts if a.refused and a.ok]
    for a in refused[:listed]:
        lines.append(f"  refused {a.account_id}: {a.error}")
    if len(refused) > listed:
        lines.append(f"  and {len(refused) - listed} more refused")
    return "\n".join(lines)


def caught_up(stack: FleetStack, until_ms: int) -> tuple[int, int]:
    """(accounts whose watermark has passed ``until_ms`` or that Duo refuses and the registry
    shows so, accounts in all)."""
    project = stack.pipeline.config.project
    marks, entries = watermarks(project), registry_entries(project)
    done = 0
    accounts = listed_accounts(stack.sim)
    for account in accounts:
        source = source_of(account["account_id"])
        if account["refused"]:
            done += (entries.get(source) or {}).get("state") == REFUSED
        else:
            done += marks.get(source, 0) >= until_ms
    return done, len(accounts)


def fleet_status(project: str) -> str:
    """``duo-telephony status`` for the fleet, as its one-screen summary."""
    reports = read_reports(project, None, SystemClock(), threading.Event())
    return render_summary(summary(reports, int(time.time() * 1000)))
