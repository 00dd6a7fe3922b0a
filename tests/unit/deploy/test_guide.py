"""docs/deploy.md keeps the fixes a first deploy depends on, and the README points at it."""

from __future__ import annotations

import re

from tests.unit.deploy.conftest import EMAIL, PROJECT, ROOT, Cloud, run_build_steps, script

GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def commands(text: str) -> list[str]:
    """Each gcloud command of the guide's bash blocks, continuation lines joined."""
    found = []
    for block in bash_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        found += [line.lstrip("# ") for line in joined.splitlines() if "gcloud " in line]
    return found


def test_the_guide_is_variables_bootstrap_secret_build_feed_check() -> None:
    headings = re.findall(r"^## (.+)$", GUIDE, re.M)
    assert headings[:6] == [
        "1. Set the variables",
        "2. Run the bootstrap",
        "3. Add the secret's value",
        "4. Run the build",
        "5. Create the SecOps feed",
        "6. Check",
    ]


def test_every_build_runs_as_the_deployer_in_the_region_and_names_who_the_alerts_notify() -> None:
    submits = [c for c in commands(GUIDE) if "builds submit" in c]
    assert submits
    for command in submits:
        assert "--service-account=" in command
        assert "duo-telephony-deployer@" in command
        assert '--region="$REGION"' in command
        assert "_NOTIFICATION_CHANNEL=$NOTIFICATION_CHANNEL" in command
        assert "_BASE_IMAGE=$BASE_IMAGE" in command


def test_the_log_fallback_is_the_beta_command() -> None:
    assert "gcloud beta builds log --stream" in GUIDE
    assert not re.search(r"gcloud builds log\b", GUIDE)


def test_the_feed_is_never_given_a_role_that_can_create_objects() -> None:
    grants = [c for c in commands(GUIDE) if "SECOPS_SA" in c and "--role=" in c]
    assert grants
    for command in grants:
        assert "legacyBucketWriter" not in command
        assert "objectCreator" not in command
    deleter = [c for c in commands(GUIDE) if "gcloud iam roles create" in c]
    assert len(deleter) == 1
    assert "--permissions=storage.objects.delete " in deleter[0] + " "


def test_the_readmes_first_screen_links_the_guide() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:24])
    assert "(docs/deploy.md)" in first_screen
    assert "deploy/bootstrap.sh" in first_screen


def section(heading: str) -> str:
    return GUIDE.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_rollback_covers_the_three_services_senders_first_and_the_way_back() -> None:
    rollback = GUIDE.split("\n### Rolling back\n", 1)[1].split("\n## ", 1)[0]
    [back, latest] = bash_blocks(rollback)
    rolled = re.findall(r"update-traffic duo-telephony-(\w+) .*--to-revisions=", back)
    assert rolled == ["planner", "fetcher", "writer"]
    assert "for name in writer fetcher planner; do" in latest
    assert "--to-latest" in latest


def test_the_six_steps_deploy_from_zero(cloud: Cloud) -> None:
    settings = {"PROJECT_ID": PROJECT, "NOTIFICATION_EMAIL": EMAIL, "REGION": "us-central1"}
    [bootstrap] = bash_blocks(section("2. Run the bootstrap"))
    assert "deploy/bootstrap.sh               #" in bootstrap
    result, _ = cloud.run(script("bootstrap.sh"), settings=settings)
    assert result.returncode == 0, result.stderr
    bootstrap_output = result.stdout

    [secret, *_] = bash_blocks(section("3. Add the secret's value"))
    result, _ = cloud.run(secret, settings=settings)
    assert result.returncode == 0, result.stderr

    [build, *_] = bash_blocks(section("4. Run the build"))
    guide_env = settings | {
        "BUCKET": f"{PROJECT}-duo-telephony",
        "DUO_API_HOST": "api-12345678.duosecurity.com",
        "DUO_IKEY": "DIXXXXXXXXXXXXXXXXXX",
    }
    result, calls = cloud.run(build, settings=guide_env)
    assert result.returncode == 0, result.stderr
    [submit] = [call for call in calls if "submit" in call.words]
    substitutions = dict(pair.split("=", 1) for pair in submit.flag("substitutions").split(","))
    assert substitutions["_NOTIFICATION_CHANNEL"] == cloud.channels()[0]
    # The base image the bootstrap pinned and printed.
    assert f"_BASE_IMAGE={substitutions['_BASE_IMAGE']}," in bootstrap_output
    assert "@sha256:" in substitutions["_BASE_IMAGE"]

    results, _ = run_build_steps(cloud, cloud.tmp, **substitutions)
    assert [r.returncode for r in results] == [0] * len(results), [r.stderr for r in results]
