"""The registry wired into the services: the settings that configure sources, the planner's
sync each run, and the fetcher's clients for registry sources."""

from __future__ import annotations

import json
import logging

import pytest

from services.fetcher.duo_clients import DuoClients, SourceUnavailableError, UnknownSourceError
from services.planner.discovery import discover, planned_sources
from services.planner.run import run_planner
from services.settings import ConfigError, fetcher_settings, planner_settings, secret_reader
from shared.clock import now_ms
from shared.duo.accounts import ChildAccountApi, ChildAccountRefusedError
from shared.duo.errors import DuoConfigurationError
from shared.gcp.secret_manager import CachedSecrets
from shared.gcp.source_registry import CachedEntries
from shared.pipeline.sources import (
    ACTIVE,
    BROKEN,
    GONE,
    REFUSED,
    REFUSED_FIX,
    Discovery,
    destination_of,
    parse_parent,
    parse_sources_file,
)
from shared.pipeline.windows import own_trouble
from tests.fakes import FakeClock
from tests.source_examples import SECRET, file_entry, parent_setting
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
)

PARENT = json.loads(parent_setting())


@pytest.fixture
def sources_file(tmp_path):
    def write(entries) -> str:
        path = tmp_path / "sources.json"
        path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
        return str(path)

    return write


def test_a_registry_deployment_needs_no_single_account_variables(sources_file):
    env = {
        "GOOGLE_CLOUD_PROJECT": "p",
        "DUO_SOURCES_FILE": sources_file([file_entry("a")]),
        "DUO_MSP_PARENT": json.dumps(PARENT),
        "ACCOUNTS_REFRESH": "30m",
    }
    settings = planner_settings(env)
    assert settings.sources == ()
    assert [s.id for s in settings.configured] == ["a"]
    assert settings.parent.id == "msp"
    assert settings.accounts_refresh_ms == 1_800_000
    assert fetcher_settings(env, lambda name: "unused").sources == {}


def test_a_single_account_deployment_is_configured_as_today():
    settings = planner_settings({"GOOGLE_CLOUD_PROJECT": "p"})
    assert [(s.id, s.origin) for s in settings.configured] == [("default", "env")]
    assert settings.parent is None


@pytest.mark.parametrize(
    ("entries", "env", "message"),
    [
        ("[", {}, "DUO_SOURCES_FILE is not JSON"),
        ([file_entry("a", api_host="x y")], {}, "DUO_SOURCES_FILE[0].api_host"),
        (
            [file_entry("a")],
            {"SOURCE_ID": "a", "DUO_API_HOST": "h"},
            "DUO_SOURCES_FILE: source 'a'",
        ),
        ([], {"DUO_MSP_PARENT": "{"}, "DUO_MSP_PARENT is not JSON"),
        ([], {"ACCOUNTS_REFRESH": "1m"}, "ACCOUNTS_REFRESH"),
    ],
)
def test_bad_sources_settings_are_one_line_naming_the_setting(sources_file, entries, env, message):
    base = {"GOOGLE_CLOUD_PROJECT": "p", "DUO_SOURCES_FILE": sources_file(entries)}
    with pytest.raises(ConfigError) as raised:
        planner_settings(base | env)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_missing_sources_file_is_named():
    with pytest.raises(ConfigError, match=r"DUO_SOURCES_FILE: cannot read /nowhere/sources\.json"):
        planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "DUO_SOURCES_FILE": "/nowhere/sources.json"})


def msp_settings(sources_file, refresh="1h"):
    return planner_settings(
        {
            "GOOGLE_CLOUD_PROJECT": "p",
            "DUO_SOURCES_FILE": sources_file([file_entry("own")]),
            "DUO_MSP_PARENT": json.dumps(PARENT),
            "ACCOUNTS_REFRESH": refresh,
        }
    )


class Lister:
    """The parent's children as Duo would list them, counting the listings."""

    def __init__(self, *ids: str, error: str | None = None) -> None:
        self.ids, self.error, self.calls = list(ids), error, 0

    def __call__(self, parent):
        self.calls += 1
        if self.error:
            return Discovery(parent.id, error=self.error)
        children = tuple(parent.child(i, i, f"api-{i.lower()}.duosecurity.com") for i in self.ids)
        return Discovery(parent.id, children)


