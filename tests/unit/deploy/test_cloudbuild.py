"""cloudbuild.yaml: read as data, and its gcloud steps run on a bootstrapped project against the
recording gcloud, with the substitutions Cloud Build would give them."""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.conftest import (
    BASE_IMAGE,
    PROJECT,
    ROOT,
    Call,
    Cloud,
    build_env,
    cloudbuild,
    plan,
    run_build_steps,
    script,
)
from tests.unit.deploy.gcloud_recorder import PROJECT_NUMBER
from tests.unit.deploy.test_bootstrap import BROAD_ROLES

DATABASE_CONDITION = f'resource.name=="projects/{PROJECT}/databases/duo-telephony"'

# Where a document gets its expire_at (a string constant "expire_at" in shared/, by module and
# innermost function), and the collection group of that document. A new place fails
# test_every_expire_at_is_known until it is added here, and then the TTL test asks the build
# for a TTL policy on its group.
EXPIRE_AT_WRITERS = {
    ("shared/pipeline/windows.py", "marker"): "batches",  # a batch's marker
    ("shared/pipeline/windows.py", "lifetime"): "windows",  # a window done for good
    ("shared/pipeline/windows.py", "_behind"): "windows",  # read: passed by a version before
    ("shared/pipeline/windows.py", None): "windows",  # KEPT: an open window never expires
}


@dataclass(frozen=True)
class Build:
    granted: list[list[str]]  # [resource, member, role] bound by the bootstrap
    results: list[subprocess.CompletedProcess[str]]
    calls: list[Call]
    again: list[subprocess.CompletedProcess[str]]
    again_calls: list[Call]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    tmp = tmp_path_factory.mktemp("build")
    cloud = Cloud(tmp)
    bootstrap, _ = cloud.run(script("bootstrap.sh"))
    assert bootstrap.returncode == 0, bootstrap.stderr
    cloud.add_secret_version()
    granted = cloud.state()["bindings"]
    results, calls = run_build_steps(cloud, tmp)
    again, again_calls = run_build_steps(cloud, tmp)
    return Build(granted, results, calls, again, again_calls)


def steps() -> list[dict[str, Any]]:
    return cloudbuild()["steps"]


def calls_of(calls: list[Call], *words: str) -> list[Call]:
    return [call for call in plan(calls) if call.words[: len(words)] == list(words)]


def subscription_calls(calls: list[Call]) -> dict[str, Call]:
    """The last create or update of each subscription: what it ends up as."""
    found = {}
    for call in plan(calls):
        if call.words[:2] == ["pubsub", "subscriptions"] and call.words[2] in ("create", "update"):
            found[call.words[3]] = call
    return found


def seconds(value: str | None) -> int:
    assert value is not None
    return int(value.removesuffix("s"))


def test_the_builds_gcloud_steps_run_on_a_bootstrapped_project(build: Build) -> None:
    for result in build.results + build.again:
        assert result.returncode == 0, result.stderr


def test_a_second_build_updates_and_creates_nothing(build: Build) -> None:
    assert not [call.line for call in plan(build.again_calls) if "create" in call.words]


def test_nothing_is_public() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    assert "allUsers" not in text
    assert "allAuthenticatedUsers" not in text


def test_every_service_refuses_unauthenticated_calls(build: Build) -> None:
    deploys = calls_of(build.calls, "run", "deploy")
    assert len(deploys) == 3
    for call in deploys:
        assert call.flag("no-allow-unauthenticated") == ""
        assert call.flag("allow-unauthenticated") is None
    for call in plan(build.calls):
        assert "allUsers" not in call.line
        assert "allAuthenticatedUsers" not in call.line


def test_the_build_binds_no_project_role(build: Build) -> None:
    assert calls_of(build.calls, "projects", "add-iam-policy-binding") == []
    for call in plan(build.calls):
        assert call.flag("role") not in BROAD_ROLES - {"roles/pubsub.admin"}


