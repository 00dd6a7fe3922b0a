"""deploy/monitoring/: the log-based metrics read lines the services really write, and the
alert policies and the dashboard read only metrics that exist.

The services' lines are rendered as they write them (each entry point's logging, over an app
on fakes); each metric's filter is evaluated against them, so a renamed field or message
leaves a metric matching nothing and fails here instead of silently counting zero."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.fetcher import main as fetcher_main
from services.fetcher.duo_clients import SourceUnavailableError
from services.fetcher.window_fetch import WindowFetcher
from services.planner import main as planner_main
from services.planner.discovery import planned_sources
from services.settings import PlannerSettings
from services.writer import main as writer_main
from shared.clock import now_ms
from shared.duo.errors import DuoTransientError
from shared.gcp.cursor_store import new_cursor
from shared.pipeline.messages import RecordBatch, SpanCheck
from shared.pipeline.sources import REFUSED, REFUSED_FIX, STATES, TROUBLED, Discovery, trouble
from tests.fakes import FakeClock
from tests.unit.services.conftest import restored_logging  # noqa: F401 (a fixture)
from tests.unit.services.fakes import (
    FakeCursorStore,
    FakePublisher,
    FakeSourceRegistry,
    FakeWindowStore,
    FakeWrite,
    scheduler_call,
    telephony_item,
)
from tests.unit.services.test_log_fields import (
    HOUR,
    LEASE_SECONDS,
    TASK,
    TWO_PAGES,
    push,
    serve,  # noqa: F401 (a fixture)
    serve_fetcher,
)

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
APPLY = MONITORING / "apply.sh"
CLOUDBUILD = MONITORING.parents[1] / "cloudbuild.yaml"
PREFIX = "acme-duo"
VALUES = {
    "SERVICE_PREFIX": PREFIX,
    "LAG_ALERT_SECONDS": "1234",
    "WINDOW_SUBSCRIPTION": "acme-windows-fetcher",
    "BATCH_SUBSCRIPTION": "acme-batches-writer",
    "PLAN_SUBSCRIPTION": "acme-plans-planner",
}
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
# Which of the lines below each metric must count, and no other.
EXPECTED = {
    "duo_telephony_records_landed": {"writer: batch landed"},
    "duo_telephony_duo_requests": {
        "fetcher: window fetched",
        "fetcher: window failed",
        "fetcher: span checked",
    },
    "duo_telephony_rate_limited": {"fetcher: window fetched", "fetcher: window failed"},
    "duo_telephony_lag_seconds": {"planner: run"},
    "duo_telephony_quarantined_windows": {"planner: run"},
    "duo_telephony_accounts": {f"planner: accounts {state}" for state in STATES},
    "duo_telephony_windows_failed": {"fetcher: window failed"},
    # Not a failed fetch, which backs off and is tried again: windows_failed counts those, for
    # an alert with its own threshold.
    "duo_telephony_errors": {"writer: dropped an invalid message", "fetcher: source unavailable"},
}
# Labels whose field some counted lines do not carry: Cloud Logging gives such an entry the
# label's default, "" for a string (LogMetric.label_extractors).
MAY_BE_EMPTY = {("duo_telephony_errors", "source")}
# Metrics Google writes, named as PromQL names them.
DEAD_LETTERS = "pubsub_googleapis_com:subscription_dead_letter_message_count"
BACKLOG_AGE = "pubsub_googleapis_com:subscription_oldest_unacked_message_age"
BUILT_IN = {DEAD_LETTERS, BACKLOG_AGE}
PROMQL_METRIC = re.compile(r"\b[a-z_]+_googleapis_com:[a-z_]+\b")
USER_METRIC = re.compile(r"^logging_googleapis_com:user_(\w+?)(_sum|_count|_bucket)?$")
SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def render(text: str) -> str:
    return PLACEHOLDER.sub(lambda match: VALUES[match.group(1)], text)


def load(path: Path) -> dict[str, Any]:
    return json.loads(render(path.read_text()))


def metrics() -> dict[str, dict[str, Any]]:
    return {path.stem: load(path) for path in sorted((MONITORING / "metrics").glob("*"))}


def policies() -> list[dict[str, Any]]:
    return [load(path) for path in sorted((MONITORING / "policies").glob("*"))]


def dashboard() -> dict[str, Any]:
    return load(MONITORING / "dashboard.json")


@pytest.fixture
def lines(serve) -> dict[str, dict[str, Any]]:  # noqa: F811 (the imported fixture)
    """One line of each kind the metrics read, as the services write it, by a short name."""
    found: dict[str, dict[str, Any]] = {}

    clock = FakeClock()
    windows = FakeWindowStore(clock, [])
    settings = PlannerSettings(
        "acme-prod", ("eu-prod", "eu-child"), "windows", 6 * 3600, 2, LEASE_SECONDS
    )
    registry = FakeSourceRegistry(clock)
    registry.sync(settings.configured, None)
    refused = trouble(REFUSED, "Duo answered 40301", 40301, now_ms(clock), REFUSED_FIX)
    registry.trouble("eu-child", refused)
    children = lambda parent: Discovery(parent.id)  # noqa: E731 (no parent is configured)
    sources = functools.partial(planned_sources, settings, registry, children, clock)
    cursors = FakeCursorStore(windows, clock)
    publisher = FakePublisher([])
    client, read = serve(
        planner_main,
        lambda: planner_main.planner_app(
            settings, cursors, windows, publisher, clock, sources=sources
        ),
    )
    assert scheduler_call(client, publisher) == 200
    *states, found["planner: slices handed out"], found["planner: run"] = read()
    for line in states:
        found[f"planner: accounts {line['registry_state']}"] = line
    assert found[f"planner: accounts {REFUSED}"]["accounts"] == 1

    client, read = serve_fetcher(serve, TWO_PAGES, rate_limited_per_call=1)
    push(client, TASK)
    [found["fetcher: window fetched"]] = read()
    client, read = serve_fetcher(serve, {None: DuoTransientError("Duo answered HTTP 503")})
    push(client, TASK)
    [found["fetcher: window failed"]] = read()
    store = FakeWindowStore(FakeClock(), [])
    nothing = {"items": [], "metadata": {"total_objects": 0}}
    client, read = serve_fetcher(serve, {None: nothing}, store)
    store.doc(TASK).update(state="done")
    store.cursors[TASK.source] = new_cursor(TASK.mintime, TASK.maxtime + HOUR, (HOUR,))
    push(client, SpanCheck(TASK.source, 0, TASK.mintime, TASK.maxtime))
    [found["fetcher: span checked"]] = read()

    def unavailable(source: str, live: bool) -> None:
        raise SourceUnavailableError(f"source {source}: DUO_SOURCES_FILE: no secret version")

    store = FakeWindowStore(FakeClock(), [])
    store.add(TASK)
    fetcher = WindowFetcher(
        store,
        FakePublisher([]),
        unavailable,
        FakeClock(),
        lease_seconds=LEASE_SECONDS,
        time_budget_seconds=240,
    )
    client, read = serve(fetcher_main, lambda: fetcher_main.fetcher_app("acme-prod", fetcher))
    push(client, TASK)
    [found["fetcher: source unavailable"]] = read()

    batch = RecordBatch("eu-prod", TASK.window_id, 0, [telephony_item("t-1", TASK.mintime)])
    store = FakeWindowStore(FakeClock(), [])
    client, read = serve(
        writer_main, lambda: writer_main.writer_app("acme-prod", FakeWrite([]), store)
    )
    push(client, batch)
    push(client, batch)  # delivered again: "already landed", which no metric counts
    store.docs[batch.source, batch.window_id] = {"reread_from": 2}
    push(client, RecordBatch(batch.source, batch.window_id, 1, batch.records))  # a WARNING
    (
        found["writer: batch landed"],
        found["writer: batch already landed"],
        found["writer: batch superseded"],
    ) = read()
    assert found["writer: batch superseded"]["severity"] == "WARNING"
    not_a_batch = base64.b64encode(b"not a batch").decode()
    assert client.post("/", json={"message": {"data": not_a_batch}}).status_code == 204
    found["writer: dropped an invalid message"] = read()[-1]  # read() gives every line so far
    assert found["fetcher: window failed"]["severity"] == "ERROR"
    assert found["writer: dropped an invalid message"]["severity"] == "ERROR"
    return found


def matches(log_filter: str, line: dict[str, Any]) -> bool:
    """Whether the Cloud Logging entry Cloud Run makes of ``line`` (written by the service
    named by its component) matches ``log_filter``: clauses joined by AND, each
    ``FIELD="v"``, ``FIELD=~"regex"``, ``FIELD:*`` or ``severity>=LEVEL``, or ``NOT`` one of
    them (which a missing field satisfies, as in Cloud Logging)."""
    entry: dict[str, Any] = {
        "resource.type": "cloud_run_revision",
        "resource.labels.service_name": f"{PREFIX}-{line['component']}",
        "severity": line["severity"],
    }
    entry |= {f"jsonPayload.{key}": value for key, value in line.items() if key != "severity"}
    for clause in log_filter.split(" AND "):
        negated = clause.startswith("NOT ")
        clause = clause.removeprefix("NOT ")
        if match := re.fullmatch(r'(\S+?)="(.*)"', clause):
            ok = match.group(1) in entry and str(entry[match.group(1)]) == match.group(2)
        elif match := re.fullmatch(r'(\S+?)=~"(.*)"', clause):
            ok = bool(re.search(match.group(2), str(entry.get(match.group(1), ""))))
        elif match := re.fullmatch(r"(\S+):\*", clause):
            ok = match.group(1) in entry
        elif match := re.fullmatch(r"severity>=([A-Z]+)", clause):
            ok = SEVERITIES.index(line["severity"]) >= SEVERITIES.index(match.group(1))
        else:
            pytest.fail(f"a clause this test cannot evaluate: {clause!r}")
        if negated:
            ok = not ok
        if not ok:
            return False
    return True


def extracted(extractor: str) -> str:
    match = re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", extractor)
    assert match, f"an extractor this test cannot read: {extractor!r}"
    return match.group(1)


def promql_metrics(query: str, defined: dict[str, dict[str, Any]]) -> set[str]:
    """The metrics a PromQL query reads, each checked: a built-in one, or one defined here
    (a distribution read through _sum, _count or _bucket, a counter as it is)."""
    names = set()
    for name in PROMQL_METRIC.findall(query):
        if name in BUILT_IN:
            names.add(name)
            continue
        match = USER_METRIC.match(name)
        assert match and match.group(1) in defined, f"{name} is neither defined nor built in"
        metric, suffix = match.groups()
        distribution = defined[metric]["metricDescriptor"]["valueType"] == "DISTRIBUTION"
        assert bool(suffix) == distribution, f"{name}: read as a distribution: {distribution}"
        names.add(metric)
    return names


def test_every_file_is_json_before_and_after_its_placeholders_are_filled() -> None:
    files = sorted(path for path in MONITORING.rglob("*") if path.suffix == ".json")
    assert len(files) == len(EXPECTED) + 6  # the metrics, five policies and the dashboard
    for path in files:
        json.loads(path.read_text())
        assert not PLACEHOLDER.search(render(path.read_text()))


def test_apply_fills_in_exactly_the_placeholders_the_files_use() -> None:
    filled = set(re.findall(r"text=\$\{text//'\$\{([A-Z_]+)\}'/", APPLY.read_text()))
    used = {
        name
        for path in MONITORING.rglob("*.json")
        for name in PLACEHOLDER.findall(path.read_text())
    }
    assert filled == used == set(VALUES)


def test_each_metric_counts_exactly_the_lines_it_is_named_for(lines) -> None:
    defined = metrics()
    assert set(defined) == set(EXPECTED)
    for name, metric in defined.items():
        counted = {kind for kind, line in lines.items() if matches(metric["filter"], line)}
        assert counted == EXPECTED[name], name


def test_each_metric_extracts_fields_the_counted_lines_carry(lines) -> None:
    for name, metric in metrics().items():
        counted = [line for kind, line in lines.items() if kind in EXPECTED[name]]
        if "valueExtractor" in metric:
            assert metric["metricDescriptor"]["valueType"] == "DISTRIBUTION", name
            field = extracted(metric["valueExtractor"])
            for line in counted:
                value = line[field]
                assert isinstance(value, int | float) and not isinstance(value, bool), name
        declared = {label["key"] for label in metric["metricDescriptor"].get("labels", [])}
        assert declared == set(metric.get("labelExtractors", {})), name
        for label, extractor in metric.get("labelExtractors", {}).items():
            field = extracted(extractor)
            if (name, label) in MAY_BE_EMPTY:
                assert any(field in line for line in counted), (name, field)
                counted = [line for line in counted if field in line]
            assert all(isinstance(line[field], str) for line in counted), (name, field)


def test_a_filter_names_the_services_by_the_build_prefix() -> None:
    for name, metric in metrics().items():
        assert f'resource.labels.service_name="{PREFIX}-' in metric["filter"] or (
            f'service_name=~"^{PREFIX}-(planner|fetcher|writer)$"' in metric["filter"]
        ), name


def test_policies_are_named_for_the_teardown_and_read_defined_or_built_in_metrics() -> None:
    defined = metrics()
    read: set[str] = set()
    names = [policy["displayName"] for policy in policies()]
    assert len(set(names)) == len(names) == 5
    for policy in policies():
        assert policy["displayName"].startswith("duo-telephony")
        for condition in policy["conditions"]:
            read |= promql_metrics(condition["conditionPrometheusQueryLanguage"]["query"], defined)
    assert read == {
        "duo_telephony_lag_seconds",
        "duo_telephony_quarantined_windows",
        "duo_telephony_windows_failed",
        "duo_telephony_errors",
        "duo_telephony_accounts",
        DEAD_LETTERS,
    }


def test_the_lag_threshold_and_the_subscriptions_come_from_the_build() -> None:
    queries = " ".join(
        condition["conditionPrometheusQueryLanguage"]["query"]
        for policy in policies()
        for condition in policy["conditions"]
    )
    assert "_lag_seconds_count{" in queries and ") > 1234" in queries
    assert 'subscription_id=~"acme-windows-fetcher|acme-batches-writer|acme-plans-planner"' in (
        queries
    )


def test_policies_name_no_channel_so_an_empty_substitution_notifies_nobody() -> None:
    for policy in policies():
        assert not policy.get("notificationChannels"), policy["displayName"]
    build = CLOUDBUILD.read_text()
    assert re.search(r'^  _NOTIFICATION_CHANNEL: ""', build, re.MULTILINE)
    assert re.search(r'^  _LAG_ALERT_SECONDS: "\d+"', build, re.MULTILINE)
    script = APPLY.read_text()
    # Channels only when given: on create, and on update (which replaces the whole policy).
    assert '--notification-channels="$channels"' in script
    assert '--set-notification-channels="$channels"' in script
    assert "--clear-notification-channels" in script


def test_the_dashboard_shows_records_lag_requests_and_429s_from_defined_metrics() -> None:
    board = dashboard()
    assert board["displayName"] == "duo-telephony"
    shown = set()
    for widget in board["gridLayout"]["widgets"]:
        for data in widget["xyChart"]["dataSets"]:
            shown |= promql_metrics(data["timeSeriesQuery"]["prometheusQuery"], metrics())
    assert {
        "duo_telephony_records_landed",
        "duo_telephony_lag_seconds",
        "duo_telephony_duo_requests",
        "duo_telephony_rate_limited",
    } <= shown


@pytest.mark.parametrize(
    "path", sorted([*(MONITORING / "policies").glob("*.json"), MONITORING / "dashboard.json"])
)
def test_apply_finds_the_display_name_where_it_looks(path: Path) -> None:
    # apply.sh matches existing policies and the dashboard by the one displayName line
    # indented by two spaces; a reformatted file would make it create a second one.
    found = re.findall(r'^  "displayName": "(.*)",$', path.read_text(), re.MULTILINE)
    assert found == [json.loads(path.read_text())["displayName"]]


def conditions() -> dict[str, dict[str, Any]]:
    """Every policy's conditions, by display name."""
    return {
        condition["displayName"]: condition["conditionPrometheusQueryLanguage"]
        for policy in policies()
        for condition in policy["conditions"]
    }


