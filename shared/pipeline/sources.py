"""The sources registry's rules: which Duo accounts a deployment reads, and in what state.

Sources come from three places: the single-account variables or ``DUO_SOURCES`` (origin
``env``), the sources file (``file``), and the children an MSP parent's Accounts API lists
(``child``). Each run the planner reconciles them with the registry as stored: a new source is
planned from ``LOOKBACK``; a vanished one stops being planned (``gone``, its cursor and windows
kept); one Duo refuses (``refused``) or that cannot be read for our own configuration
(``broken``) waits ``ACCOUNTS_REFRESH`` before it is tried again. No rule here touches another
source's entry, so one account's trouble never holds back the others.

Registry entries hold secret names only, never secret material.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shared.pipeline.ids import SOURCE_ID_PATTERN
from shared.pipeline.rate_share import DEFAULT_RATE_LIMIT, RATE_LIMIT_SCOPES
from shared.pipeline.wake import EVERY_RUN, WAKE_AT

ENV, FILE, CHILD = "env", "file", "child"
ACTIVE, GONE, REFUSED, BROKEN = "active", "gone", "refused", "broken"
STATES = (ACTIVE, GONE, REFUSED, BROKEN)
# Entries in these states are not planned; they are tried again after ACCOUNTS_REFRESH.
TROUBLED = (REFUSED, BROKEN)
DEFAULT_REFRESH_MS = 3_600_000
SOURCES_FILE = "DUO_SOURCES_FILE"
MSP_PARENT = "DUO_MSP_PARENT"
PLACEHOLDERS = ("account_id", "source")
# What to do when Duo refuses a child the parent's keys: the one documented cause is a
# child in another Duo deployment, which only its own Admin API keys can read.
REFUSED_FIX = (
    f"give it its own Admin API key: add it to the sources file ({SOURCES_FILE}) with its own "
    f"id, api_host, ikey and skey_secret, and add its account id to {MSP_PARENT}'s deny list"
)
_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/{}-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class SourcesError(ValueError):
    """A source's configuration is wrong; the message names the setting and the entry."""


@dataclass(frozen=True)
class Destination:
    """Where a source's objects land: its own bucket (None: the deployment's ``GCS_BUCKET``)
    and its own prefix (None: the deployment's ``GCS_PREFIX``)."""

    bucket: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One Duo account as the registry keeps it; ``ikey`` and ``skey_secret`` are a child's
    parent's, as a child is read with its parent's keys."""

    id: str
    origin: str
    api_host: str = ""
    ikey: str = ""
    skey_secret: str | None = None  # a Secret Manager version; None: the settings hold the key
    name: str = ""
    account_id: str | None = None  # a child's Duo account id
    parent: str | None = None  # a child's parent id
    parent_api_host: str | None = None
    destination: Destination = field(default_factory=Destination)
    rate_limit: str | None = None  # a child's parent's (rate_share); None: its own budget

    def fields(self) -> dict[str, Any]:
        """The registry document's configuration fields."""
        return asdict(self)

    @classmethod
    def from_fields(cls, doc: Mapping[str, Any]) -> SourceSpec:
        names = {f for f in cls.__dataclass_fields__ if f != "destination"}
        spec = cls(**{key: doc[key] for key in names if key in doc})
        return replace(spec, destination=Destination(**(doc.get("destination") or {})))

    @property
    def setting(self) -> str:
        """The setting that configures this source, for errors."""
        return {ENV: "DUO_SOURCES/DUO_API_HOST", FILE: SOURCES_FILE, CHILD: MSP_PARENT}[self.origin]