def deployer_needs(call: Call) -> set[tuple[str, str]]:
    """(resource, role) the build's account needs for one call, by Google's predefined roles:
    its Pub/Sub rights are on each topic and subscription, the rest on the project."""
    project = f"projects|{PROJECT}"
    words = call.words
    needs = set()
    if words[0] == "run":
        needs.add((project, "roles/run.admin"))
    if words[0] == "scheduler":
        needs.add((project, "roles/cloudscheduler.admin"))
    if words[0] == "firestore":
        # Only in the pipeline's database, where the bootstrap's grant holds.
        assert call.flag("database") == "duo-telephony", call.line
        needs.add((f"{project} if {DATABASE_CONDITION}", "roles/datastore.indexAdmin"))
    if words[:2] == ["logging", "metrics"]:
        needs.add((project, f"projects/{PROJECT}/roles/duoTelephonyLogMetrics"))
    if words[:3] == ["monitoring", "channels", "describe"]:
        needs.add((project, "roles/monitoring.notificationChannelViewer"))
    if words[:3] == ["secrets", "versions", "describe"]:
        needs.add((f"secrets|{call.flag('secret')}", "roles/secretmanager.viewer"))
    if words[:2] == ["monitoring", "policies"]:
        needs.add((project, "roles/monitoring.alertPolicyEditor"))
    if words[:2] == ["monitoring", "dashboards"]:
        needs.add((project, "roles/monitoring.dashboardEditor"))
    if words[0] == "pubsub":
        needs.add((f"pubsub {words[1]}|{words[3]}", "roles/pubsub.admin"))
        for flag in ("topic", "dead-letter-topic"):
            if call.flag(flag):
                needs.add((f"pubsub topics|{call.flag(flag)}", "roles/pubsub.admin"))
    # Naming an account as a service's identity or as an OIDC token's is acting as it.
    for flag in ("service-account", "push-auth-service-account", "oidc-service-account-email"):
        if call.flag(flag):
            needs.add((f"iam service-accounts|{call.flag(flag)}", "roles/iam.serviceAccountUser"))
    return needs


def test_the_bootstrap_gives_the_builds_account_what_each_call_needs(build: Build) -> None:
    deployer = f"serviceAccount:duo-telephony-deployer@{PROJECT}.iam.gserviceaccount.com"
    held = {
        (" if ".join([resource, *condition]), role)
        for resource, member, role, *condition in build.granted
        if member == deployer
    }
    needed = set().union(*(deployer_needs(call) for call in build.calls + build.again_calls))
    assert needed
    assert needed - held == set()


def test_each_service_is_invoked_only_by_its_caller(build: Build) -> None:
    invokers = {
        (call.words[3], call.flag("member"))
        for call in calls_of(build.calls, "run", "services", "add-iam-policy-binding")
        if call.flag("role") == "roles/run.invoker"
    }
    push = f"serviceAccount:duo-telephony-push@{PROJECT}.iam.gserviceaccount.com"
    scheduler = f"serviceAccount:duo-telephony-scheduler@{PROJECT}.iam.gserviceaccount.com"
    # The planner: the scheduler's run, and Pub/Sub's pushes of the plan tasks it hands out.
    assert invokers == {
        ("duo-telephony-planner", scheduler),
        ("duo-telephony-planner", push),
        ("duo-telephony-fetcher", push),
        ("duo-telephony-writer", push),
    }


def test_every_push_subscription_and_the_scheduler_job_use_oidc(build: Build) -> None:
    pushed = [c for c in subscription_calls(build.calls).values() if c.flag("push-endpoint")]
    assert len(pushed) == 3
    for call in pushed:
        assert call.flag("push-auth-service-account") == (
            f"duo-telephony-push@{PROJECT}.iam.gserviceaccount.com"
        )
        assert call.flag("push-endpoint").startswith(call.flag("push-auth-token-audience"))
    jobs = calls_of(build.calls, "scheduler", "jobs", "create") + calls_of(
        build.again_calls, "scheduler", "jobs", "update"
    )
    assert len(jobs) == 2
    for call in jobs:
        assert call.flag("oidc-service-account-email") == (
            f"duo-telephony-scheduler@{PROJECT}.iam.gserviceaccount.com"
        )
        assert call.flag("uri").startswith(call.flag("oidc-token-audience"))