def test_a_catch_up_opens_no_lag_alert_but_a_standing_watermark_does() -> None:
    # A first deploy starts _LOOKBACK behind and a backfill far behind: the lag is above the
    # threshold while the watermark moves. Only a lag above it that also grew by nearly the
    # time that passed (the watermark moved less than 5 of the last 30 minutes) alerts.
    [query] = [c["query"] for c in conditions().values() if "_lag_seconds_" in c["query"]]
    now, grown = query.split(" and ")
    assert now.endswith(") > 1234)")
    assert " offset " not in now
    assert grown.count(" offset 30m") == 2  # the mean lag 30 minutes ago, sum and count
    growth = int(re.fullmatch(r".*\) > (\d+)\)", grown).group(1))
    assert 0 < 30 * 60 - growth <= 5 * 60


def test_no_planner_run_alerts_only_once_the_planner_has_run() -> None:
    # On a first deploy the metric does not exist yet: absence alone would open an incident.
    absent = {name: c for name, c in conditions().items() if "absent" in c["query"]}
    assert list(absent) == ["no planner run for 15 minutes, after it has run"]
    query = absent["no planner run for 15 minutes, after it has run"]["query"]
    runs = "logging_googleapis_com:user_duo_telephony_quarantined_windows_count"
    match = re.fullmatch(
        rf"absent_over_time\({runs}\{{(.*)\}}\[10m\]\) and on\(\) "
        rf"count\(count_over_time\({runs}\{{(.*)\}}\[1d\]\)\)",
        query,
    )
    assert match and match.group(1) == match.group(2)
    # Several of the planner's minutes: 10 without a run, then 5 more.
    assert absent["no planner run for 15 minutes, after it has run"]["duration"] == "300s"