def test_the_planner_lists_children_every_refresh_and_plans_every_active_source(sources_file):
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    settings = msp_settings(sources_file)
    lister = Lister("DA1", "DA2")
    assert planned_sources(settings, registry, lister, clock).due == ["da1", "da2", "own"]
    lister.ids = ["DA1"]
    clock.advance(3599)
    assert planned_sources(settings, registry, lister, clock).due == ["da1", "da2", "own"]
    assert lister.calls == 1
    clock.advance(1)
    assert planned_sources(settings, registry, lister, clock).due == ["da1", "own"]
    assert lister.calls == 2


def test_a_refused_listing_is_on_the_parent_and_the_sources_are_still_planned(sources_file):
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    settings = msp_settings(sources_file)
    planned_sources(settings, registry, Lister("DA1"), clock)
    refused = Lister(error="msp: Duo refused to list the child accounts: code 40301")
    clock.advance(3600)
    assert planned_sources(settings, registry, refused, clock).due == ["da1", "own"]
    assert registry.parent("msp")["error"].endswith("code 40301")
    assert planned_sources(settings, registry, refused, clock).due == ["da1", "own"]
    assert refused.calls == 2  # tried again every run until it is fixed


def test_each_active_source_is_planned_and_a_refused_one_is_not(sources_file):
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    settings = msp_settings(sources_file)
    lister = Lister("DA1", "DA2")
    planned_sources(settings, registry, lister, clock)
    registry.trouble("da2", {"state": REFUSED, "since_ms": 0})
    events: list = []
    windows = FakeWindowStore(clock, events)
    results = run_planner(
        settings,
        FakeCursorStore(windows, clock),
        windows,
        FakePublisher(events),
        clock,
        sources=lambda: planned_sources(settings, registry, lister, clock).due,
    )
    assert [r["source"] for r in results] == ["da1", "own"]
    assert all(r["planned"] > 0 for r in results)


def test_each_run_logs_the_registrys_accounts_in_every_state_zeros_included(sources_file, caplog):
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    settings = msp_settings(sources_file)
    planned_sources(settings, registry, Lister("DA1", "DA2", "DA3"), clock)
    registry.trouble("da2", {"state": REFUSED, "since_ms": 0})
    clock.advance(3600)
    caplog.set_level(logging.INFO)
    planned_sources(settings, registry, Lister("DA1", "DA2"), clock)
    counts = {
        record.json_fields["registry_state"]: record.json_fields["accounts"]
        for record in caplog.records
        if "registry_state" in getattr(record, "json_fields", {})
    }
    # da2's retry is due: active again this run; da3 is no longer listed.
    assert counts == {ACTIVE: 3, GONE: 1, REFUSED: 0, BROKEN: 0}
    caplog.clear()
    registry.trouble("da1", {"state": BROKEN, "since_ms": now_ms(clock)})
    planned_sources(settings, registry, Lister("DA1", "DA2"), clock)
    broken = [r.json_fields for r in caplog.records if "registry_state" in r.json_fields]
    assert {"registry_state": BROKEN, "accounts": 1} in broken


def test_a_source_without_its_own_destination_keeps_the_deployments():
    assert destination_of(None, "b", "duo-telephony") == ("b", "duo-telephony")
    assert destination_of({"destination": {"bucket": None, "prefix": None}}, "b", "p") == (
        "b",
        "p",
    )
    own = {"destination": {"bucket": "cust", "prefix": "duo-telephony/DA1"}}
    assert destination_of(own, "b", "p") == ("cust", "duo-telephony/DA1")


class Secrets:
    def __init__(self, missing: set[str]) -> None:
        self.missing, self.reads = missing, []

    def __call__(self, name: str) -> str:
        self.reads.append(name)
        if name in self.missing:
            raise LookupError(name)
        return "S" * 40


class Unused:
    """Firestore for the rate limiters these tests build but never use."""

    def collection(self, _name: str) -> Unused:
        return self

    def document(self, _name: str) -> Unused:
        return self


def clients_for(registry, clock, secrets) -> DuoClients:
    settings = fetcher_settings(
        {"GOOGLE_CLOUD_PROJECT": "p", "DUO_MSP_PARENT": json.dumps(PARENT)}, lambda n: ""
    )
    return DuoClients(
        settings, Unused(), clock, CachedEntries(registry, clock), CachedSecrets(secrets, clock)
    )