def test_every_subscription_but_the_dead_letters_own_dead_letters(build: Build) -> None:
    dead_letter_topic = build_env()["_DEAD_LETTER_TOPIC"]
    subscriptions = subscription_calls(build.calls)
    assert set(subscriptions) == {
        "duo-telephony-windows-fetcher",
        "duo-telephony-batches-writer",
        "duo-telephony-plans-planner",
        dead_letter_topic,
    }
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    for name, call in subscriptions.items():
        if name == dead_letter_topic:
            assert call.flag("dead-letter-topic") is None  # where dead letters end
            continue
        assert call.flag("dead-letter-topic") == dead_letter_topic
        assert int(call.flag("max-delivery-attempts")) >= 5
        # Dead-lettering needs the Pub/Sub service agent to pull from the subscription.
        assert any(
            c.words[3] == name and c.flag("member") == agent
            for c in calls_of(build.calls, "pubsub", "subscriptions", "add-iam-policy-binding")
        )
    assert any(
        c.words[3] == dead_letter_topic
        and c.flag("member") == agent
        and c.flag("role") == "roles/pubsub.publisher"
        for c in calls_of(build.calls, "pubsub", "topics", "add-iam-policy-binding")
    )


def expire_at_writers() -> set[tuple[str, str | None]]:
    found = set()
    for path in sorted((ROOT / "shared").rglob("*.py")):

        def visit(node: ast.AST, function: str | None, path: Path = path) -> None:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                function = node.name
            if isinstance(node, ast.Constant) and node.value == "expire_at":
                found.add((str(path.relative_to(ROOT)), function))
            for child in ast.iter_child_nodes(node):
                visit(child, function)

        visit(ast.parse(path.read_text()), None)
    return found


def test_every_expire_at_is_known() -> None:
    assert expire_at_writers() == set(EXPIRE_AT_WRITERS)


def test_ttl_on_every_collection_group_that_carries_expire_at(build: Build) -> None:
    enabled = {
        call.flag("collection-group")
        for call in calls_of(build.calls, "firestore", "fields", "ttls", "update")
        if call.words[4] == "expire_at" and call.flag("enable-ttl") == ""
    }
    assert enabled == set(EXPIRE_AT_WRITERS.values())
    # Once asked for, a TTL policy is not asked for again.
    assert calls_of(build.again_calls, "firestore", "fields", "ttls", "update") == []


def test_every_substitution_used_is_defined() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    used = set(re.findall(r"\$\{?(_[A-Z0-9_]+)", text))
    assert used
    assert used <= set(cloudbuild()["substitutions"])


def test_every_step_image_is_pinned() -> None:
    # A version in the tag (not a moving name like latest or slim), or a digest.
    pinned = re.compile(r".+(@sha256:[0-9a-f]{64}|:[^:/@]*\d+\.\d+[^:/@]*)$")
    assert [step["name"] for step in steps() if not pinned.match(step["name"])] == []


def waits_for(step_id: str) -> set[str]:
    """Every step that ``step_id`` waits for, directly or not (no waitFor: all before it)."""
    ids = [step["id"] for step in steps()]
    direct = {}
    for at, step in enumerate(steps()):
        wait = step.get("waitFor")
        direct[step["id"]] = set(ids[:at]) if wait is None else set(wait) - {"-"}
    seen: set[str] = set()
    todo = [step_id]
    while todo:
        for before in direct[todo.pop()] - seen:
            seen.add(before)
            todo.append(before)
    return seen


