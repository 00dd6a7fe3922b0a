"""deploy/bootstrap.sh: its dry-run plan, and two real runs against the recording gcloud."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.deploy.conftest import PROJECT, ROOT, Call, Cloud, cloudbuild, plan, script
from tests.unit.deploy.gcloud_recorder import PROJECT_NUMBER

# Project-wide roles that would give an account far more than it needs.
BROAD_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/storage.admin",
    "roles/pubsub.admin",
    "roles/datastore.owner",
    "roles/secretmanager.admin",
}
LIFECYCLE_DAYS = "400"


def account(name: str) -> str:
    return f"serviceAccount:duo-telephony-{name}@{PROJECT}.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Runs:
    cloud: Cloud
    dry: subprocess.CompletedProcess[str]
    dry_calls: list[Call]
    first: subprocess.CompletedProcess[str]
    first_calls: list[Call]
    second: subprocess.CompletedProcess[str]
    second_calls: list[Call]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    cloud = Cloud(tmp_path_factory.mktemp("bootstrap"))
    args = ("--lifecycle-days", LIFECYCLE_DAYS)
    dry, dry_calls = cloud.run(script("bootstrap.sh"), "--dry-run", *args)
    first, first_calls = cloud.run(script("bootstrap.sh"), *args)
    second, second_calls = cloud.run(script("bootstrap.sh"), *args)
    return Runs(cloud, dry, dry_calls, first, first_calls, second, second_calls)


# The IAM condition that holds a project binding to the pipeline's Firestore database.
DATABASE = f'expression=resource.name=="projects/{PROJECT}/databases/duo-telephony"'


def bindings(calls: list[Call]) -> list[tuple[str, str, str, str]]:
    """(resource kind, resource, member, role) of each add-iam-policy-binding; a project
    binding held to the pipeline's database is of kind "projects if database"."""
    found = []
    for call in calls:
        if "add-iam-policy-binding" in call.words:
            at = call.words.index("add-iam-policy-binding")
            kind = " ".join(call.words[:at])
            condition = call.flag("condition")
            if condition not in (None, "None"):
                assert condition == f"{DATABASE},title=duo-telephony-database", condition
                kind += " if database"
            found.append((kind, call.words[at + 1], call.flag("member"), call.flag("role")))
    return found


def dry_plan_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("#")]


def without_temp_path(arg: str) -> str:
    """An argument as a dry run can print it: without its temporary file, the project number
    or the base image's digest, which only a real run looks up."""
    for flag in ("--lifecycle-file=", "--policy="):
        if arg.startswith(flag):
            return f"{flag}{Path(arg).name}"
    arg = re.sub(r"sha256:[0-9a-f]{64}", "sha256:DIGEST", arg)
    return arg.replace(PROJECT_NUMBER, "PROJECT_NUMBER")


def test_dry_run_needs_no_settings_no_login_and_calls_nothing(cloud: Cloud) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), "--dry-run", settings={})
    assert result.returncode == 0, result.stderr
    assert calls == []
    lines = dry_plan_lines(result.stdout)
    assert len(lines) > 40
    assert all(line.startswith("gcloud ") for line in lines)
    assert "--project=PROJECT_ID" in lines[0]
    assert any("gs://PROJECT_ID-duo-telephony " in line for line in lines)


def test_a_real_run_without_a_project_stops_before_calling_gcloud(cloud: Cloud) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), settings={})
    assert result.returncode == 2
    assert "PROJECT_ID" in result.stderr
    assert calls == []


def test_help_names_every_setting(cloud: Cloud) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), "--help")
    assert result.returncode == 0
    for setting in ("PROJECT_ID", "REGION", "FIRESTORE_LOCATION", "BUCKET", "SECRET"):
        assert setting in result.stdout
    assert calls == []


def test_the_dry_run_prints_what_a_first_run_does_in_order(runs: Runs) -> None:
    assert runs.first.returncode == 0, runs.first.stderr
    assert runs.dry_calls == []
    ran = [["gcloud", *call.argv] for call in plan(runs.first_calls)]
    printed = [shlex.split(line) for line in dry_plan_lines(runs.dry.stdout)]
    assert [list(map(without_temp_path, argv)) for argv in printed] == [
        list(map(without_temp_path, argv)) for argv in ran
    ]


