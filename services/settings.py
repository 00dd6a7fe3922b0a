"""Configuration from environment variables, checked at start with the variable at fault named.

The Duo secret key comes from Secret Manager (``DUO_SKEY_SECRET``, a secret version's resource
name) in production; ``DUO_SKEY`` is for local use and is refused on Cloud Run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.duo.endpoint import DuoEndpoint, EndpointError
from shared.duo.secret import Secret
from shared.duo.telephony import RETENTION_MS
from shared.pipeline.ids import SOURCE_ID_PATTERN
from shared.pipeline.planning import DEFAULT_PARALLELISM, DEFAULT_QUIET_READ_EVERY_MS
from shared.pipeline.repair import CHECK_BATCH_MS, DEFAULT_CHECKS_MS
from shared.pipeline.schemas import MAX_PLAN_SLICE
from shared.pipeline.sources import (
    DEFAULT_REFRESH_MS,
    ENV,
    MSP_PARENT,
    SOURCES_FILE,
    ParentSpec,
    SourcesError,
    SourceSpec,
    parse_parent,
    parse_sources_file,
)
from shared.pipeline.topics import TopicNames
from shared.pipeline.windows import LANDING_TIMEOUT_MS

SecretReader = Callable[[str], str]
T = TypeVar("T")

_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
# A Firestore database id (4 to 63 characters), or the project's default database's.
_DATABASE_ID = re.compile(r"^([a-z][a-z0-9-]{2,61}[a-z0-9]|\(default\))$")
# DUO_RATE_LIMIT_PER_MINUTE's default: the fetchers find the account's limit themselves.
AUTO_RATE = "auto"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


def parse_duration(value: str, setting: str) -> float:
    """``90s``, ``15m``, ``36h`` or ``7d`` to seconds."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise ConfigError(f"{setting}: {value!r} is not a duration like 90s, 15m, 36h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def lookback_seconds(value: str, setting: str) -> float:
    """How far back a first plan reaches: a duration within Duo's retention."""
    seconds = parse_duration(value, setting)
    if seconds * 1000 > RETENTION_MS:
        raise ConfigError(f"{setting}: Duo keeps 180 days of logs; use at most 180d")
    return seconds


DEFAULT_PREFIX = "duo-telephony"


def object_prefix(value: str, setting: str) -> str:
    """The bucket folder objects go under, without leading or trailing slashes."""
    prefix = value.strip().strip("/")
    if not re.match(r"^[A-Za-z0-9._/-]+$", prefix) or "//" in prefix:
        raise ConfigError(f"{setting}: {prefix!r} must be a plain path like duo/telephony")
    return prefix


def _prefix(e: _Env) -> str:
    return object_prefix(e.text("GCS_PREFIX", DEFAULT_PREFIX), "GCS_PREFIX")


@dataclass(frozen=True)
class DuoSource:
    """One Duo account; everything the pipeline keeps is keyed by ``id``."""

    id: str
    endpoint: DuoEndpoint
    ikey: str
    skey: Secret
    signature_version: int = 5
    digest: str = "sha512"


# Sources to a plan task: a slice is planned a few sources at a time by one planner request,
# well within its timeout, while 1,000 sources still make only 40 tasks.
DEFAULT_PLAN_SLICE = 25


@dataclass(frozen=True)
class PlannerSettings:
    project: str
    sources: tuple[str, ...]
    window_topic: str
    lookback_seconds: float
    parallelism: int
    delay_seconds: float = 120.0
    repair_checks_ms: tuple[int, ...] = DEFAULT_CHECKS_MS
    repair_batch_ms: int = CHECK_BATCH_MS
    landing_timeout_ms: int = LANDING_TIMEOUT_MS
    # How often a source without a record in the last hour is read (planning.quiet_wait_ms).
    quiet_read_every_ms: int = DEFAULT_QUIET_READ_EVERY_MS
    # The writer's bucket and prefix, where a batch landed without its marker is looked for
    # before it is read again (None: not looked for; it would be landed twice).
    bucket: str | None = None
    prefix: str = DEFAULT_PREFIX
    database: str | None = None  # FIRESTORE_DATABASE (None: the project's default database)
    # The sources file's sources and the MSP parent (the registry holds the rest).
    file_sources: tuple[SourceSpec, ...] = ()
    parent: ParentSpec | None = None
    accounts_refresh_ms: int = DEFAULT_REFRESH_MS
    # The scheduler's run publishes the sources to plan here, PLAN_SLICE to a task.
    plan_topic: str = TopicNames.plans
    plan_slice: int = DEFAULT_PLAN_SLICE
    # DUO_RATE_LIMIT_PER_MINUTE, the budget an MSP parent's children may share (None: auto).
    rate_per_minute: float | None = None

    @property
    def configured(self) -> tuple[SourceSpec, ...]:
        """The sources configured in the deployment, for the registry."""
        return tuple(SourceSpec(source, ENV) for source in self.sources) + self.file_sources