def test_tests_and_the_preflight_run_before_any_step_that_pushes_or_deploys() -> None:
    tests = {step["id"] for step in steps() if "pytest" in step.get("script", "")}
    assert {"unit-tests", "integration-tests"} <= tests
    changing = [
        step["id"]
        for step in steps()
        if re.search(r"\bgcloud |docker push", step.get("script", ""))
        and step["id"] not in tests | {"preflight"}
    ]
    assert changing
    for step_id in changing:
        assert tests | {"preflight"} <= waits_for(step_id), step_id


def test_the_scheduler_job_comes_after_the_subscriptions() -> None:
    scheduler = next(s["id"] for s in steps() if "gcloud scheduler jobs" in s.get("script", ""))
    subscriptions = next(s["id"] for s in steps() if "subscriptions create" in s.get("script", ""))
    assert subscriptions in waits_for(scheduler)


def test_every_service_has_a_startup_probe_on_healthz(build: Build) -> None:
    deploys = calls_of(build.calls, "run", "deploy")
    assert len(deploys) == 3
    for call in deploys:
        assert "httpGet.path=/healthz" in (call.flag("startup-probe") or ""), call.words[2]


def test_each_service_is_deployed_before_the_one_that_sends_it_messages(build: Build) -> None:
    # An old writer refuses a record batch of a newer version (and acknowledges it, as it can
    # never become valid): the writer goes first, then the fetcher, then the planner.
    order = [call.words[2] for call in calls_of(build.calls, "run", "deploy")]
    assert order == ["duo-telephony-writer", "duo-telephony-fetcher", "duo-telephony-planner"]


def test_the_fetchers_request_timeout_is_within_the_ack_deadline(build: Build) -> None:
    fetcher = next(
        c for c in calls_of(build.calls, "run", "deploy") if c.words[2].endswith("-fetcher")
    )
    subscription = subscription_calls(build.calls)["duo-telephony-windows-fetcher"]
    assert seconds(fetcher.flag("timeout")) <= seconds(subscription.flag("ack-deadline"))


def test_plan_tasks_are_pushed_to_the_planners_plan_within_its_request_timeout(
    build: Build,
) -> None:
    planner = next(
        c for c in calls_of(build.calls, "run", "deploy") if c.words[2].endswith("-planner")
    )
    subscription = subscription_calls(build.calls)["duo-telephony-plans-planner"]
    assert (
        subscription.flag("push-endpoint")
        == subscription.flag("push-auth-token-audience") + "/plan"
    )
    assert seconds(planner.flag("timeout")) <= seconds(subscription.flag("ack-deadline"))
    # Slices are planned in parallel by more than one instance.
    assert int(planner.flag("max-instances")) > 1


def test_the_build_command_in_the_header_names_the_service_account() -> None:
    header = (ROOT / "cloudbuild.yaml").read_text().split("\nsubstitutions:")[0]
    command = header[header.index("builds submit") :].split("\n#\n")[0]
    assert "--service-account=" in command


SERVICES = ("duo-telephony-planner", "duo-telephony-fetcher", "duo-telephony-writer")


def bootstrapped(tmp: Path) -> Cloud:
    """A project after the bootstrap and the guide's step 3 (the secret's value)."""
    cloud = Cloud(tmp)
    result, _ = cloud.run(script("bootstrap.sh"))
    assert result.returncode == 0, result.stderr
    cloud.add_secret_version()
    return cloud


def traffic(cloud: Cloud, service: str) -> list[list[Any]]:
    return cloud.state()["resources"][f"run services|{service}"]["traffic"]


def revision(cloud: Cloud, service: str) -> str:
    return cloud.state()["resources"][f"run services|{service}"]["status.latestReadyRevisionName"]


def roll_back(cloud: Cloud, revisions: dict[str, str]) -> None:
    """The guide's rollback: each service's traffic sent to a named revision, senders first."""
    for service in SERVICES:
        result, _ = cloud.run(
            f"gcloud run services update-traffic {service} --region=us-central1 "
            f"--project={PROJECT} --to-revisions={revisions[service]}=100"
        )
        assert result.returncode == 0, result.stderr


