"""What Cloud Run's startup probe sees of a service started as the image starts it (gunicorn
with services/gunicorn.conf.py): gunicorn's master opens the port before its worker has built
the app, so a TCP check passes even when the app can never load; ``/healthz`` over HTTP
answers 200 only once the app is built with valid settings and secret, and a revision whose
settings are wrong never answers it (the worker exits 4 and gunicorn halts)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.emulators import HOST, free_port, http_request
from services.push_app import APP_LOAD_ERROR

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
# Every client is built lazily or pointed at a closed port: nothing is contacted at start.
VALID = {
    "GOOGLE_CLOUD_PROJECT": "duo-telephony-startup",
    "FIRESTORE_EMULATOR_HOST": f"{HOST}:9",
    "PUBSUB_EMULATOR_HOST": f"{HOST}:9",
    "STORAGE_EMULATOR_HOST": f"http://{HOST}:9",
    "DUO_API_HOST": f"http://{HOST}:9",
    "DUO_IKEY": "DISTARTUPCHECK000000",
    "DUO_SKEY": "startupCheckSecretKeyNotSecret00000000000",
    "GCS_BUCKET": "startup-check",
}
DEADLINE_SECONDS = 30


def start(service: str, env: dict[str, str], home: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--config", "services/gunicorn.conf.py"]
    argv += ["--bind", f"{HOST}:{port}", f"services.{service}.main:app()"]
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        # gunicorn keeps a control socket under HOME.
        env={"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, port


def probe(process: subprocess.Popen[str], port: int) -> tuple[bool, list[int]]:
    """Probes as Cloud Run would until ``/healthz`` answers 200 or the process ends: whether
    a TCP connect ever succeeded, and every HTTP status seen."""
    port_opened, statuses = False, []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            port_opened = True
            statuses.append(http_request("GET", f"http://{HOST}:{port}/healthz", timeout=0.5)[0])
        except OSError:
            time.sleep(0.02)
            continue
        if statuses[-1] == 200:
            break
    return port_opened, statuses


@pytest.mark.parametrize(
    ("service", "wrong", "named"),
    [
        ("planner", {"LOOKBACK": "400d"}, "LOOKBACK"),
        # The secret: one that cannot be read (here: no credentials at all, so nothing is
        # contacted), a name that is not a secret version, and a plain key on Cloud Run.
        (
            "fetcher",
            {
                "DUO_SKEY": "",
                "DUO_SKEY_SECRET": "projects/p/secrets/duo-skey/versions/latest",
                "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/credentials.json",
            },
            "could not read projects/p/secrets/duo-skey/versions/latest",
        ),
        ("fetcher", {"DUO_SKEY": "", "DUO_SKEY_SECRET": "duo-skey"}, "DUO_SKEY_SECRET"),
        ("fetcher", {"K_SERVICE": "duo-telephony-fetcher"}, "refused on Cloud Run"),
        ("writer", {"GCS_BUCKET": ""}, "GCS_BUCKET"),
    ],
)
def test_a_service_that_cannot_load_never_answers_healthz(
    service: str, wrong: dict[str, str], named: str, tmp_path: Path
) -> None:
    process, port = start(service, VALID | wrong, tmp_path)
    try:
        port_opened, statuses = probe(process, port)
        assert 200 not in statuses
        # gunicorn halted instead of respawning the worker: the instance ends.
        assert process.wait(timeout=DEADLINE_SECONDS) == APP_LOAD_ERROR
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # What the default TCP startup check would have accepted.
    assert port_opened
    [line] = [json.loads(x) for x in process.stdout.read().splitlines() if x.startswith("{")]
    assert line["severity"] == "CRITICAL" and line["component"] == service
    assert line["message"].startswith("configuration error: ") and named in line["message"]


@pytest.mark.parametrize("service", ["planner", "fetcher", "writer"])
def test_a_service_that_loads_answers_healthz(service: str, tmp_path: Path) -> None:
    process, port = start(service, VALID, tmp_path)
    try:
        _, statuses = probe(process, port)
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE_SECONDS)
    assert statuses[-1:] == [200]