@dataclass(frozen=True)
class FetcherSettings:
    project: str
    sources: dict[str, DuoSource]
    window_topic: str
    batch_topic: str
    rate_per_minute: float | None  # None: found by itself (DUO_RATE_LIMIT_PER_MINUTE=auto)
    burst: int
    time_budget_seconds: float
    lease_seconds: float
    enrich: bool
    repair_checks_ms: tuple[int, ...] = DEFAULT_CHECKS_MS
    database: str | None = None  # FIRESTORE_DATABASE (None: the project's default database)


@dataclass(frozen=True)
class WriterSettings:
    project: str
    bucket: str
    prefix: str
    gzip: bool
    database: str | None = None  # FIRESTORE_DATABASE (None: the project's default database)


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default

    def optional(self, name: str) -> str | None:
        return self._env.get(name, "").strip() or None

    def number(self, name: str, default: float, minimum: float, maximum: float) -> float:
        raw = self.text(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}: {raw} is outside [{minimum:g}, {maximum:g}]")
        return value

    def flag(self, name: str) -> bool:
        raw = self.text(name, "false").lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name}: {raw!r} is not true or false")
        return raw in ("true", "1", "yes")

    def project(self) -> str:
        return self.text("GOOGLE_CLOUD_PROJECT")

    def on_cloud_run(self) -> bool:
        return bool(self.optional("K_SERVICE"))

    def database(self) -> str | None:
        return firestore_database(self._env)


def firestore_database(env: Mapping[str, str]) -> str | None:
    """FIRESTORE_DATABASE: the Firestore database the pipeline keeps its state in (the build
    names its own); None when unset, for the project's default database."""
    value = _Env(env).optional("FIRESTORE_DATABASE")
    if value is not None and not _DATABASE_ID.match(value):
        raise ConfigError(
            f"FIRESTORE_DATABASE: {value!r} is not a Firestore database id (4 to 63 lower-case "
            "letters, digits and hyphens, starting with a letter) or (default)"
        )
    return value


def _skey(
    env: _Env, secret_name: str | None, plain: str | None, where: str, read: SecretReader
) -> Secret:
    if secret_name:
        if not isinstance(secret_name, str) or not _SECRET_VERSION.match(secret_name):
            # The value is not echoed: it may be the key itself, pasted in the wrong variable.
            raise ConfigError(
                f"{where}: the secret name is not a secret version "
                "(projects/PROJECT/secrets/NAME/versions/VERSION)"
            )
        try:
            return Secret(read(secret_name).strip())
        except ConfigError:
            raise
        except Exception as error:  # the reader's own errors carry no secret material
            raise ConfigError(
                f"{where}: could not read {secret_name}: {type(error).__name__}"
            ) from None
    if plain:
        if not isinstance(plain, str):
            raise ConfigError(f"{where}: the secret key must be a string")
        if env.on_cloud_run():
            raise ConfigError(
                f"{where}: a plain secret key is refused on Cloud Run; "
                "store it in Secret Manager and set DUO_SKEY_SECRET"
            )
        return Secret(plain)
    raise ConfigError(f"{where}: set DUO_SKEY_SECRET (Secret Manager) or, locally, DUO_SKEY")


@dataclass(frozen=True)
class _Entry:
    """One source as configured: an item of DUO_SOURCES, or the single-source variables."""

    fields: dict[str, Any]
    position: int | None = None  # in DUO_SOURCES

    @property
    def where(self) -> str:
        return "DUO_SKEY_SECRET/DUO_SKEY" if self.position is None else self._listed()

    def name(self, key: str, plain_name: str) -> str:
        return plain_name if self.position is None else f"{self._listed()}.{key}"

    def _listed(self) -> str:
        return f"DUO_SOURCES[{self.position}]"

    def required(self, key: str, plain_name: str) -> str:
        value = self.fields.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.name(key, plain_name)} is required but not set")
        return value

    def source_id(self) -> str:
        value = self.required("id", "SOURCE_ID")
        if not re.fullmatch(SOURCE_ID_PATTERN, value):
            raise ConfigError(
                f"{self.name('id', 'SOURCE_ID')}: {value!r} must be lower-case letters, "
                "digits and dashes"
            )
        return value


