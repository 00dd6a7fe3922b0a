"""Checks every gcloud command of the deployment against the installed gcloud's own help.

Collects the commands of deploy/bootstrap.sh and deploy/teardown.sh (run with a recording
``gcloud`` shim, once as on an empty project and once as on a set-up one, plus their dry-run
plans), of cloudbuild.yaml's gcloud steps (run the same way, with the substitutions filled) and
of docs/deploy.md's code blocks and inline code. cloudbuild.yaml's Cloud SDK steps include the
monitoring step, which runs deploy/monitoring/apply.sh. For each it finds the command group with
``gcloud GROUP --help`` (offline) and checks that every flag it passes is in that help.

    .venv/bin/python deploy/check_gcloud_commands.py      # needs gcloud on PATH and PyYAML

Prints one line per distinct command and flag set checked; exits 1 if any is unknown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GCLOUD = "gcloud"
# Records each call; "describe" fails when SHIM_MISSING=1 (an empty project), except for a
# service's URL, which the build's later steps need; otherwise it answers what the scripts read
# to go on (a database's type, the base image's digest).
SHIM = """#!/bin/sh
printf '%s\\0' "$@" >> "$SHIM_LOG"; printf '\\n' >> "$SHIM_LOG"
case " $* " in
  *" run services describe "*) echo https://service.example ;;
  *" describe "*) [ "$SHIM_MISSING" = 1 ] && exit 1
    case "$*" in
      *"value(type"*) echo FIRESTORE_NATIVE ;;
      *"image_summary.digest"*) printf 'sha256:%064d\\n' 0 ;;
    esac ;;
esac
exit 0
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def recorded(script: str, args: list[str], env: dict[str, str], cwd: Path) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "gcloud"
        shim.write_text(SHIM)
        shim.chmod(0o755)
        log = Path(tmp) / "log"
        log.touch()
        subprocess.run(
            ["bash", "-c", script, "script", *args],
            env={"PATH": f"{tmp}:/usr/bin:/bin", "SHIM_LOG": str(log), **env},
            cwd=cwd,
            capture_output=True,
            check=False,
            timeout=120,
        )
        return [line.split("\0") for line in log.read_text().split("\0\n") if line.strip("\0\n")]


def from_scripts() -> list[list[str]]:
    commands = []
    settings = {"PROJECT_ID": "acme-duo", "NOTIFICATION_EMAIL": "oncall@acme.example"}
    key = "projects/acme-kms/locations/us-central1/keyRings/duo/cryptoKeys/duo"
    for name, args in (
        ("bootstrap.sh", ["--lifecycle-days", "400"]),
        ("bootstrap.sh", ["--budget-usd", "50", "--kms-key", key, "--repin-base-image"]),
        ("teardown.sh", ["--delete-bucket", "--delete-firestore-data"]),
        ("teardown.sh", []),
    ):
        script = f'exec bash "{ROOT / "deploy" / name}" "$@"'
        for missing in ("0", "1"):
            env = settings | {"SHIM_MISSING": missing}
            commands += recorded(script, args, env, ROOT)
        plan = subprocess.run(
            ["bash", str(ROOT / "deploy" / name), "--dry-run", *args],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        ).stdout
        lines = [line for line in plan.splitlines() if line.startswith("gcloud ")]
        commands += [shlex.split(line)[1:] for line in lines]
    return commands


def from_cloudbuild() -> list[list[str]]:
    config = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    env = {key: str(value) for key, value in config["substitutions"].items()}
    env |= {"PROJECT_ID": "acme-duo", "PROJECT_NUMBER": "1", "BUILD_ID": "b", "SHORT_SHA": "a"}
    env |= {"_BUCKET": "b", "_DUO_API_HOST": "api-1.duosecurity.com", "_DUO_IKEY": "DI1"}
    env |= {"_NOTIFICATION_CHANNEL": "projects/acme-duo/notificationChannels/1"}
    env |= {
        "_BASE_IMAGE": "us-central1-docker.pkg.dev/acme-duo/dockerhub/library/python@sha256:"
        + "0" * 64
    }
    commands = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "image.txt").write_text("image@sha256:0\n")
        (Path(tmp) / "deploy").symlink_to(ROOT / "deploy")  # steps run scripts from it
        for step in config["steps"]:
            script = step.get("script", "")
            if "cloudsdktool" in step["name"] and "pytest" not in script:
                for missing in ("0", "1"):
                    env["SHIM_MISSING"] = missing
                    commands += recorded(script, [], env, Path(tmp))
    return commands


def from_guide() -> list[list[str]]:
    text = (ROOT / "docs" / "deploy.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        # Commented-out commands count too; other comment lines do not.
        block = re.sub(r"^# (gcloud |  --)", r"\1", block, flags=re.M)
        block = re.sub(r"\\\n\s*", " ", block)
        pending = ""
        for line in block.splitlines():
            pending += line + "\n"
            try:
                argv = shlex.split(pending, comments=True)
            except ValueError:  # a quoted string that goes on to the next line
                continue
            pending = ""
            if argv[:1] == ["gcloud"]:
                commands.append(argv[1:])
    for inline in re.findall(r"`(gcloud [^`]+)`", re.sub(r"\n", " ", text)):
        # Skip the prose's patterns (gcloud GROUP --help, ... for the rest).
        if "..." not in inline and not re.search(r"\b[A-Z]{4,}\b", inline.split(" -")[0]):
            commands.append(shlex.split(inline)[1:])
    return commands


@cache
def help_text(path: tuple[str, ...]) -> str | None:
    result = subprocess.run(
        [GCLOUD, *path, "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
    )
    text = ANSI.sub("", result.stdout)
    name = "gcloud " + " ".join(path) + " - "
    return text if result.returncode == 0 and name in text else None


def command_path(argv: list[str]) -> tuple[str, ...] | None:
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    for length in range(min(len(words), 5), 0, -1):
        text = help_text(tuple(words[:length]))
        if text is not None:
            # A group followed by a word it does not know: a misspelt command, not an argument.
            group = re.search(r"SYNOPSIS\s+gcloud [^\n]*\b(GROUP|COMMAND)\b", text)
            return None if group and length < len(words) else tuple(words[:length])
    return None


def unknown_flags(path: tuple[str, ...], argv: list[str]) -> list[str]:
    text = help_text(path) or ""
    missing = []
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        spelled = ("--[no-]" + flag.removeprefix("--no-"), "--[no-]" + flag[2:])
        if not re.search(re.escape(flag) + r"\b", text) and not any(s in text for s in spelled):
            missing.append(flag)
    return missing


def main() -> int:
    commands = from_scripts() + from_cloudbuild() + from_guide()
    seen: dict[tuple[str, ...], set[str]] = {}
    for argv in commands:
        path = command_path(argv)
        key = path or tuple(argv[:3])
        seen.setdefault(key, set())
        seen[key] |= {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
        if path is None:
            seen[key].add("!unknown command")
    failures = 0
    for path, flags in sorted(seen.items()):
        bad = ["command"] if "!unknown command" in flags else []
        bad += unknown_flags(path, sorted(flags)) if not bad else []
        failures += bool(bad)
        status = "ok" if not bad else "UNKNOWN " + " ".join(bad)
        print(f"gcloud {' '.join(path)}: {status} ({' '.join(sorted(flags)) or 'no flags'})")
    print(json.dumps({"commands": len(commands), "distinct": len(seen), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