def test_window_failures_alert_at_their_threshold_only() -> None:
    failing = conditions()["window fetches keep failing"]["query"]
    assert failing.endswith('_windows_failed{monitored_resource="cloud_run_revision"}[30m])) >= 3')
    # And no other condition reads what a single failed fetch writes.
    others = [
        c["query"] for name, c in conditions().items() if name != "window fetches keep failing"
    ]
    assert not any("windows_failed" in query for query in others)


AGGREGATION = re.compile(r"\b(sum|avg|min|max|count|topk|bottomk|quantile)\b( by \(([^)]*)\))?")


def test_one_account_standing_still_opens_the_lag_alert_whatever_the_others_do() -> None:
    # Each account is its own series: an aggregation across accounts (a fleet mean, a sum)
    # would hide one stuck account among many moving ones.
    [query] = [c["query"] for c in conditions().values() if "_lag_seconds_" in c["query"]]
    aggregations = AGGREGATION.findall(query)
    assert aggregations
    assert all(name == "sum" and by == "source" for name, _, by in aggregations), aggregations


def test_accounts_refused_or_broken_alert_with_what_to_do() -> None:
    [policy] = [p for p in policies() if "_accounts_" in json.dumps(p["conditions"])]
    [condition] = policy["conditions"]
    query = condition["conditionPrometheusQueryLanguage"]["query"]
    # The states the registry does not plan, and only those: a gone account is not trouble.
    states = re.search(r'state=~"([^"]*)"', query).group(1)
    assert set(states.split("|")) == set(TROUBLED)
    assert query.startswith("sum by (state) (") and query.endswith(") > 0")
    # Longer than the run or two a refused account is active again when it is retried.
    assert int(condition["conditionPrometheusQueryLanguage"]["duration"].rstrip("s")) >= 300
    what_to_do = policy["documentation"]["content"]
    assert "duo-telephony status --source ID" in what_to_do
    assert REFUSED_FIX in what_to_do


