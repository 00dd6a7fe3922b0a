"""A stand-in for ``gcloud`` that records each call and plays a small, consistent project.

A shim first on PATH hands each call to a Recorder in the test process. Each call is appended
to a log as one JSON line: its argv, exit code and, for ``add-iam-policy-binding``, whether
the policy changed. The project is kept in a JSON state file between runs: a describe fails
until the resource was created, a create fails if it exists, a policy holds what was bound,
and a call containing a string listed in the state's "deny" fails with its message. So a
second run of an idempotent script must find everything in place.

A binding made with ``--condition=expression=...`` holds that expression (a binding is
[resource, member, role] or [resource, member, role, expression]), and a policy is read back as
the ``--format`` asks (``bindings.condition.expression``, ``bindings.role``,
``bindings.members``).

Cloud Run traffic is played as Cloud Run does it: each deploy makes a new revision; a service
whose traffic follows the latest revision moves to it, while one whose traffic was sent to
named revisions (``update-traffic --to-revisions``) keeps that split for every later deploy,
until ``update-traffic --to-latest``. ``describe --flatten=status.traffic[]`` reads the split.
Secret versions: ``secrets versions add`` adds an enabled version, ``versions describe latest``
reads the newest; a full name (projects/P/secrets/NAME/versions/V) reads NAME's version V.

Docker Hub is played behind a remote repository (``--mode=remote-repository``): ``artifacts
docker images describe REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG`` gives the digest
the state's "docker_hub" has for IMAGE:TAG (a digest made from IMAGE:TAG if none), so a test
can move a tag as Docker Hub would.

IAM propagation is played too: the first binding that names a service account created a moment
ago fails with "does not exist", as the real API may.

Only the option form ``--flag=value`` is understood, which is how the scripts write them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

VERBS = {
    "add",
    "add-iam-policy-binding",
    "bulk-delete",
    "create",
    "delete",
    "deploy",
    "describe",
    "enable",
    "get-iam-policy",
    "list",
    "remove-iam-policy-binding",
    "rm",
    "set-cleanup-policies",
    "undelete",
    "update",
    "update-traffic",
}
PROJECT_NUMBER = "123456789012"
# Every field of every collection group has an index config, so updating one never misses.
UPSERTED = {"firestore indexes fields"}
STATE_KEYS = ("resources", "bindings", "fresh_accounts", "apis", "deny", "docker_hub")
DICT_KEYS = ("resources", "docker_hub")


def _parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    words: list[str] = []
    flags: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            flags[key] = value
        elif arg not in ("alpha", "beta"):
            words.append(arg)
    return words, flags


def _field(fmt: str) -> list[str]:
    match = re.fullmatch(r"value\((.*)\)", fmt)
    return match.group(1).split(",") if match else []


class Project:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        for key in STATE_KEYS:
            state.setdefault(key, {} if key in DICT_KEYS else [])

    def resource(self, key: str) -> dict[str, Any] | None:
        return self.state["resources"].get(key)

    def bindings(self, key: str) -> list[list[str]]:
        return [b[1:] for b in self.state["bindings"] if b[0] == key]


def _key(words: list[str], verb_at: int, flags: dict[str, str]) -> tuple[str, str]:
    group = " ".join(words[:verb_at])
    rest = words[verb_at + 1 :]
    if group == "scheduler jobs" and rest[:1] in (["http"], ["pubsub"]):
        rest = rest[1:]
    name = rest[0] if rest else flags.get("database", "")
    if words[verb_at] == "deploy":
        group = f"{group} services"
    if group == "firestore fields ttls":  # a field's TTL is read back through its index config
        group = "firestore indexes fields"
    if group == "storage":  # gcloud storage rm --recursive gs://BUCKET removes the bucket
        group = "storage buckets"
    if "collection-group" in flags:
        name = f"{name}@{flags['collection-group']}"
        if flags.get("database", "(default)") != "(default)":
            name = f"{name}@{flags['database']}"
    if group == "iam service-accounts" and "@" not in name and name:
        name = f"{name}@{flags.get('project', 'PROJECT')}.iam.gserviceaccount.com"
    return group, name


def _fields_on_create(group: str, name: str, flags: dict[str, str]) -> dict[str, str]:
    fields = {"name": name}
    if group == "firestore databases":
        if "type" in flags:
            fields["type"] = {"firestore-native": "FIRESTORE_NATIVE"}.get(flags["type"], "")
        if "enable-pitr" in flags:
            fields["pointInTimeRecoveryEnablement"] = "POINT_IN_TIME_RECOVERY_ENABLED"
        if "delete-protection" in flags:
            fields["deleteProtectionState"] = "DELETE_PROTECTION_ENABLED"
    if group == "run services":
        service = name.rsplit("/", 1)[-1]
        fields["status.url"] = f"https://{service}-abc123-uc.a.run.app"
    for source in ("policy-from-file", "config-from-file"):
        if source in flags:
            config = json.loads(Path(flags[source]).read_text())
            if "displayName" in config:
                fields["displayName"] = config["displayName"]
    if "lifecycle-file" in flags:
        rule = json.loads(Path(flags["lifecycle-file"]).read_text())["rule"][0]
        fields["lifecycle_config.rule[0].condition.age"] = str(rule["condition"]["age"])
    if "policy" in flags and group == "artifacts repositories":
        fields["cleanupPolicies"] = Path(flags["policy"]).read_text().strip()
    if "enable-ttl" in flags:
        fields["ttlConfig.state"] = "CREATING"
    for field in ("mode", "description"):
        if field in flags:
            fields[field] = flags[field]
    if "display-name" in flags:
        fields["displayName"] = flags["display-name"]
    if "channel-labels" in flags:
        for label in flags["channel-labels"].split(","):
            key, _, value = label.partition("=")
            fields[f"labels.{key}"] = value
    return fields


def _condition(flags: dict[str, str]) -> str | None:
    """The expression of ``--condition=expression=E,title=T``; None for none."""
    value = flags.get("condition", "None")
    if value == "None":
        return None
    match = re.fullmatch(r"expression=(.*?)(,title=.*)?", value)
    assert match, f"a condition this recorder cannot read: {value}"
    return match.group(1)


def _deploy(service: dict[str, Any], name: str, image: str) -> None:
    """A new revision of a Cloud Run service; traffic follows it unless pinned."""
    count = int(service.get("revisions", "0")) + 1
    revision = f"{name.rsplit('/', 1)[-1]}-{count:05d}-abc"
    service |= {
        "revisions": str(count),
        "status.latestCreatedRevisionName": revision,
        "status.latestReadyRevisionName": revision,
        "spec.template.spec.containers[0].image": image,
    }
    if service.get("traffic") is None or service["traffic"][0][2]:
        service["traffic"] = [[revision, 100, True]]


def _update_traffic(service: dict[str, Any], flags: dict[str, str]) -> None:
    if "to-latest" in flags:
        service["traffic"] = [[service["status.latestReadyRevisionName"], 100, True]]
        return
    split = [part.split("=") for part in flags["to-revisions"].split(",")]
    latest = service["status.latestReadyRevisionName"]
    service["traffic"] = [
        [latest if name == "LATEST" else name, int(percent), name == "LATEST"]
        for name, percent in split
    ]


def _traffic_rows(service: dict[str, Any], fields: list[str]) -> str:
    """The traffic split, one line per target, as --flatten=status.traffic[] prints it."""
    names = {
        "status.traffic.revisionName": 0,
        "status.traffic.percent": 1,
        "status.traffic.latestRevision": 2,
    }
    return "".join(
        "\t".join(str(target[names[f]]) for f in fields) + "\n" for target in service["traffic"]
    )


def _docker_hub_digest(
    image: str, project: Project, fields: list[str]
) -> tuple[int, str, str, bool]:
    """``artifacts docker images describe`` of IMAGE:TAG in a remote repository of Docker Hub."""
    _host, _project, repository, path = image.split("/", 3)
    remote = project.resource(f"artifacts repositories|{repository}")
    if remote is None or remote.get("mode") != "remote-repository" or ":" not in path:
        return 1, "", f"ERROR: NOT_FOUND: {image}\n", False
    default = "sha256:" + hashlib.sha256(path.encode()).hexdigest()
    digest = project.state["docker_hub"].get(path, default)
    assert fields == ["image_summary.digest"], fields
    return 0, digest + "\n", "", False


def play(argv: list[str], project: Project) -> tuple[int, str, str, bool]:
    """(exit code, stdout, stderr, whether an IAM policy changed) of one call."""
    for needle, message in project.state["deny"]:
        if needle in " ".join(argv):
            return 1, "", message + "\n", False
    words, flags = _parse(argv)
    verb_at = next((i for i, word in enumerate(words) if word in VERBS), None)
    if verb_at is None:
        return 0, "", "", False
    verb = words[verb_at]
    group, name = _key(words, verb_at, flags)
    key = f"{group}|{name}"
    found = project.resource(key)
    fields = _field(flags.get("format", ""))
    resources = project.state["resources"]

    if group == "projects" and verb == "describe":
        return 0, PROJECT_NUMBER + "\n", "", False
    if group == "services" and verb == "enable":
        project.state["apis"] = sorted(set(project.state["apis"]) | set(words[verb_at + 1 :]))
        return 0, "", "", False
    if group == "services" and verb == "list":
        return 0, "".join(f"{api}\n" for api in project.state["apis"]), "", False
    if group == "secrets versions" and verb == "add":
        versions = [k for k in resources if k.startswith(f"{group}|{name}/")]
        resources[f"{group}|{name}/{len(versions) + 1}"] = {"state": "ENABLED"}
        return 0, "", "", False
    if group == "secrets versions" and name.startswith("projects/"):  # a full version name
        _, _, _, secret_name, _, version = name.split("/")
        flags = flags | {"secret": secret_name}
        if version != "latest":
            found = project.resource(f"{group}|{secret_name}/{version}")
        name = version
    if group == "secrets versions" and name == "latest" and "secret" in flags:
        versions = [k for k in resources if k.startswith(f"{group}|{flags['secret']}/")]
        if not versions:
            return 1, "", f"ERROR: NOT_FOUND: {flags['secret']} has no versions\n", False
        found = resources[max(versions, key=lambda k: int(k.rsplit("/", 1)[1]))]
    if group == "run services" and verb == "update-traffic":
        if found is None:
            return 1, "", f"ERROR: NOT_FOUND: {key}\n", False
        _update_traffic(found, flags)
        return 0, "", "", False
    if group == "run services" and verb == "describe" and found and "flatten" in flags:
        return 0, _traffic_rows(found, fields), "", False
    if group == "iam roles" and verb == "undelete":
        found = found or {}
        found["deleted"] = "False"
        return 0, "", "", False
    if group == "services identity" and verb == "create":
        agent = f"service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
        return 0, f"Service identity created: {agent}\n", "", False
    if group == "artifacts docker images" and verb == "describe":
        return _docker_hub_digest(name, project, fields)
    if verb == "list":
        rows = [r for k, r in resources.items() if k.startswith(f"{group}|")]
        return 0, "".join("\t".join(r.get(f, "") for f in fields) + "\n" for r in rows), "", False

    if verb == "get-iam-policy":
        columns = {"bindings.members": 0, "bindings.role": 1, "bindings.condition.expression": 2}
        rows = [[*binding, ""][:3] for binding in project.bindings(key)]
        return (
            0,
            "".join("\t".join(row[columns[f]] for f in fields) + "\n" for row in rows),
            "",
            False,
        )
    if verb in ("add-iam-policy-binding", "remove-iam-policy-binding"):
        if found is None and group != "projects":
            return 1, "", f"ERROR: NOT_FOUND: {key}\n", False
        member, role = flags["member"], flags["role"]
        account = member.removeprefix("serviceAccount:")
        if verb == "add-iam-policy-binding":
            if account in project.state["fresh_accounts"]:
                project.state["fresh_accounts"].remove(account)
                return (
                    1,
                    "",
                    f"ERROR: INVALID_ARGUMENT: Service account {account} does not exist.\n",
                    False,
                )
            if member.startswith("serviceAccount:duo-telephony-") and (
                project.resource(f"iam service-accounts|{account}") is None
            ):
                return (
                    1,
                    "",
                    f"ERROR: INVALID_ARGUMENT: Service account {account} does not exist.\n",
                    False,
                )
            condition = _condition(flags)
            binding = [key, member, role] + ([condition] if condition else [])
            changed = binding not in project.state["bindings"]
            if changed:
                project.state["bindings"].append(binding)
            return 0, "", "", changed
        condition = _condition(flags)
        binding = [key, member, role] + ([condition] if condition else [])
        if binding not in project.state["bindings"]:
            return (
                1,
                "",
                "ERROR: Policy binding with the specified principal and role not found!\n",
                False,
            )
        project.state["bindings"].remove(binding)
        return 0, "", "", True

    if verb == "create" and not name:
        # Alert policies, dashboards and notification channels: the service names them.
        kind = {"channels": "notificationChannels"}.get(group.split()[-1], group.split()[-1])
        name = f"projects/{PROJECT_NUMBER}/{kind}/{len(resources) + 1}"
        key = f"{group}|{name}"
    if verb in ("create", "deploy"):
        if found is not None and verb == "create":
            return 1, "", f"ERROR: ALREADY_EXISTS: {key}\n", False
        resources[key] = (found or {}) | _fields_on_create(group, name, flags)
        if group == "run services":
            _deploy(resources[key], name, flags.get("image", ""))
        if group == "iam service-accounts":
            project.state["fresh_accounts"].append(name)
        return 0, "", "", False
    if found is None and verb == "update" and group in UPSERTED:
        found = resources[key] = {"name": name}
    if found is None and verb in ("describe", "update", "delete", "rm", "set-cleanup-policies"):
        return 1, "", f"ERROR: NOT_FOUND: {key}\n", False
    if verb == "describe":
        # One line, tab-separated, as gcloud's value() format prints one resource.
        line = "\t".join(str(found.get(f, "")) for f in fields) + "\n" if fields else ""
        return 0, line, "", False
    if verb in ("update", "set-cleanup-policies"):
        found.update(_fields_on_create(group, name, flags))
        return 0, "", "", False
    if verb in ("delete", "rm"):
        del resources[key]
        if group == "secrets":  # its versions go with it
            for version in [k for k in resources if k.startswith(f"secrets versions|{name}/")]:
                del resources[version]
        project.state["bindings"] = [b for b in project.state["bindings"] if b[0] != key]
        return 0, "", "", False
    return 0, "", "", False


# The executable put first on PATH as ``gcloud``: it hands its argv to the Recorder through
# one FIFO, waits on another, then prints what the Recorder left in files and exits with its
# code. Calls from a script come one at a time, so one pair of FIFOs serves them all.
SHIM = """#!/bin/sh
printf '%s\\0' "$@" > "{fifos}/request"
read -r _ < "{fifos}/done"
cat "{fifos}/out"
cat "{fifos}/err" >&2
exit "$(cat "{fifos}/rc")"
"""
STOP = b"\0stop\0"


class Recorder:
    """Serves the shim's calls in a thread of the test process while one script runs: a
    Python start per call would cost more than the rest of the test."""

    def __init__(self, fifos: Path, state: Path, log: Path) -> None:
        self.fifos, self.state_path, self.log = fifos, state, log
        for name in ("request", "done"):
            if not (fifos / name).exists():
                os.mkfifo(fifos / name)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fd = os.open(self.fifos / "request", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # the thread is not reading: it is stuck on a shim killed mid-call
            return
        with os.fdopen(fd, "wb") as request:
            request.write(STOP)
        self.thread.join(timeout=10)

    def _serve(self) -> None:
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        project = Project(state)
        with self.log.open("a") as log:
            while (request := (self.fifos / "request").read_bytes()) != STOP:
                argv = [arg.decode() for arg in request.split(b"\0")[:-1]]
                code, out, err, changed = play(argv, project)
                log.write(json.dumps({"argv": argv, "rc": code, "changed": changed}) + "\n")
                log.flush()
                (self.fifos / "out").write_text(out)
                (self.fifos / "err").write_text(err)
                (self.fifos / "rc").write_text(str(code))
                (self.fifos / "done").write_text("\n")
        self.state_path.write_text(json.dumps(state))