def test_a_missing_secret_stops_its_source_only_and_is_on_its_entry():
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    parent = parse_parent(json.dumps(PARENT))
    registry.sync([], Discovery("msp", (parent.child("DA1", "one", "api-1.duosecurity.com"),)))
    registry.sync(parse_sources_file(json.dumps([file_entry("own")])), None, "msp")
    secrets = Secrets({SECRET.format("own")})
    clients = clients_for(registry, clock, secrets)
    with pytest.raises(SourceUnavailableError) as raised:
        clients.api("own")
    assert str(raised.value) == (
        f"source own: DUO_SOURCES_FILE: could not read the secret {SECRET.format('own')}: "
        "LookupError"
    )
    assert registry.entry("own")["state"] == BROKEN
    assert isinstance(clients.api("da1"), ChildAccountApi)
    assert registry.entry("da1")["state"] == ACTIVE
    with pytest.raises(UnknownSourceError):
        clients.api("nobody")


def test_a_child_duo_refuses_is_on_its_entry_and_only_backs_its_windows_off():
    clock = FakeClock()
    registry = FakeSourceRegistry(clock)
    parent = parse_parent(json.dumps(PARENT))
    registry.sync([], Discovery("msp", (parent.child("DA1", "one", "api-1.duosecurity.com"),)))
    api = clients_for(registry, clock, Secrets(set())).api("da1")
    refusal = DuoConfigurationError(
        "Duo answered HTTP 403 code 40301 (Access forbidden)",
        status=403,
        code=40301,
        answer="Duo answered HTTP 403 code 40301 (Access forbidden)",
    )

    class Refusing:
        stats = api.stats

        def get(self, path, params, parse):
            raise refusal

    api._api = Refusing()
    with pytest.raises(ChildAccountRefusedError) as raised:
        api.get("/admin/v2/logs/telephony", {}, dict)
    assert not own_trouble(raised.value)
    entry = registry.entry("da1")
    assert (entry["state"], entry["code"], entry["fix"]) == (REFUSED, 40301, REFUSED_FIX)
    assert "code 40301 (Access forbidden)" in entry["error"]
    assert "child account 'one' (DA1)" in entry["error"]


def test_local_secrets_are_for_local_runs_only_and_never_echoed():
    def manager(name: str) -> str:
        return "from Secret Manager"

    local = {"DUO_LOCAL_SECRETS": json.dumps({SECRET.format("a"): "local key"})}
    assert secret_reader(local, manager)(SECRET.format("a")) == "local key"
    assert secret_reader({}, manager) is manager
    with pytest.raises(ConfigError, match="DUO_LOCAL_SECRETS is refused on Cloud Run"):
        secret_reader(local | {"K_SERVICE": "fetcher"}, manager)
    with pytest.raises(ConfigError) as raised:
        secret_reader({"DUO_LOCAL_SECRETS": '["local key"]'}, manager)
    assert "local key" not in str(raised.value)


class Accounts:
    """The parent's Accounts API: Duo's answer to the listing, or its refusal."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def post(self, path, params, parse):
        if isinstance(self.answer, Exception):
            raise self.answer
        return parse(self.answer)


def listed_by(answer, **parent_extra) -> Discovery:
    return discover(
        parse_parent(parent_setting(**parent_extra)),
        CachedSecrets(Secrets(set()), FakeClock()),
        FakeClock(),
        connect=lambda parent, skey, clock: Accounts(answer),
    )


def test_discovery_admits_children_by_the_lists_and_names_one_that_cannot_be_read():
    answer = [
        {"account_id": "DA1", "name": "Acme", "api_hostname": "api-1.duosecurity.com"},
        {"account_id": "DA2", "name": "Acme test", "api_hostname": "api-2.duosecurity.com"},
        {"account_id": "DA3", "name": "Evil", "api_hostname": "evil.example.com"},
    ]
    discovery = listed_by(answer, deny=["*test*"])
    assert [child.id for child in discovery.children] == ["da1"]
    [invalid] = discovery.invalid
    assert invalid.startswith("msp: child account 'Evil' (DA3): api_hostname 'evil.example.com'")
    assert discovery.error is None


def test_a_listing_duo_refuses_or_a_missing_parent_secret_is_one_line_naming_the_setting():
    forbidden = DuoConfigurationError(
        "Duo answered HTTP 403 code 40301 (Access forbidden)",
        status=403,
        code=40301,
        answer="Duo answered HTTP 403 code 40301 (Access forbidden)",
    )
    refused = listed_by(forbidden)
    assert refused.children == () and "DUO_MSP_PARENT" in refused.error
    assert "code 40301" in refused.error
    missing = discover(
        parse_parent(parent_setting()),
        CachedSecrets(Secrets({SECRET.format("parent")}), FakeClock()),
        FakeClock(),
        connect=lambda parent, skey, clock: Accounts([]),
    )
    assert missing.error == (
        f"msp: DUO_MSP_PARENT.skey_secret: could not read the secret {SECRET.format('parent')}: "
        "LookupError"
    )
