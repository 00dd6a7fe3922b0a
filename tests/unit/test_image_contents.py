"""What the production image holds: the services and the shared layers, their locked
dependencies, and nothing of the local harness, the simulator, the tests or the benchmark."""

from __future__ import annotations

from tests.image_context import context_files, excluded


def test_the_image_holds_only_the_services_and_their_dependencies() -> None:
    # And a fleet's sources file, when the deployment has one (docs/deploy.md).
    files = [name for name in context_files() if name != "deploy/sources.json"]
    top = {name.split("/")[0] for name in files}
    assert top == {"shared", "services", "requirements.lock", ".python-version"}


def test_no_harness_simulator_or_test_module_is_in_the_image() -> None:
    packages = {name.split("/")[0] for name in context_files() if name.endswith(".py")}
    assert packages == {"shared", "services"}
    assert not [name for name in context_files() if "__pycache__" in name]


def test_the_matcher_follows_dockerignore_rules() -> None:
    # The check above is only as good as the matcher: a directory pattern excludes what is
    # below it, ** crosses folders, and a kept path stays.
    assert excluded("harness/demo.py")
    assert excluded("simulator/api.py")
    assert excluded("shared/duo/__pycache__/api.cpython-311.pyc")
    assert excluded("services/cli.pyc")
    assert not excluded("shared/duo/api.py")
    assert not excluded("services/gunicorn.conf.py")
    assert excluded("deploy/bootstrap.sh")
    assert not excluded("deploy/sources.json")  # kept by an exception below an excluded folder
