"""The image's code runs on the locked dependencies alone: a virtual environment made from
requirements.lock (hashes required), the build context as .dockerignore leaves it, and each
service's gunicorn entry point building its app and answering /healthz. The harness and the
simulator are absent, as in the image, so a production import of either fails here."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from tests.image_context import copy_context

pytestmark = pytest.mark.integration

# Built from the context with the emulators' variables set, so no client looks for real
# credentials; nothing is contacted while an app is built.
LOAD_EVERY_SERVICE = """
import importlib, sys
for name in ("planner", "fetcher", "writer"):
    app = importlib.import_module(f"services.{name}.main").app()
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, (name, response.status_code)
    print(name, "ok")
for absent in ("harness", "simulator", "tests"):
    try:
        importlib.import_module(absent)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{absent} is importable in the image")
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the app directory, its Python), as the Dockerfile builds them."""
    work = tmp_path_factory.mktemp("image")
    app = copy_context(work / "app")
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--no-deps",
            "-r",
            app / "requirements.lock",
        ],
        check=True,
    )
    return app, python


def test_every_service_loads_on_the_locked_dependencies(image: tuple[Path, Path]) -> None:
    app, python = image
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(app),
        "HOME": str(app),
        "GOOGLE_CLOUD_PROJECT": "duo-telephony-image-check",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "DUO_API_HOST": "http://127.0.0.1:9",
        "DUO_IKEY": "DIIMAGECHECK00000000",
        "DUO_SKEY": "imageCheckSecretKeyNotSecret0000000000000",
        "GCS_BUCKET": "image-check",
    }
    result = subprocess.run(
        [python, "-c", LOAD_EVERY_SERVICE], cwd=app, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["planner", "ok", "fetcher", "ok", "writer", "ok"]


def test_the_development_commands_say_they_are_not_in_the_image(
    image: tuple[Path, Path],
) -> None:
    app, python = image
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(app)}
    result = subprocess.run(
        [python, "-m", "services.cli", "demo"], cwd=app, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "development command" in result.stderr
