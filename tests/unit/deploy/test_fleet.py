"""Deploying a fleet (docs/deploy.md, "Deploying a fleet"): the bootstrap makes and grants each
secret the sources file and the MSP parent name, and the build checks them and passes the
fleet to the services. Against the recording gcloud."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.unit.deploy.conftest import PROJECT, ROOT, Cloud, build_env, cloudbuild, plan, script

ACCESSOR = "roles/secretmanager.secretAccessor"


def account(name: str) -> str:
    return f"serviceAccount:duo-telephony-{name}@{PROJECT}.iam.gserviceaccount.com"


def source(n: int) -> dict[str, str]:
    return {
        "id": f"customer-{n}",
        "api_host": f"api-0000000{n}.duosecurity.com",
        "ikey": f"DI{n:018d}",
        "skey_secret": f"projects/{PROJECT}/secrets/duo-skey-customer-{n}/versions/latest",
    }


PARENT = {
    "id": "msp",
    "api_host": "api-99999999.duosecurity.com",
    "ikey": "DI999999999999999999",
    "skey_secret": f"projects/{PROJECT}/secrets/duo-skey-msp/versions/1",
}


def write(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def accessors(cloud: Cloud, secret: str) -> set[str]:
    """Who holds secretAccessor on SECRET, as its IAM policy says."""
    result, _ = cloud.run(
        f"gcloud secrets get-iam-policy {secret} --project={PROJECT} "
        "--flatten='bindings[].members' --format='value(bindings.role,bindings.members)'"
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    return {member for role, member in rows if role == ACCESSOR}


def bootstrap(cloud: Cloud, *args: str) -> list:
    result, calls = cloud.run(script("bootstrap.sh"), *args)
    assert result.returncode == 0, result.stderr
    return plan(calls)


def test_each_sources_secret_is_made_and_readable_by_the_fetcher_alone(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    sources = write(tmp_path / "sources.json", [source(1), source(2)])
    changes = bootstrap(cloud, "--sources-file", str(sources))
    creates = [c for c in changes if c.words[:2] == ["secrets", "create"]]
    assert {c.words[2] for c in creates} == {
        "duo-skey",
        "duo-skey-customer-1",
        "duo-skey-customer-2",
    }
    for call in creates:  # regional and empty, as the single account's
        assert call.flag("replication-policy") == "user-managed"
        assert call.flag("locations") == "us-central1"
    for n in (1, 2):
        assert accessors(cloud, f"duo-skey-customer-{n}") == {account("fetcher")}


def test_a_third_account_is_one_new_secret_and_one_new_grant(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    sources = write(tmp_path / "sources.json", [source(1), source(2)])
    bootstrap(cloud, "--sources-file", str(sources))
    write(sources, [source(1), source(2), source(3)])
    # Besides the Pub/Sub agent's identity, which every run asks for (it changes nothing):
    changes = [
        c for c in bootstrap(cloud, "--sources-file", str(sources)) if "identity" not in c.words
    ]
    assert [c.words[:3] for c in changes] == [
        ["secrets", "create", "duo-skey-customer-3"],
        ["secrets", "add-iam-policy-binding", "duo-skey-customer-3"],
        ["secrets", "add-iam-policy-binding", "duo-skey-customer-3"],
    ]
    assert accessors(cloud, "duo-skey-customer-3") == {account("fetcher")}


def test_the_msp_parents_secret_is_read_by_the_planner_and_the_fetcher(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    parent = write(tmp_path / "parent.json", PARENT)
    result, _ = cloud.run(script("bootstrap.sh"), "--msp-parent", str(parent))
    assert result.returncode == 0, result.stderr
    # The planner lists the children with it; the fetcher reads them with it.
    assert accessors(cloud, "duo-skey-msp") == {account("planner"), account("fetcher")}
    # Its next steps say how to give it its value.
    assert f"gcloud secrets versions add duo-skey-msp --data-file=- --project={PROJECT}" in (
        result.stdout
    )


def test_the_dry_run_shows_each_fleet_secret_and_its_grants(tmp_path: Path) -> None:
    sources = write(tmp_path / "sources.json", [source(1)])
    result, calls = Cloud(tmp_path).run(
        script("bootstrap.sh"), "--dry-run", "--sources-file", str(sources), settings={}
    )
    assert result.returncode == 0, result.stderr
    assert calls == []
    lines = result.stdout.splitlines()
    assert any(line.startswith("gcloud secrets create duo-skey-customer-1 ") for line in lines)
    grants = [line for line in lines if "add-iam-policy-binding duo-skey-customer-1 " in line]
    assert any(f"--role={ACCESSOR}" in g and "duo-telephony-fetcher@" in g for g in grants)
    assert not any(f"--role={ACCESSOR}" in g and "duo-telephony-planner@" in g for g in grants)


def test_a_bad_sources_file_stops_the_bootstrap_before_any_call(tmp_path: Path) -> None:
    broken = dict(source(1), skey_secret="not-a-version")
    sources = write(tmp_path / "sources.json", [broken])
    result, calls = Cloud(tmp_path).run(script("bootstrap.sh"), "--sources-file", str(sources))
    assert result.returncode == 2
    assert calls == []
    assert "DUO_SOURCES_FILE[0].skey_secret is not a secret version" in result.stderr


def workspace(tmp_path: Path, sources: list | None, parent: dict | None) -> Path:
    """A checkout with the fleet's files in deploy/, as the build sees it."""
    work = tmp_path / "workspace"
    for name in ("fleet_secrets.py",):
        (work / "deploy").mkdir(parents=True, exist_ok=True)
        (work / "deploy" / name).symlink_to(ROOT / "deploy" / name)
    if sources is not None:
        write(work / "deploy" / "sources.json", sources)
    if parent is not None:
        write(work / "deploy" / "msp-parent.json", parent)
    return work