def step(step_id: str) -> dict[str, Any]:
    return next(s for s in steps() if s["id"] == step_id)


def test_a_rollback_followed_by_a_build_serves_the_new_build(tmp_path: Path) -> None:
    cloud = bootstrapped(tmp_path)
    run_build_steps(cloud, tmp_path)
    first = {service: revision(cloud, service) for service in SERVICES}
    run_build_steps(cloud, tmp_path)
    roll_back(cloud, first)
    assert all(traffic(cloud, s) == [[first[s], 100, False]] for s in SERVICES)

    results, _ = run_build_steps(cloud, tmp_path)
    assert [result.returncode for result in results] == [0] * len(results)
    for service in SERVICES:
        newest = revision(cloud, service)
        assert newest.endswith("-00003-abc")
        # All its traffic, and the next deploys' too: it follows the latest revision again.
        assert traffic(cloud, service) == [[newest, 100, True]]


def test_ready_fails_while_a_service_serves_an_older_revision(tmp_path: Path) -> None:
    cloud = bootstrapped(tmp_path)
    run_build_steps(cloud, tmp_path)
    older = revision(cloud, "duo-telephony-fetcher")
    run_build_steps(cloud, tmp_path)
    cloud.run(
        "gcloud run services update-traffic duo-telephony-fetcher --region=us-central1 "
        f"--to-revisions={older}=100"
    )
    env = build_env(_NOTIFICATION_CHANNEL="none")
    result, _ = cloud.run(step("ready")["script"], settings=env, cwd=tmp_path / "workspace")
    assert result.returncode == 1
    [complaint] = result.stderr.splitlines()
    assert complaint.startswith("duo-telephony-fetcher: revision duo-telephony-fetcher-00002-abc")
    assert f"{older} 100 False" in complaint
    assert "--to-latest" in complaint