@dataclass(frozen=True)
class ParentSpec:
    """An MSP parent's Accounts API integration, whose children are discovered."""

    id: str
    api_host: str
    ikey: str
    skey_secret: str
    allow: tuple[str, ...] = ()  # account ids or fnmatch name patterns; empty: every child
    deny: tuple[str, ...] = ()
    destination: Destination = field(default_factory=Destination)  # prefix: a template
    rate_limit: str = DEFAULT_RATE_LIMIT  # the children's budget: one each, or one shared

    def admits(self, account_id: str, name: str) -> bool:
        def listed(patterns: tuple[str, ...]) -> bool:
            return any(p == account_id or fnmatch.fnmatchcase(name, p) for p in patterns)

        return (not self.allow or listed(self.allow)) and not listed(self.deny)

    def child(self, account_id: str, name: str, api_hostname: str) -> SourceSpec:
        """The child's source; SourcesError when its account id cannot make a source id."""
        source = child_source_id(account_id)
        prefix = self.destination.prefix
        if prefix is not None:
            prefix = prefix.format(account_id=account_id, source=source).strip("/")
        return SourceSpec(
            id=source,
            origin=CHILD,
            api_host=api_hostname,
            ikey=self.ikey,
            skey_secret=self.skey_secret,
            name=name,
            account_id=account_id,
            parent=self.id,
            parent_api_host=self.api_host,
            destination=Destination(self.destination.bucket, prefix),
            rate_limit=self.rate_limit,
        )


def child_source_id(account_id: str) -> str:
    """A child's source id: its Duo account id lower-cased, so object names and Firestore paths
    keep the account id (Duo's ids are letters and digits, like ``DA1B2C3D4E5F6G7H8I9J0``)."""
    source = account_id.lower()
    if not re.fullmatch(SOURCE_ID_PATTERN, source):
        raise SourcesError(
            f"{MSP_PARENT}: child account id {account_id!r} cannot be a source id "
            "(letters, digits and dashes, at most 63)"
        )
    return source