def test_a_second_run_changes_nothing(runs: Runs) -> None:
    assert runs.second.returncode == 0, runs.second.stderr
    changes = [
        call.line
        for call in plan(runs.second_calls)
        # Returns the existing service agent: a lookup that creates only on a new project.
        if call.words[:3] != ["services", "identity", "create"]
    ]
    assert changes == []
    assert not any(call.changed for call in runs.second_calls)


def test_grants_refused_while_iam_propagates_are_retried_with_backoff(runs: Runs) -> None:
    refused = [
        call for call in runs.first_calls if call.rc != 0 and "add-iam-policy-binding" in call.words
    ]
    # The recorder refuses the first binding naming each runtime account created just before.
    assert {call.flag("member") for call in refused} == {
        account(name) for name in ("planner", "fetcher", "writer", "deployer")
    }
    for call in refused:
        later = runs.first_calls[runs.first_calls.index(call) + 1 :]
        assert any(again.argv == call.argv and again.rc == 0 for again in later)
    assert runs.cloud.sleeps == ["2"] * len(refused)


def test_a_refusal_that_is_not_propagation_fails_at_once(cloud: Cloud) -> None:
    denial = "ERROR: PERMISSION_DENIED: the caller lacks resourcemanager.projects.setIamPolicy"
    cloud.state_file.write_text(json.dumps({"deny": [["roles/datastore.user", denial]]}))
    result, calls = cloud.run(script("bootstrap.sh"))
    assert result.returncode != 0
    assert "PERMISSION_DENIED" in result.stderr
    assert [call.rc for call in calls if "roles/datastore.user" in call.line] == [1]
    assert cloud.sleeps == []


def test_no_public_member_and_no_broad_role_on_the_project(runs: Runs) -> None:
    lines = dry_plan_lines(runs.dry.stdout)
    assert not any("allUsers" in line or "allAuthenticatedUsers" in line for line in lines)
    project_roles = {role for kind, _, _, role in bindings(runs.first_calls) if kind == "projects"}
    assert project_roles
    assert not project_roles & BROAD_ROLES


def test_each_account_gets_exactly_its_roles(runs: Runs) -> None:
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for kind, resource, member, role in bindings(plan(runs.first_calls)):
        granted.setdefault(member, set()).add((kind, resource, role))
    bucket = f"gs://{PROJECT}-duo-telephony"
    # Listing and reading the bucket: a batch landed without its marker is looked for there.
    # Firestore: datastore.user held to the pipeline's database, not the project's others.
    assert granted[account("planner")] == {
        ("projects if database", PROJECT, "roles/datastore.user"),
        ("pubsub topics", "duo-telephony-windows", "roles/pubsub.publisher"),
        ("pubsub topics", "duo-telephony-plans", "roles/pubsub.publisher"),
        ("storage buckets", bucket, "roles/storage.objectViewer"),
    }
    assert granted[account("fetcher")] == {
        ("projects if database", PROJECT, "roles/datastore.user"),
        ("pubsub topics", "duo-telephony-windows", "roles/pubsub.publisher"),
        ("pubsub topics", "duo-telephony-batches", "roles/pubsub.publisher"),
        ("secrets", "duo-skey", "roles/secretmanager.secretAccessor"),
    }
    # Create-only uploads and a metadata read of an existing object: no list, no delete.
    assert granted[account("writer")] == {
        ("projects if database", PROJECT, "roles/datastore.user"),
        ("storage buckets", bucket, "roles/storage.objectCreator"),
        ("storage buckets", bucket, "roles/storage.legacyObjectReader"),
    }
    # The push and scheduler accounts get run.invoker from the build, on their services.
    assert account("push") not in granted
    assert account("scheduler") not in granted
    # The Pub/Sub service agent mints the push account's OIDC tokens, on every project.
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert granted[agent] == {
        (
            "iam service-accounts",
            f"duo-telephony-push@{PROJECT}.iam.gserviceaccount.com",
            "roles/iam.serviceAccountTokenCreator",
        )
    }
    deployer = granted[account("deployer")]
    assert {(kind, role) for kind, _, role in deployer if kind.startswith("projects")} == {
        ("projects", "roles/run.admin"),
        ("projects", "roles/cloudscheduler.admin"),
        ("projects", "roles/logging.logWriter"),
        # Log-based metrics only, not logging.configWriter (sinks, exclusions, buckets).
        ("projects", f"projects/{PROJECT}/roles/duoTelephonyLogMetrics"),
        ("projects", "roles/monitoring.alertPolicyEditor"),
        ("projects", "roles/monitoring.dashboardEditor"),
        ("projects", "roles/monitoring.notificationChannelViewer"),
        ("projects if database", "roles/datastore.indexAdmin"),
    }
    # The secret's metadata (the build checks it has an enabled version), never its value.
    assert {(kind, resource, role) for kind, resource, role in deployer if kind == "secrets"} == {
        ("secrets", "duo-skey", "roles/secretmanager.viewer")
    }
    assert {resource for kind, resource, role in deployer if role == "roles/pubsub.admin"} == {
        "duo-telephony-windows",
        "duo-telephony-batches",
        "duo-telephony-dead-letters",
        "duo-telephony-plans",
        "duo-telephony-windows-fetcher",
        "duo-telephony-batches-writer",
        "duo-telephony-plans-planner",
    }