def preflight(cloud: Cloud, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = build_env(_NOTIFICATION_CHANNEL=",".join(cloud.channels())) | overrides
    result, calls = cloud.run(step("preflight")["script"], settings=env)
    assert plan(calls) == []  # it only looks
    return result


def test_the_preflight_passes_on_a_bootstrapped_project(tmp_path: Path) -> None:
    result = preflight(bootstrapped(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_build_without_a_notification_channel_stops_at_the_preflight(tmp_path: Path) -> None:
    result = preflight(bootstrapped(tmp_path), _NOTIFICATION_CHANNEL="")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "_NOTIFICATION_CHANNEL is empty" in line
    assert "_NOTIFICATION_CHANNEL=none" in line  # how to deploy silent alerts on purpose


def test_none_deploys_alerts_that_notify_nobody_only_when_asked(tmp_path: Path) -> None:
    cloud = bootstrapped(tmp_path)
    assert preflight(cloud, _NOTIFICATION_CHANNEL="none").returncode == 0
    results, calls = run_build_steps(cloud, tmp_path, _NOTIFICATION_CHANNEL="none")
    assert all(result.returncode == 0 for result in results)
    created = calls_of(calls, "monitoring", "policies", "create")
    assert created
    assert all(call.flag("notification-channels") is None for call in created)


def test_the_alerts_notify_the_bootstraps_channel(build: Build) -> None:
    created = calls_of(build.calls, "monitoring", "policies", "create")
    updated = calls_of(build.again_calls, "monitoring", "policies", "update")
    policies = list((ROOT / "deploy" / "monitoring" / "policies").glob("*.json"))
    assert len(created) == len(updated) == len(policies)
    channel = f"projects/{PROJECT_NUMBER}/notificationChannels/1"
    assert {call.flag("notification-channels") for call in created} == {channel}
    assert {call.flag("set-notification-channels") for call in updated} == {channel}


def test_a_channel_that_does_not_exist_stops_the_build(tmp_path: Path) -> None:
    wrong = f"projects/{PROJECT}/notificationChannels/404"
    result = preflight(bootstrapped(tmp_path), _NOTIFICATION_CHANNEL=wrong)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f"notification channel {wrong}: not found" in line


def test_a_secret_without_a_version_stops_the_build(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    cloud.run(script("bootstrap.sh"))  # and no step 3
    result = preflight(cloud)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("preflight: secret duo-skey has no enabled version latest")
    assert "step 3" in line


def test_a_disabled_latest_version_stops_the_build(tmp_path: Path) -> None:
    cloud = bootstrapped(tmp_path)
    cloud.seed({"secrets versions|duo-skey/1": {"state": "DISABLED"}})
    result = preflight(cloud)
    assert result.returncode == 1
    assert "no enabled version latest (DISABLED)" in result.stderr


def test_an_account_the_build_cannot_find_stops_it(tmp_path: Path) -> None:
    cloud = bootstrapped(tmp_path)
    push = f"duo-telephony-push@{PROJECT}.iam.gserviceaccount.com"
    result, _ = cloud.run(f"gcloud iam service-accounts delete {push} --project={PROJECT}")
    assert result.returncode == 0
    result = preflight(cloud)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"preflight: service account {push}: missing")


def test_the_monitoring_is_applied_once_the_scheduler_job_exists() -> None:
    # Else "no planner run" watches a planner nothing calls yet.
    assert "scheduler-and-ttl" in waits_for("monitoring")


@pytest.mark.parametrize(
    "base",
    [
        "",
        "python:3.11-slim",
        "us-central1-docker.pkg.dev/acme-duo/dockerhub/library/python:3.11-slim",
        f"us-central1-docker.pkg.dev/acme-duo/dockerhub/library/python@sha256:{'a' * 63}",
        f"python@sha256:{'A' * 64}",
    ],
)
@pytest.mark.parametrize("deploy", ["true", "false"])
def test_a_base_image_not_pinned_by_digest_stops_every_build(
    tmp_path: Path, base: str, deploy: str
) -> None:
    result = preflight(bootstrapped(tmp_path), _BASE_IMAGE=base, _DEPLOY=deploy)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"preflight: _BASE_IMAGE '{base}' is not pinned by digest")
    assert "deploy/bootstrap.sh prints" in line


def run_image_step(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    """The image step without pushing, with a ``docker`` that records each command's arguments
    in docker-COMMAND and whose image runs Python ``python``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/docker-$1"\n'
        f'[ "$1" = run ] && echo {python}\nexit 0\n'
    )
    docker.chmod(0o755)
    env = build_env(_DEPLOY="false") | {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(
        ["bash", "-c", step("image")["script"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_image_is_built_on_the_pinned_base(tmp_path: Path) -> None:
    # The Dockerfile's one base is the build argument, with no default to fall back on.
    instructions = [
        line.split(None, 1)
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line and not line.startswith("#") and line.split()[0].isupper()
    ]
    assert instructions[:2] == [["ARG", "BASE_IMAGE"], ["FROM", "${BASE_IMAGE}"]]
    assert [words for words in instructions if words[0] == "FROM"] == [["FROM", "${BASE_IMAGE}"]]

    result = run_image_step(tmp_path, (ROOT / ".python-version").read_text().strip())
    assert result.returncode == 0, result.stderr
    built = (tmp_path / "docker-build").read_text().splitlines()
    assert built[built.index("--build-arg") + 1] == f"BASE_IMAGE={BASE_IMAGE}"
    assert "--pull" not in built


def test_an_image_whose_python_is_not_python_versions_stops_the_build(tmp_path: Path) -> None:
    result = run_image_step(tmp_path, "3.99")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    python = (ROOT / ".python-version").read_text().strip()
    assert line.startswith(f"_BASE_IMAGE runs Python 3.99, but .python-version names {python}")
    assert "deploy/bootstrap.sh" in line
