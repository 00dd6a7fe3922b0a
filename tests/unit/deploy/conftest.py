"""Runs the deploy scripts against a recording ``gcloud`` (gcloud_recorder.py) and a
recording ``sleep``, both first on PATH: no Google Cloud account, no network, no waiting."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.gcloud_recorder import SHIM, Recorder

ROOT = Path(__file__).resolve().parents[3]
PROJECT = "acme-duo"
# Who the bootstrap's notification channel e-mails.
EMAIL = "oncall@acme.example"
# A base image pinned as the bootstrap pins it.
BASE_IMAGE = f"us-central1-docker.pkg.dev/{PROJECT}/dockerhub/library/python@sha256:{'a' * 64}"
# Calls that only read: never part of a plan.
CHECK_VERBS = {"describe", "get-iam-policy", "list"}


@dataclass(frozen=True)
class Call:
    argv: list[str]
    rc: int
    changed: bool

    @property
    def line(self) -> str:
        return " ".join(self.argv)

    def flag(self, name: str) -> str | None:
        for arg in self.argv:
            if arg == f"--{name}":
                return ""
            if arg.startswith(f"--{name}="):
                return arg.split("=", 1)[1]
        return None

    @property
    def words(self) -> list[str]:
        return [a for a in self.argv if not a.startswith("--") and a not in ("alpha", "beta")]

    def is_check(self) -> bool:
        return bool(CHECK_VERBS & set(self.words))


@dataclass
class Cloud:
    """A recorded project: run scripts against it, read back their calls and its state."""

    tmp: Path

    @property
    def log(self) -> Path:
        return self.tmp / "calls.jsonl"

    @property
    def state_file(self) -> Path:
        return self.tmp / "state.json"

    @property
    def sleeps(self) -> list[str]:
        path = self.tmp / "sleeps"
        return path.read_text().split() if path.exists() else []

    def env(self, settings: dict[str, str]) -> dict[str, str]:
        bin_dir = self.tmp / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir()
            gcloud = bin_dir / "gcloud"
            gcloud.write_text(SHIM.format(fifos=self.tmp))
            sleep = bin_dir / "sleep"
            sleep.write_text(f'#!/bin/sh\necho "$1" >> "{self.tmp}/sleeps"\n')
            for stub in (gcloud, sleep):
                stub.chmod(0o755)
        return {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            **settings,
        }

    def run(
        self, script: str, *args: str, settings: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> tuple[subprocess.CompletedProcess[str], list[Call]]:
        """Runs ``script`` (bash) and returns its result and the gcloud calls it made.

        Accounts created by an earlier run have propagated by now: only this run's are new."""
        if self.state_file.exists():
            self.state_file.write_text(json.dumps(self.state() | {"fresh_accounts": []}))
        before = len(self.calls())
        default = {"PROJECT_ID": PROJECT, "NOTIFICATION_EMAIL": EMAIL}
        env = self.env(default if settings is None else settings)
        with Recorder(self.tmp, self.state_file, self.log):
            result = subprocess.run(
                ["bash", "-c", script, "script", *args],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        return result, self.calls()[before:]

    def calls(self) -> list[Call]:
        if not self.log.exists():
            return []
        return [Call(**json.loads(line)) for line in self.log.read_text().splitlines()]

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def channels(self) -> list[str]:
        """The names of the project's notification channels."""
        resources = self.state().get("resources", {})
        return [r["name"] for key, r in resources.items() if key.startswith("monitoring channels|")]

    def add_secret_version(self) -> None:
        """The guide's step 3: the Duo secret key added to the secret."""
        command = f"gcloud secrets versions add duo-skey --data-file=- --project={PROJECT}"
        result, _ = self.run(command)
        assert result.returncode == 0, result.stderr

    def seed(self, resources: dict[str, dict[str, str]]) -> None:
        state = self.state()
        state.setdefault("resources", {}).update(resources)
        self.state_file.write_text(json.dumps(state))


@pytest.fixture
def cloud(tmp_path: Path) -> Cloud:
    return Cloud(tmp_path)


def script(name: str) -> str:
    return f'exec bash "{ROOT / "deploy" / name}" "$@"'


def plan(calls: list[Call]) -> list[Call]:
    """The calls that change something and succeeded: what a plan is made of."""
    return [call for call in calls if not call.is_check() and call.rc == 0]


def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def build_env(**overrides: str) -> dict[str, str]:
    """The environment Cloud Build gives the steps: substitutions (automapSubstitutions) and
    the built-in ones, for a build that names its bucket and Duo account."""
    config = cloudbuild()
    env = {key: str(value) for key, value in config["substitutions"].items()}
    env |= {
        "PROJECT_ID": PROJECT,
        "PROJECT_NUMBER": "123456789012",
        "BUILD_ID": "b-1",
        "SHORT_SHA": "abc1234",
        "_BUCKET": f"{PROJECT}-duo-telephony",
        "_DUO_API_HOST": "api-12345678.duosecurity.com",
        "_DUO_IKEY": "DIXXXXXXXXXXXXXXXXXX",
        "_BASE_IMAGE": BASE_IMAGE,
    }
    return env | overrides


def gcloud_steps() -> list[dict[str, Any]]:
    """The build's steps that run bash against gcloud (the Cloud SDK images, but for the one
    that runs the integration tests), in order."""
    return [
        step
        for step in cloudbuild()["steps"]
        if "cloudsdktool" in step["name"] and "pytest" not in step.get("script", "")
    ]


def run_build_steps(
    cloud: Cloud, tmp: Path, **overrides: str
) -> tuple[list[subprocess.CompletedProcess], list]:
    """Runs the build's gcloud steps in order, as Cloud Build would after the image step, with
    the bootstrap's notification channel unless ``overrides`` say otherwise."""
    workdir = tmp / "workspace"
    workdir.mkdir(exist_ok=True)
    if not (workdir / "deploy").exists():  # the steps run scripts from the checkout
        (workdir / "deploy").symlink_to(ROOT / "deploy")
    (workdir / "image.txt").write_text(
        f"us-central1-docker.pkg.dev/{PROJECT}/duo-telephony/duo-telephony@sha256:{'0' * 64}\n"
    )
    results, calls = [], []
    env = build_env(_NOTIFICATION_CHANNEL=",".join(cloud.channels())) | overrides
    for step in gcloud_steps():
        result, step_calls = cloud.run(step["script"], settings=env, cwd=workdir)
        results.append(result)
        calls.extend(step_calls)
    return results, calls