def test_the_secret_is_created_empty(runs: Runs) -> None:
    creates = [c for c in plan(runs.first_calls) if c.words[:2] == ["secrets", "create"]]
    assert len(creates) == 1
    assert creates[0].flag("data-file") is None
    assert not any("versions" in call.words for call in runs.first_calls)


def test_the_bucket_gets_a_lifecycle_rule_only_when_asked(runs: Runs, cloud: Cloud) -> None:
    bucket = runs.cloud.state()["resources"][f"storage buckets|gs://{PROJECT}-duo-telephony"]
    assert bucket["lifecycle_config.rule[0].condition.age"] == LIFECYCLE_DAYS
    # The staging bucket holds only past builds' sources: always a 30-day rule.
    staging = runs.cloud.state()["resources"][f"storage buckets|gs://{PROJECT}-duo-telephony-build"]
    assert staging["lifecycle_config.rule[0].condition.age"] == "30"

    result, _ = cloud.run(script("bootstrap.sh"), "--dry-run")
    creates = [
        line
        for line in dry_plan_lines(result.stdout)
        if line.startswith("gcloud storage buckets create")
    ]
    assert [line.split()[4] for line in creates] == [
        f"gs://{PROJECT}-duo-telephony",
        f"gs://{PROJECT}-duo-telephony-build",
    ]
    assert "lifecycle" not in creates[0]
    assert "--lifecycle-file=" in creates[1] and "lifecycle-30.json" in creates[1]
    for line in creates:
        assert "--uniform-bucket-level-access --public-access-prevention" in line


def test_the_image_repository_keeps_the_newest_images_and_deletes_old_ones(runs: Runs) -> None:
    repository = runs.cloud.state()["resources"]["artifacts repositories|duo-telephony"]
    assert json.loads(repository["cleanupPolicies"]) == [
        {
            "name": "keep-newest",
            "action": {"type": "Keep"},
            "mostRecentVersions": {"keepCount": 10},
        },
        {
            "name": "delete-older",
            "action": {"type": "Delete"},
            "condition": {"tagState": "any", "olderThan": "30d"},
        },
    ]


def test_a_budget_is_made_once_when_asked_and_tells_the_channel(cloud: Cloud) -> None:
    cloud.seed({f"billing projects|{PROJECT}": {"billingAccountName": "billingAccounts/0A-1B"}})
    first, calls = cloud.run(script("bootstrap.sh"), "--budget-usd", "75")
    assert first.returncode == 0, first.stderr
    [budget] = [c for c in plan(calls) if c.words[:3] == ["billing", "budgets", "create"]]
    assert budget.flag("billing-account") == "0A-1B"
    assert budget.flag("budget-amount") == "75USD"
    assert budget.flag("filter-projects") == f"projects/{PROJECT}"
    assert (
        budget.flag("notifications-rule-monitoring-notification-channels") == (cloud.channels()[0])
    )
    again, calls = cloud.run(script("bootstrap.sh"), "--budget-usd", "75")
    assert again.returncode == 0, again.stderr
    assert not [c for c in plan(calls) if c.words[:2] == ["billing", "budgets"]]


def test_a_changed_lifecycle_age_updates_the_existing_bucket(runs: Runs) -> None:
    result, calls = runs.cloud.run(script("bootstrap.sh"), "--lifecycle-days", "500")
    assert result.returncode == 0, result.stderr
    assert [c.words[:3] for c in plan(calls) if c.words[0] == "storage"] == [
        ["storage", "buckets", "update"]
    ]
    bucket = runs.cloud.state()["resources"][f"storage buckets|gs://{PROJECT}-duo-telephony"]
    assert bucket["lifecycle_config.rule[0].condition.age"] == "500"


