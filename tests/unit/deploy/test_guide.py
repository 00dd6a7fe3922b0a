"""docs/deploy.md keeps the fixes a first deploy depends on, and the README points at it."""

from __future__ import annotations

import re

from tests.unit.deploy.conftest import ROOT

GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def commands(text: str) -> list[str]:
    """Each gcloud command of the guide's bash blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
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


def test_every_build_runs_as_the_deployer_account() -> None:
    submits = [c for c in commands(GUIDE) if "builds submit" in c]
    assert submits
    for command in submits:
        assert "--service-account=" in command
        assert "duo-telephony-deployer@" in command


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