def _text(item: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SourcesError(f"{where}.{key} is required (a non-empty string)")
    return value.strip()


def _source_id(item: Mapping[str, Any], where: str) -> str:
    source = _text(item, "id", where) or ""
    if not re.fullmatch(SOURCE_ID_PATTERN, source):
        raise SourcesError(f"{where}.id: {source!r} must be lower-case letters, digits, dashes")
    return source


def _secret_name(item: Mapping[str, Any], where: str) -> str:
    value = _text(item, "skey_secret", where)
    if not _SECRET_VERSION.match(value or ""):
        # Not echoed: it may be the key itself, pasted in the wrong field.
        raise SourcesError(
            f"{where}.skey_secret is not a secret version "
            "(projects/PROJECT/secrets/NAME/versions/VERSION)"
        )
    return value  # type: ignore[return-value]


def _destination(item: Mapping[str, Any], where: str, template: bool) -> Destination:
    raw = item.get("destination")
    if raw is None:
        return Destination()
    if not isinstance(raw, dict) or set(raw) - {"bucket", "prefix"}:
        raise SourcesError(f"{where}.destination must be an object with bucket and/or prefix")
    bucket = _text(raw, "bucket", f"{where}.destination", required=False)
    if bucket is not None and not _BUCKET.match(bucket):
        raise SourcesError(f"{where}.destination.bucket: {bucket!r} is not a bucket name")
    prefix = _text(raw, "prefix", f"{where}.destination", required=False)
    if prefix is not None:
        prefix = prefix.strip("/")
        if not _PREFIX.match(prefix) or "//" in prefix:
            raise SourcesError(
                f"{where}.destination.prefix: {prefix!r} must be a plain path like duo/telephony"
            )
        try:
            filled = prefix.format(**{name: "x" for name in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError):
            filled = "{"
        if "{" in filled or "}" in filled or (not template and filled != prefix):
            allowed = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            raise SourcesError(
                f"{where}.destination.prefix: {prefix!r}: "
                + (f"use only the placeholders {allowed}" if template else "no placeholders")
            )
    return Destination(bucket, prefix)


def _json(text: str, setting: str, kind: type, described: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise SourcesError(f"{setting} is not JSON: {error}") from None
    if not isinstance(value, kind):
        raise SourcesError(f"{setting} must be {described}")
    return value


def parse_sources_file(text: str) -> list[SourceSpec]:
    """The sources file: a JSON list of ``{"id", "api_host", "ikey", "skey_secret"}`` objects,
    each with an optional ``destination`` (``{"bucket", "prefix"}``)."""
    items = _json(text, SOURCES_FILE, list, "a JSON list of sources")
    specs: dict[str, SourceSpec] = {}
    for position, item in enumerate(items):
        where = f"{SOURCES_FILE}[{position}]"
        if not isinstance(item, dict):
            raise SourcesError(f"{where} is not an object")
        source = _source_id(item, where)
        if source in specs:
            raise SourcesError(f"{where}.id: source {source!r} is listed twice")
        specs[source] = SourceSpec(
            id=source,
            origin=FILE,
            api_host=_text(item, "api_host", where) or "",
            ikey=_text(item, "ikey", where) or "",
            skey_secret=_secret_name(item, where),
            name=str(item.get("name") or ""),
            destination=_destination(item, where, template=False),
        )
    return list(specs.values())


def parse_parent(text: str) -> ParentSpec:
    """``DUO_MSP_PARENT``: ``{"id", "api_host", "ikey", "skey_secret"}`` and optional ``allow``
    and ``deny`` lists, a ``destination`` whose prefix may hold ``{account_id}``/``{source}``,
    and ``rate_limit`` (``account``, ``parent`` or ``auto``: see rate_share)."""
    item = _json(text, MSP_PARENT, dict, "a JSON object")
    source = _source_id(item, MSP_PARENT)
    rate_limit = item.get("rate_limit", DEFAULT_RATE_LIMIT)
    if rate_limit not in RATE_LIMIT_SCOPES:
        raise SourcesError(
            f"{MSP_PARENT}.rate_limit: {rate_limit!r} must be one of {', '.join(RATE_LIMIT_SCOPES)}"
        )
    lists = []
    for key in ("allow", "deny"):
        value = item.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SourcesError(f"{MSP_PARENT}.{key} must be a list of account ids or name patterns")
        lists.append(tuple(value))
    return ParentSpec(
        id=source,
        api_host=_text(item, "api_host", MSP_PARENT) or "",
        ikey=_text(item, "ikey", MSP_PARENT) or "",
        skey_secret=_secret_name(item, MSP_PARENT),
        allow=lists[0],
        deny=lists[1],
        destination=_destination(item, MSP_PARENT, template=True),
        rate_limit=rate_limit,
    )


@dataclass(frozen=True)
class Discovery:
    """What one listing of a parent's children gave: the admitted children, a one-line error
    for each listed child that cannot be read, or why the listing failed (then nothing else)."""

    parent: str
    children: tuple[SourceSpec, ...] = ()
    invalid: tuple[str, ...] = ()
    error: str | None = None


def discovery_due(parent_doc: Mapping[str, Any] | None, now: int, refresh_ms: int) -> bool:
    """Whether the parent's children are listed again in this run: every ``refresh_ms``, and
    every run while the listing fails (one request, and a fixed permission shows at once)."""
    if parent_doc is None or parent_doc.get("error"):
        return True
    return now - parent_doc.get("listed_at_ms", 0) >= refresh_ms


def parent_entry(discovery: Discovery, now: int) -> dict[str, Any]:
    """The parent's registry document: when it was last listed, and what went wrong."""
    return {
        "listed_at_ms": now,
        "children": len(discovery.children),
        "error": discovery.error,
        "invalid": list(discovery.invalid),
    }


def reconcile(
    configured: Iterable[SourceSpec],
    discovery: Discovery | None,
    stored: Mapping[str, Mapping[str, Any]],
    now: int,
    refresh_ms: int = DEFAULT_REFRESH_MS,
    parent: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The registry updates (merged into each source's document, by id) that bring ``stored``
    in line with the configured sources and, when the parent's children were listed this run,
    with ``discovery``. A child listed with the id of a configured source is not read, and the
    configured one's entry says so; a failed listing leaves every child as it was. ``parent``
    is the configured MSP parent (by default the one listed this run): the children of any
    other, or of none, are gone."""
    if parent is None and discovery is not None:
        parent = discovery.parent
    listed = discovery is not None and discovery.error is None
    updates: dict[str, dict[str, Any]] = {}
    wanted: dict[str, SourceSpec] = {spec.id: spec for spec in configured}
    conflicts: dict[str, str] = {}
    if discovery is not None and listed:
        for child in discovery.children:
            if child.id in wanted:
                conflicts[child.id] = (
                    f"source {child.id}: configured in {wanted[child.id].setting} and discovered "
                    f"as child account {child.account_id} of {discovery.parent} ({MSP_PARENT}); "
                    f"the configured one is read: rename it, or deny {child.account_id} in "
                    f"{MSP_PARENT}"
                )
            else:
                wanted[child.id] = child
    for source, spec in wanted.items():
        doc = stored.get(source)
        update = spec.fields() | {"conflict": conflicts.get(source)}
        if doc is None or doc.get("state") == GONE or _retry_due(doc, spec, now, refresh_ms):
            # Due at once: the planner's minute finds the entries to plan by their wake.
            update |= {"state": ACTIVE, "since_ms": now, "error": None, "code": None}
            update[WAKE_AT] = EVERY_RUN
        elif doc.get(WAKE_AT) is None:
            update[WAKE_AT] = EVERY_RUN  # an entry from before the wake was kept on every one
        if doc is None or any(doc.get(k) != v for k, v in update.items()):
            updates[source] = update
    for source, doc in stored.items():
        if source in wanted:
            continue
        if doc.get("state") == GONE:
            if doc.get(WAKE_AT) is not None:
                updates[source] = {WAKE_AT: None}  # gone before a gone entry lost its wake
            continue
        # A child of the configured parent not listed this run is kept as it is.
        kept = doc.get("origin") == CHILD and doc.get("parent") == parent and not listed
        if not kept:
            # Without a wake: the planner's minute never reads it again.
            updates[source] = {"state": GONE, "since_ms": now, WAKE_AT: None}
    return updates


def _retry_due(doc: Mapping[str, Any], spec: SourceSpec, now: int, refresh_ms: int) -> bool:
    """A refused or broken source is tried again when its configuration changed, or after
    ``refresh_ms`` (``retry_due``)."""
    if doc.get("state") not in TROUBLED:
        return False
    changed = any(doc.get(key) != value for key, value in spec.fields().items())
    return changed or retry_due(doc, now, refresh_ms)


def retry_due(doc: Mapping[str, Any], now: int, refresh_ms: int) -> bool:
    """Whether a refused or broken entry is tried again by a sync at ``now``: ``refresh_ms``
    after it was marked, since Duo's permissions and a missing secret can be fixed without us."""
    return doc.get("state") in TROUBLED and now - doc.get("since_ms", 0) >= refresh_ms


def trouble(state: str, error: str, code: int | None, now: int, fix: str | None) -> dict[str, Any]:
    """The registry update for a source whose reads fail for the whole account: ``refused`` by
    Duo (its code and message kept) or ``broken`` by our configuration (a missing secret). Its
    wake is every run: the planner's minute then sees it (counted for the alert, tried again
    when due) without reading the whole registry."""
    return {
        "state": state,
        "since_ms": now,
        "error": error,
        "code": code,
        "fix": fix,
        WAKE_AT: EVERY_RUN,
    }


def state_counts(states: Iterable[str | None]) -> dict[str, int]:
    """How many sources are in each state, every state named (0 included)."""
    counted = Counter(states)
    return {state: counted[state] for state in STATES}


def active(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The sources planned this run, in id order."""
    return sorted(source for source, doc in docs.items() if doc.get("state") == ACTIVE)


def destination_of(entry: Mapping[str, Any] | None, bucket: str, prefix: str) -> tuple[str, str]:
    """The bucket and prefix a source's objects land under: its own, or the deployment's
    (a source without an entry, or without a destination, keeps today's layout)."""
    own = (entry or {}).get("destination") or {}
    own_prefix = own.get("prefix")
    return own.get("bucket") or bucket, prefix if own_prefix is None else own_prefix