@pytest.mark.parametrize("days", ["0", "-3", "ten", ""])
def test_a_lifecycle_age_that_is_not_a_whole_number_of_days_is_refused(
    cloud: Cloud, days: str
) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), "--lifecycle-days", days)
    assert result.returncode == 2
    assert calls == []


def test_names_are_the_builds_defaults(runs: Runs) -> None:
    defaults = cloudbuild()["substitutions"]
    names: dict[str, list[str]] = {}
    for call in plan(runs.first_calls):
        if "create" in call.words and call.words[0] != "services":
            at = call.words.index("create")
            names.setdefault(" ".join(call.words[:at]), []).extend(call.words[at + 1 : at + 2])
    assert names["pubsub topics"] == [
        defaults["_WINDOW_TOPIC"],
        defaults["_BATCH_TOPIC"],
        defaults["_DEAD_LETTER_TOPIC"],
        defaults["_PLAN_TOPIC"],
    ]
    assert names["pubsub subscriptions"] == [
        f"{defaults['_WINDOW_TOPIC']}-fetcher",
        f"{defaults['_BATCH_TOPIC']}-writer",
        defaults["_DEAD_LETTER_TOPIC"],
        f"{defaults['_PLAN_TOPIC']}-planner",
    ]
    assert set(names["iam service-accounts"]) == {
        defaults[key] for key in ("_PLANNER_SA", "_FETCHER_SA", "_WRITER_SA", "_PUSH_SA")
    } | {defaults["_SCHEDULER_SA"], "duo-telephony-deployer"}
    assert names["artifacts repositories"] == [defaults["_REPOSITORY"], "dockerhub"]
    assert names["secrets"] == [defaults["_DUO_SKEY_SECRET"]]
    regions = {c.flag("location") for c in plan(runs.first_calls) if c.flag("location")}
    assert regions == {defaults["_REGION"]}


def test_a_datastore_mode_database_stops_the_bootstrap(cloud: Cloud) -> None:
    cloud.seed(
        {"firestore databases|duo-telephony": {"name": "duo-telephony", "type": "DATASTORE_MODE"}}
    )
    result, calls = cloud.run(script("bootstrap.sh"))
    assert result.returncode == 1
    assert "native mode" in result.stderr
    # It stops at the check: nothing after it, nothing made in Firestore.
    assert calls[-1].words[:3] == ["firestore", "databases", "describe"]
    assert calls[-1].flag("format").startswith("value(type,")


def test_the_dry_run_shows_the_database_channel_grants_role_and_regional_secret(
    cloud: Cloud,
) -> None:
    result, _ = cloud.run(script("bootstrap.sh"), "--dry-run", settings={})
    printed = [shlex.split(line) for line in dry_plan_lines(result.stdout)]
    assert [
        "gcloud", "firestore", "databases", "create", "--database=duo-telephony",
        "--location=us-central1", "--type=firestore-native", "--enable-pitr",
        "--delete-protection", "--project=PROJECT_ID",
    ] in printed  # fmt: skip
    assert [
        "gcloud", "beta", "monitoring", "channels", "create", "--type=email",
        "--display-name=duo-telephony: NOTIFICATION_EMAIL",
        "--channel-labels=email_address=NOTIFICATION_EMAIL", "--project=PROJECT_ID",
    ] in printed  # fmt: skip
    assert [
        "gcloud", "iam", "service-accounts", "add-iam-policy-binding",
        "duo-telephony-push@PROJECT_ID.iam.gserviceaccount.com",
        "--member=serviceAccount:service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com",
        "--role=roles/iam.serviceAccountTokenCreator", "--project=PROJECT_ID",
    ] in printed  # fmt: skip
    assert [
        "gcloud", "iam", "roles", "create", "duoTelephonyLogMetrics", "--project=PROJECT_ID",
        "--title=duo-telephony log-based metrics",
        "--permissions=logging.logMetrics.create,logging.logMetrics.get,"
        "logging.logMetrics.update",
    ] in printed  # fmt: skip
    assert [
        "gcloud", "secrets", "create", "duo-skey", "--replication-policy=user-managed",
        "--locations=us-central1", "--project=PROJECT_ID",
    ] in printed  # fmt: skip
    assert not any("(default)" in " ".join(argv) for argv in printed)


