"""deploy/teardown.sh, on a project set up by the bootstrap and one build, with monitoring
objects of its own and of others."""

from __future__ import annotations

import ast

import pytest

from tests.unit.deploy.conftest import PROJECT, ROOT, Cloud, plan, run_build_steps, script

BUCKET = f"storage buckets|gs://{PROJECT}-duo-telephony"
OURS = {
    "logging metrics|duo_telephony_records_landed": {"name": "duo_telephony_records_landed"},
    "monitoring policies|projects/acme-duo/alertPolicies/1": {
        "name": "projects/acme-duo/alertPolicies/1",
        "displayName": "duo-telephony: pipeline stalled",
    },
    "monitoring dashboards|projects/1/dashboards/d1": {
        "name": "projects/1/dashboards/d1",
        "displayName": "duo-telephony",
    },
}
THEIRS = {
    "logging metrics|billing_errors": {"name": "billing_errors"},
    "monitoring policies|projects/acme-duo/alertPolicies/2": {
        "name": "projects/acme-duo/alertPolicies/2",
        "displayName": "billing: errors",
    },
    "monitoring dashboards|projects/1/dashboards/d2": {
        "name": "projects/1/dashboards/d2",
        "displayName": "duo-telephony (copy)",
    },
}


@pytest.fixture(scope="module")
def deployed_state(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The recorded project after the bootstrap and one build, with monitoring objects."""
    cloud = Cloud(tmp_path_factory.mktemp("deployed"))
    bootstrap, _ = cloud.run(script("bootstrap.sh"))
    assert bootstrap.returncode == 0, bootstrap.stderr
    cloud.add_secret_version()
    results, _ = run_build_steps(cloud, cloud.tmp)
    assert all(result.returncode == 0 for result in results)
    cloud.seed(OURS | THEIRS)
    return cloud.state_file.read_text()


@pytest.fixture
def deployed(cloud: Cloud, deployed_state: str) -> Cloud:
    cloud.state_file.write_text(deployed_state)
    return cloud


def test_dry_run_needs_no_settings_and_calls_nothing(cloud: Cloud) -> None:
    result, calls = cloud.run(script("teardown.sh"), "--dry-run", settings={})
    assert result.returncode == 0, result.stderr
    assert calls == []
    lines = result.stdout.splitlines()
    assert all(line.startswith("gcloud ") for line in lines)
    assert "gcloud storage rm --recursive gs://PROJECT_ID-duo-telephony-build" in "\n".join(lines)
    # The feed's bucket and the Firestore data stay unless asked.
    assert not any("gs://PROJECT_ID-duo-telephony " in line and " rm " in line for line in lines)
    assert not any("bulk-delete" in line for line in lines)


@pytest.fixture(scope="module")
def torn_down(deployed_state: str, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The deployed project after one teardown, and the second teardown's result and calls."""
    cloud = Cloud(tmp_path_factory.mktemp("torn-down"))
    cloud.state_file.write_text(deployed_state)
    first, _ = cloud.run(script("teardown.sh"))
    assert first.returncode == 0, first.stderr
    state = cloud.state()
    second, calls = cloud.run(script("teardown.sh"))
    return state, second, calls


def test_it_removes_what_the_bootstrap_and_the_build_made_but_the_bucket(torn_down: tuple) -> None:
    state, _, _ = torn_down
    left = set(state["resources"])
    # The pipeline's database (delete-protected) and its TTL policies, and the notification
    # channel, which may tell of other things too.
    assert left == {BUCKET, "firestore databases|duo-telephony"} | set(THEIRS) | {
        "firestore indexes fields|expire_at@windows@duo-telephony",
        "firestore indexes fields|expire_at@batches@duo-telephony",
        "monitoring channels|projects/123456789012/notificationChannels/1",
    }
    # No binding of a deleted account lingers on the project or the bucket kept.
    assert [b for b in state["bindings"] if "duo-telephony-" in b[1]] == []


def test_a_second_teardown_changes_nothing(torn_down: tuple) -> None:
    _, second, calls = torn_down
    assert second.returncode == 0, second.stderr
    assert plan(calls) == []


def test_the_bucket_and_the_firestore_data_go_when_asked(deployed: Cloud) -> None:
    result, calls = deployed.run(
        script("teardown.sh"), "--delete-bucket", "--delete-firestore-data"
    )
    assert result.returncode == 0, result.stderr
    assert BUCKET not in deployed.state()["resources"]
    bulk = [call for call in plan(calls) if call.words[:2] == ["firestore", "bulk-delete"]]
    assert len(bulk) == 1
    # Only in the pipeline's own database: the project's (default) one is someone else's.
    assert bulk[0].flag("database") == "duo-telephony"
    assert set(bulk[0].flag("collection-ids").split(",")) == pipeline_collections()


def pipeline_collections() -> set[str]:
    """Collection ids in shared/gcp: ``.collection("x")`` literals, and the constants that
    name the root collections (ROOT, DEFAULT_COLLECTION)."""
    found = set()
    for path in (ROOT / "shared" / "gcp").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "collection"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
            if (
                isinstance(node, ast.Assign)
                and any(
                    isinstance(t, ast.Name) and t.id in ("ROOT", "DEFAULT_COLLECTION")
                    for t in node.targets
                )
                and isinstance(node.value, ast.Constant)
            ):
                found.add(node.value.value)
    return found