def preflight(cloud: Cloud, work: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    [step] = [s for s in cloudbuild()["steps"] if s["id"] == "preflight"]
    env = build_env(_NOTIFICATION_CHANNEL=",".join(cloud.channels())) | overrides
    result, calls = cloud.run(step["script"], settings=env, cwd=work)
    assert plan(calls) == []
    return result


def fleet_cloud(tmp_path: Path, work: Path) -> Cloud:
    """A project bootstrapped with the checkout's fleet files."""
    cloud = Cloud(tmp_path)
    args = []
    for option, name in (("--sources-file", "sources.json"), ("--msp-parent", "msp-parent.json")):
        if (work / "deploy" / name).exists():
            args += [option, str(work / "deploy" / name)]
    bootstrap(cloud, *args)
    return cloud


def add_version(cloud: Cloud, secret: str) -> None:
    result, _ = cloud.run(f"gcloud secrets versions add {secret} --data-file=- --project={PROJECT}")
    assert result.returncode == 0, result.stderr


def test_the_preflight_passes_when_every_fleet_secret_has_a_version(tmp_path: Path) -> None:
    work = workspace(tmp_path, [source(1), source(2)], PARENT)
    cloud = fleet_cloud(tmp_path, work)
    for secret in ("duo-skey-customer-1", "duo-skey-customer-2", "duo-skey-msp"):
        add_version(cloud, secret)
    # A fleet alone: no single account, so no duo-skey version is needed.
    result = preflight(cloud, work, _DUO_API_HOST="", _DUO_IKEY="")
    assert result.returncode == 0, result.stderr


def test_a_fleet_secret_without_a_version_stops_the_build_naming_the_source(
    tmp_path: Path,
) -> None:
    work = workspace(tmp_path, [source(1), source(2)], PARENT)
    cloud = fleet_cloud(tmp_path, work)
    add_version(cloud, "duo-skey-customer-1")
    add_version(cloud, "duo-skey-msp")
    result = preflight(cloud, work, _DUO_API_HOST="", _DUO_IKEY="")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("preflight: source customer-2 (file): secret ")
    assert "duo-skey-customer-2" in line


def test_the_msp_parents_secret_without_its_version_stops_the_build(tmp_path: Path) -> None:
    work = workspace(tmp_path, None, PARENT)
    cloud = fleet_cloud(tmp_path, work)
    result = preflight(cloud, work, _DUO_API_HOST="", _DUO_IKEY="")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("preflight: source msp (parent): secret ")


def settings_step(work: Path, **overrides: str) -> dict[str, dict[str, str]]:
    """Runs the settings step's Python in WORK (the checkout) and reads the services' env."""
    [step] = [s for s in cloudbuild()["steps"] if s["id"] == "settings"]
    program = re.search(r"<<'EOF'\n(.*?)\nEOF\n", step["script"], re.S).group(1)
    env = build_env(**overrides) | {"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, cwd=work, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return {
        name: json.loads((work / ".deploy" / f"{name}.yaml").read_text())
        for name in ("planner", "fetcher", "writer")
    }


def test_the_build_passes_the_fleet_to_the_planner_and_the_fetcher(tmp_path: Path) -> None:
    work = workspace(tmp_path, [source(1), source(2)], PARENT)
    envs = settings_step(work, _DUO_API_HOST="", _DUO_IKEY="")
    for name in ("planner", "fetcher"):
        assert envs[name]["DUO_SOURCES_FILE"] == "/app/deploy/sources.json"
        assert json.loads(envs[name]["DUO_MSP_PARENT"]) == PARENT
        assert "DUO_API_HOST" not in envs[name]
    assert "DUO_SKEY_SECRET" not in envs["fetcher"]


def test_a_fleet_beside_the_single_account_keeps_it(tmp_path: Path) -> None:
    envs = settings_step(workspace(tmp_path, [source(1)], None))
    assert envs["planner"]["DUO_API_HOST"] == "api-12345678.duosecurity.com"
    assert (
        envs["fetcher"]["DUO_SKEY_SECRET"] == f"projects/{PROJECT}/secrets/duo-skey/versions/latest"
    )
    assert envs["fetcher"]["DUO_SOURCES_FILE"] == "/app/deploy/sources.json"


def test_a_single_account_build_passes_no_fleet(tmp_path: Path) -> None:
    envs = settings_step(workspace(tmp_path, None, None))
    for env in envs.values():
        assert not {"DUO_SOURCES_FILE", "DUO_MSP_PARENT"} & set(env)
    assert "DUO_API_HOST" not in envs["planner"]


def secrets(cloud: Cloud) -> set[str]:
    return {key.split("|")[1] for key in cloud.state()["resources"] if key.startswith("secrets|")}


def test_the_teardown_removes_each_fleet_secret_the_bootstrap_made(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path)
    files = [
        "--sources-file",
        str(write(tmp_path / "sources.json", [source(1), source(2)])),
        f"--msp-parent={write(tmp_path / 'parent.json', PARENT)}",
    ]
    bootstrap(cloud, *files)
    assert {"duo-skey-customer-1", "duo-skey-customer-2", "duo-skey-msp"} <= secrets(cloud)
    result, _ = cloud.run(script("teardown.sh"), *files)
    assert result.returncode == 0, result.stderr
    assert secrets(cloud) == set()
    # Already gone: a second teardown skips them.
    result, calls = cloud.run(script("teardown.sh"), *files)
    assert result.returncode == 0, result.stderr
    assert plan(calls) == []


def test_the_teardowns_dry_run_shows_each_fleet_secrets_delete(tmp_path: Path) -> None:
    sources = write(tmp_path / "sources.json", [source(1)])
    result, calls = Cloud(tmp_path).run(
        script("teardown.sh"), "--dry-run", "--sources-file", str(sources), settings={}
    )
    assert result.returncode == 0, result.stderr
    assert calls == []
    assert "gcloud secrets delete duo-skey-customer-1 --quiet --project=PROJECT_ID" in (
        result.stdout.splitlines()
    )


def test_a_bad_sources_file_stops_the_teardown_before_any_call(tmp_path: Path) -> None:
    sources = write(tmp_path / "sources.json", [dict(source(1), skey_secret="not-a-version")])
    result, calls = Cloud(tmp_path).run(script("teardown.sh"), "--sources-file", str(sources))
    assert result.returncode == 2
    assert calls == []
    assert "DUO_SOURCES_FILE[0].skey_secret is not a secret version" in result.stderr