def test_a_real_run_without_anyone_to_notify_stops_before_calling_gcloud(cloud: Cloud) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), settings={"PROJECT_ID": PROJECT})
    assert result.returncode == 2
    assert "NOTIFICATION_EMAIL is not set: the alerts would notify nobody" in result.stderr
    assert calls == []


def test_the_channel_is_made_once_and_named_in_the_build_command(runs: Runs) -> None:
    made = [
        c for c in plan(runs.first_calls) if c.words[:3] == ["monitoring", "channels", "create"]
    ]
    assert [c.flag("channel-labels") for c in made] == ["email_address=oncall@acme.example"]
    channel = f"projects/{PROJECT_NUMBER}/notificationChannels/1"
    assert runs.cloud.channels() == [channel]
    for result in (runs.first, runs.second):
        assert f"_NOTIFICATION_CHANNEL={channel}," in result.stdout


def test_a_given_channel_is_used_as_it_is(cloud: Cloud) -> None:
    channel = f"projects/{PROJECT}/notificationChannels/77"
    cloud.seed({f"monitoring channels|{channel}": {"name": channel}})
    result, calls = cloud.run(
        script("bootstrap.sh"), settings={"PROJECT_ID": PROJECT, "NOTIFICATION_CHANNEL": channel}
    )
    assert result.returncode == 0, result.stderr
    assert not [c for c in plan(calls) if c.words[:2] == ["monitoring", "channels"]]
    assert f"_NOTIFICATION_CHANNEL={channel}," in result.stdout


def test_a_given_channel_that_does_not_exist_stops_the_bootstrap(cloud: Cloud) -> None:
    channel = f"projects/{PROJECT}/notificationChannels/404"
    result, _ = cloud.run(
        script("bootstrap.sh"), settings={"PROJECT_ID": PROJECT, "NOTIFICATION_CHANNEL": channel}
    )
    assert result.returncode == 2
    assert f"NOTIFICATION_CHANNEL {channel} is not a channel of {PROJECT}" in result.stderr
    assert cloud.state()["resources"] == {}  # nothing made (the APIs enabled only)