def _entries(env: _Env) -> list[_Entry]:
    listed = env.optional("DUO_SOURCES")
    if listed is None and not env.optional("DUO_API_HOST") and _registry_only(env):
        return []
    if listed is None:
        return [
            _Entry(
                {
                    "id": env.text("SOURCE_ID", "default"),
                    "api_host": env.optional("DUO_API_HOST"),
                    "ikey": env.optional("DUO_IKEY"),
                    "skey_secret": env.optional("DUO_SKEY_SECRET"),
                    "skey": env.optional("DUO_SKEY"),
                    "signature_version": env.text("DUO_SIGNATURE_VERSION", "5"),
                    "digest": env.text("DUO_SIGNATURE_DIGEST", "sha512"),
                }
            )
        ]
    try:
        items = json.loads(listed)
    except ValueError:
        raise ConfigError("DUO_SOURCES is not JSON (a list of sources)") from None
    if not isinstance(items, list) or not items:
        raise ConfigError("DUO_SOURCES must be a non-empty JSON list of sources")
    entries = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"DUO_SOURCES[{position}] is not an object")
        entries.append(_Entry(item, position))
    return entries


def _registry_only(env: _Env) -> bool:
    """Whether the deployment's sources may all come from the sources file or the MSP parent,
    without the single-account variables."""
    return bool(env.optional(SOURCES_FILE) or env.optional(MSP_PARENT))


def file_sources(e: _Env) -> tuple[SourceSpec, ...]:
    """The sources file's sources (``DUO_SOURCES_FILE``, a path), checked entry by entry."""
    path = e.optional(SOURCES_FILE)
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise ConfigError(f"{SOURCES_FILE}: cannot read {path}: {error.strerror}") from None
    try:
        specs = tuple(parse_sources_file(text))
        for position, spec in enumerate(specs):
            DuoEndpoint.parse(spec.api_host, f"{SOURCES_FILE}[{position}].api_host")
    except (SourcesError, EndpointError) as error:
        raise ConfigError(str(error)) from None
    return specs


def msp_parent(e: _Env) -> ParentSpec | None:
    """``DUO_MSP_PARENT``, the MSP parent's Accounts API integration, checked."""
    raw = e.optional(MSP_PARENT)
    if raw is None:
        return None
    try:
        parent = parse_parent(raw)
        DuoEndpoint.parse(parent.api_host, f"{MSP_PARENT}.api_host")
    except (SourcesError, EndpointError) as error:
        raise ConfigError(str(error)) from None
    return parent


def secret_reader(env: Mapping[str, str], read: SecretReader) -> SecretReader:
    """How the sources file's and the MSP parent's secrets are read: ``read`` (Secret Manager),
    or, locally (the simulator), ``DUO_LOCAL_SECRETS``, a JSON object of secret version ->
    value, refused on Cloud Run as ``DUO_SKEY`` is."""
    e = _Env(env)
    raw = e.optional("DUO_LOCAL_SECRETS")
    if raw is None:
        return read
    if e.on_cloud_run():
        raise ConfigError("DUO_LOCAL_SECRETS is refused on Cloud Run; use Secret Manager")
    try:
        secrets = json.loads(raw)
    except ValueError:
        secrets = None
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        # Not echoed: it holds secret keys.
        raise ConfigError("DUO_LOCAL_SECRETS must be a JSON object of secret version -> value")
    return lambda name: secrets[name]


def _sources(env: _Env, build: Callable[[_Entry, str], T]) -> dict[str, T]:
    """Each configured source by id, in order, built by ``build(entry, id)``."""
    found: dict[str, T] = {}
    for entry in _entries(env):
        source_id = entry.source_id()
        if source_id in found:
            raise ConfigError(f"{entry.where}: source id {source_id!r} is listed twice")
        found[source_id] = build(entry, source_id)
    return found