def test_the_dashboard_shows_the_worst_accounts_lag_and_the_accounts_by_state() -> None:
    queries = [
        data["timeSeriesQuery"]["prometheusQuery"]
        for widget in dashboard()["gridLayout"]["widgets"]
        for data in widget["xyChart"]["dataSets"]
    ]
    lag = [q for q in queries if "_lag_seconds_" in q]
    # The worst account's lag is the maximum of each account's own lag.
    assert any(q.startswith("max(sum by (source) (") for q in lag), lag
    [accounts] = [q for q in queries if "_accounts_" in q]
    assert re.fullmatch(r"sum by \(state\) \(.*\) / sum by \(state\) \(.*\)", accounts)


# cloudbuild.yaml's pubsub step: `push SERVICE "$_TOPIC" ...` makes the subscription TOPIC-SERVICE.
PUSHED = re.compile(r'^ *push (\w+) "\$(_[A-Z_]+)"', re.MULTILINE)
# apply.sh: text=${text//'${PLACEHOLDER}'/"$_TOPIC-SERVICE"}.
SUBSCRIPTION_PLACEHOLDER = re.compile(r"text=\$\{text//'\$\{([A-Z_]+)\}'/\"\$(_[A-Z_]+)-(\w+)\"\}")


def push_subscriptions() -> set[str]:
    """Every push subscription the build makes, named as the rendered files name it."""
    placeholders = {
        (service, topic): name
        for name, topic, service in SUBSCRIPTION_PLACEHOLDER.findall(APPLY.read_text())
    }
    pushed = set(PUSHED.findall(CLOUDBUILD.read_text()))
    assert len(pushed) == 3  # windows -> fetcher, batches -> writer, plans -> planner
    missing = pushed - set(placeholders)
    assert not missing, f"push subscriptions apply.sh cannot name: {missing}"
    return {VALUES[placeholders[push]] for push in pushed}


def pubsub_queries(queries: list[str], metric: str) -> list[set[str]]:
    """For each query reading ``metric``, the subscriptions its subscription_id matches."""
    found = []
    for query in queries:
        if metric in PROMQL_METRIC.findall(query):
            [names] = re.findall(r'subscription_id=~"([^"]*)"', query)
            found.append(set(names.split("|")))
    return found


def test_every_push_subscription_is_on_the_dashboard_and_in_the_dead_letter_alert() -> None:
    # The plans subscription included: a planner that cannot take its slices plans nothing.
    subscriptions = push_subscriptions()
    assert "acme-plans-planner" in subscriptions
    board = [
        data["timeSeriesQuery"]["prometheusQuery"]
        for widget in dashboard()["gridLayout"]["widgets"]
        for data in widget["xyChart"]["dataSets"]
    ]
    assert pubsub_queries(board, DEAD_LETTERS) == [subscriptions]
    assert pubsub_queries(board, BACKLOG_AGE) == [subscriptions]
    alerts = [c["query"] for c in conditions().values()]
    assert pubsub_queries(alerts, DEAD_LETTERS) == [subscriptions]