def test_an_existing_database_gets_recovery_and_delete_protection(cloud: Cloud) -> None:
    cloud.seed(
        {"firestore databases|duo-telephony": {"name": "duo-telephony", "type": "FIRESTORE_NATIVE"}}
    )
    result, calls = cloud.run(script("bootstrap.sh"))
    assert result.returncode == 0, result.stderr
    [update] = [c for c in plan(calls) if c.words[:2] == ["firestore", "databases"]]
    assert update.words[2] == "update"
    assert update.flag("enable-pitr") == update.flag("delete-protection") == ""
    database = cloud.state()["resources"]["firestore databases|duo-telephony"]
    assert database["pointInTimeRecoveryEnablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    assert database["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"


def test_a_log_metrics_role_deleted_by_a_teardown_is_undeleted(cloud: Cloud) -> None:
    cloud.seed({"iam roles|duoTelephonyLogMetrics": {"name": "x", "deleted": "True"}})
    result, calls = cloud.run(script("bootstrap.sh"))
    assert result.returncode == 0, result.stderr
    assert [c.words for c in plan(calls) if c.words[:2] == ["iam", "roles"]] == [
        ["iam", "roles", "undelete", "duoTelephonyLogMetrics"]
    ]


KEY = f"projects/{PROJECT}-kms/locations/us-central1/keyRings/duo/cryptoKeys/duo"


def test_a_kms_key_encrypts_what_is_made_once_its_agents_may_use_it(cloud: Cloud) -> None:
    cloud.seed({f"kms keys|{KEY}": {"name": KEY}})
    result, calls = cloud.run(script("bootstrap.sh"), "--kms-key", KEY)
    assert result.returncode == 0, result.stderr
    ran = plan(calls)
    key_flags = {
        ("firestore", "databases"): "kms-key-name",
        ("artifacts", "repositories"): "kms-key",
        ("storage", "buckets"): "default-encryption-key",
        ("pubsub", "topics"): "topic-encryption-key",
    }
    creates = [c for c in ran if "create" in c.words and tuple(c.words[:2]) in key_flags]
    assert len(creates) == 1 + 2 + 2 + 4
    for call in creates:
        assert call.flag(key_flags[tuple(call.words[:2])]) == KEY, call.line
    first_create = ran.index(creates[0])
    granted = {
        c.flag("member")
        for c in ran[:first_create]
        if c.words[:3] == ["kms", "keys", "add-iam-policy-binding"]
        and c.flag("role") == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    }
    assert granted == {
        f"serviceAccount:service-{PROJECT_NUMBER}@{agent}.iam.gserviceaccount.com"
        for agent in ("gcp-sa-pubsub", "gcp-sa-artifactregistry", "gcp-sa-firestore")
    }
    assert any(c.flag("authorize-cmek") == KEY for c in ran[:first_create])


def test_a_kms_key_that_is_not_a_key_name_is_refused_before_any_call(cloud: Cloud) -> None:
    result, calls = cloud.run(script("bootstrap.sh"), "--kms-key", "duo-key")
    assert result.returncode == 2
    assert "--kms-key takes projects/P/locations/L/keyRings/R/cryptoKeys/K" in result.stderr
    assert calls == []


# The base image, as Docker Hub's python:VERSION-slim reaches the project through its remote
# repository (the recorder's digest of a tag it was not told about).
BASE_TAG = f"python:{(ROOT / '.python-version').read_text().strip()}-slim"
BASE_PATH = f"us-central1-docker.pkg.dev/{PROJECT}/dockerhub/library"


def pinned_base(output: str) -> str:
    """The _BASE_IMAGE of the build command the bootstrap prints."""
    [base] = re.findall(r"_BASE_IMAGE=([^,\s]+),", output)
    return base


def base_digest_lookups(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.words[:4] == ["artifacts", "docker", "images", "describe"]]


def test_the_base_image_is_pinned_by_digest_through_a_remote_repository(runs: Runs) -> None:
    [remote] = [
        c
        for c in plan(runs.first_calls)
        if c.words[:4] == ["artifacts", "repositories", "create", "dockerhub"]
    ]
    assert remote.flag("mode") == "remote-repository"
    assert remote.flag("remote-docker-repo") == "docker-hub"
    assert remote.flag("repository-format") == "docker"
    # The build's account reads it, and only it: it pushes to the images' repository alone.
    assert {
        (resource, role)
        for kind, resource, member, role in bindings(plan(runs.first_calls))
        if kind == "artifacts repositories" and member == account("deployer")
    } == {
        ("duo-telephony", "roles/artifactregistry.writer"),
        ("dockerhub", "roles/artifactregistry.reader"),
    }
    [lookup] = base_digest_lookups(runs.first_calls)
    assert lookup.words[4] == f"{BASE_PATH}/{BASE_TAG}"
    digest = hashlib.sha256(f"library/{BASE_TAG}".encode()).hexdigest()
    assert pinned_base(runs.first.stdout) == f"{BASE_PATH}/python@sha256:{digest}"


def test_a_second_run_keeps_the_pin_without_asking_docker_hub(runs: Runs) -> None:
    assert pinned_base(runs.second.stdout) == pinned_base(runs.first.stdout)
    assert base_digest_lookups(runs.second_calls) == []


def test_the_pin_moves_only_with_repin_base_image(cloud: Cloud) -> None:
    first, _ = cloud.run(script("bootstrap.sh"))
    assert first.returncode == 0, first.stderr
    newer = "sha256:" + "b" * 64
    cloud.state_file.write_text(
        json.dumps(cloud.state() | {"docker_hub": {f"library/{BASE_TAG}": newer}})
    )
    kept, _ = cloud.run(script("bootstrap.sh"))
    assert kept.returncode == 0, kept.stderr
    assert pinned_base(kept.stdout) == pinned_base(first.stdout) != f"{BASE_PATH}/python@{newer}"

    moved, calls = cloud.run(script("bootstrap.sh"), "--repin-base-image")
    assert moved.returncode == 0, moved.stderr
    assert len(base_digest_lookups(calls)) == 1
    assert pinned_base(moved.stdout) == f"{BASE_PATH}/python@{newer}"
    again, _ = cloud.run(script("bootstrap.sh"))
    assert pinned_base(again.stdout) == f"{BASE_PATH}/python@{newer}"


def test_a_base_image_that_cannot_be_resolved_stops_the_bootstrap(cloud: Cloud) -> None:
    denial = "ERROR: NOT_FOUND: Docker Hub did not answer"
    cloud.state_file.write_text(json.dumps({"deny": [["docker images describe", denial]]}))
    result, _ = cloud.run(script("bootstrap.sh"))
    assert result.returncode == 1
    assert f"could not resolve {BASE_TAG} through {BASE_PATH}" in result.stderr
    assert "_BASE_IMAGE" not in result.stdout