def _duo_source(env: _Env, entry: _Entry, source_id: str, read: SecretReader) -> DuoSource:
    api_host = entry.required("api_host", "DUO_API_HOST")
    ikey = entry.required("ikey", "DUO_IKEY")
    try:
        endpoint = DuoEndpoint.parse(api_host, entry.name("api_host", "DUO_API_HOST"))
    except EndpointError as error:
        raise ConfigError(str(error)) from None
    version = str(entry.fields.get("signature_version") or "5")
    if version not in ("5", "2"):
        raise ConfigError(f"{entry.name('signature_version', 'DUO_SIGNATURE_VERSION')}: use 5 or 2")
    digest = str(entry.fields.get("digest") or "sha512")
    if digest not in ("sha512", "sha1") or (version == "5" and digest != "sha512"):
        raise ConfigError(
            f"{entry.name('digest', 'DUO_SIGNATURE_DIGEST')}: use sha512 (or sha1 with version 2)"
        )
    return DuoSource(
        id=source_id,
        endpoint=endpoint,
        ikey=ikey,
        skey=_skey(
            env, entry.fields.get("skey_secret"), entry.fields.get("skey"), entry.where, read
        ),
        signature_version=int(version),
        digest=digest,
    )


def repair_checks(e: _Env) -> tuple[int, ...]:
    """REPAIR_CHECKS: when finished windows are counted again by Duo, after their end, e.g.
    ``15m,24h`` (the default); ``none`` turns late-record repair off."""
    raw = e.text("REPAIR_CHECKS", "15m,24h")
    if raw.lower() == "none":
        return ()
    ages = tuple(int(parse_duration(part, "REPAIR_CHECKS") * 1000) for part in raw.split(","))
    if list(ages) != sorted(set(ages)) or len(ages) > 9:
        raise ConfigError("REPAIR_CHECKS: list at most 9 growing ages, like 15m,24h")
    if ages[-1] > RETENTION_MS // 2:
        raise ConfigError("REPAIR_CHECKS: check within 90 days, while Duo still keeps the logs")
    return ages


def repair_batch_ms(e: _Env) -> int:
    """REPAIR_CHECK_BATCH: how long finished windows due for a check wait for neighbours, so
    one check covers them all (longer: fewer requests; shorter: late records sooner)."""
    raw = e.text("REPAIR_CHECK_BATCH", "30m")
    batch = parse_duration(raw, "REPAIR_CHECK_BATCH")
    if not 60 <= batch <= 6 * 3600:
        raise ConfigError(f"REPAIR_CHECK_BATCH: {raw} is outside [1m, 6h]")
    return int(batch * 1000)


def quiet_read_every_ms(e: _Env) -> int:
    """QUIET_READ_EVERY: how often a source with no record in the last hour is read, in whole
    minutes (1m: every minute, as a source with records); longer saves a quiet account's reads
    and writes, and delays its first record after a quiet hour by as much."""
    raw = e.text("QUIET_READ_EVERY", f"{DEFAULT_QUIET_READ_EVERY_MS // 60_000}m")
    every = parse_duration(raw, "QUIET_READ_EVERY")
    if every % 60 or not 60 <= every <= 3600:
        raise ConfigError(f"QUIET_READ_EVERY: {raw} is not a whole number of minutes in [1m, 1h]")
    return int(every * 1000)


def plan_slice(e: _Env) -> int:
    """PLAN_SLICE: how many sources one plan task carries (fewer: more planner requests in
    parallel; more: fewer messages)."""
    value = e.number("PLAN_SLICE", DEFAULT_PLAN_SLICE, 1, MAX_PLAN_SLICE)
    if value != int(value):
        raise ConfigError(f"PLAN_SLICE: {value:g} is not a whole number of sources")
    return int(value)


def planner_settings(env: Mapping[str, str]) -> PlannerSettings:
    e = _Env(env)
    lookback = lookback_seconds(e.text("LOOKBACK", "24h"), "LOOKBACK")
    delay = parse_duration(e.text("PLAN_DELAY", "2m"), "PLAN_DELAY")
    if delay < 120:
        raise ConfigError("PLAN_DELAY: Duo publishes logs two minutes late; use at least 2m")
    configured = tuple(_sources(e, lambda _entry, source_id: source_id))
    listed = file_sources(e)
    for spec in listed:
        if spec.id in configured:
            raise ConfigError(
                f"{SOURCES_FILE}: source {spec.id!r} is configured by DUO_SOURCES or SOURCE_ID too"
            )
    refresh = parse_duration(e.text("ACCOUNTS_REFRESH", "1h"), "ACCOUNTS_REFRESH")
    if not 300 <= refresh <= 86400:
        raise ConfigError("ACCOUNTS_REFRESH: use between 5m and 1d")
    return PlannerSettings(
        project=e.project(),
        sources=configured,
        window_topic=e.text("WINDOW_TOPIC", TopicNames.windows),
        lookback_seconds=lookback,
        parallelism=int(e.number("PLAN_PARALLELISM", DEFAULT_PARALLELISM, 1, 64)),
        delay_seconds=delay,
        repair_checks_ms=repair_checks(e),
        repair_batch_ms=repair_batch_ms(e),
        landing_timeout_ms=int(
            parse_duration(e.text("LANDING_TIMEOUT", "15m"), "LANDING_TIMEOUT") * 1000
        ),
        quiet_read_every_ms=quiet_read_every_ms(e),
        bucket=e.text("GCS_BUCKET", "") or None,
        prefix=_prefix(e),
        database=e.database(),
        file_sources=listed,
        parent=msp_parent(e),
        accounts_refresh_ms=int(refresh * 1000),
        plan_topic=e.text("PLAN_TOPIC", TopicNames.plans),
        plan_slice=plan_slice(e),
        rate_per_minute=_rate_limit(e)[0],
    )


def rate_per_minute(raw: str, name: str = "DUO_RATE_LIMIT_PER_MINUTE") -> float | None:
    """``auto`` (None: the fetchers find the account's limit) or requests a minute."""
    raw = raw.strip()
    if raw.lower() == AUTO_RATE:
        return None
    if not _NUMBER.match(raw):
        raise ConfigError(f"{name}: {raw!r} is neither {AUTO_RATE} nor requests a minute")
    rate = float(raw)
    if not 0.1 <= rate <= 6000:
        raise ConfigError(f"{name}: {raw} is outside [0.1, 6000]")
    return rate


def _rate_limit(e: _Env) -> tuple[float | None, int]:
    """DUO_RATE_LIMIT_PER_MINUTE and DUO_RATE_BURST."""
    rate = rate_per_minute(e.text("DUO_RATE_LIMIT_PER_MINUTE", AUTO_RATE))
    if rate is None:
        if e.number("DUO_RATE_BURST", 1, 1, 100) != 1:
            # A burst is a share of a minute's budget, and nobody knows the budget yet.
            raise ConfigError(
                "DUO_RATE_BURST: a burst needs a fixed DUO_RATE_LIMIT_PER_MINUTE, not auto"
            )
        return None, 1
    burst = int(e.number("DUO_RATE_BURST", 1, 1, 100))
    if burst > max(rate, 1):
        # The limit is per minute: a burst larger than a minute's budget would break it.
        raise ConfigError(f"DUO_RATE_BURST: {burst} exceeds DUO_RATE_LIMIT_PER_MINUTE ({rate:g})")
    return rate, burst


def fetcher_settings(env: Mapping[str, str], read_secret: SecretReader) -> FetcherSettings:
    e = _Env(env)
    budget = parse_duration(e.text("FETCH_TIME_BUDGET", "4m"), "FETCH_TIME_BUDGET")
    if budget > 300:
        # With a page's retries (up to 5 min) the request must end within Pub/Sub's 10 min.
        raise ConfigError("FETCH_TIME_BUDGET: use at most 5m (Pub/Sub waits 10 minutes)")
    lease = parse_duration(e.text("WINDOW_LEASE", "60s"), "WINDOW_LEASE")
    if not 10 <= lease <= 600:
        # Renewed every third of it while a fetch runs; a dead fetcher's window waits for it.
        raise ConfigError("WINDOW_LEASE: use between 10s and 10m (60s takes a window back fast)")
    rate, burst = _rate_limit(e)
    return FetcherSettings(
        project=e.project(),
        sources=_sources(e, lambda entry, source_id: _duo_source(e, entry, source_id, read_secret)),
        window_topic=e.text("WINDOW_TOPIC", TopicNames.windows),
        batch_topic=e.text("BATCH_TOPIC", TopicNames.batches),
        rate_per_minute=rate,
        burst=burst,
        time_budget_seconds=budget,
        lease_seconds=lease,
        enrich=e.flag("ENRICH_RECORDS"),
        repair_checks_ms=repair_checks(e),
        database=e.database(),
    )


def writer_settings(env: Mapping[str, str]) -> WriterSettings:
    e = _Env(env)
    return WriterSettings(
        project=e.project(),
        bucket=e.text("GCS_BUCKET"),
        prefix=_prefix(e),
        gzip=e.flag("GCS_GZIP"),
        database=e.database(),
    )
