"""A pass-through proxy in front of the Storage emulator, with two control points for tests:
hold an object's first upload until a second upload of the same object arrives, so that two
writers are inside the create-only upload of one object at once, for certain rather than by
luck; and answer 403 where the emulator answers 412 to an upload, as Cloud Storage may answer
a principal without storage.objects.delete (which fake-gcs-server cannot tell apart). A service
is pointed at it through its STORAGE_EMULATOR_HOST; production never sees it.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
# Only one-request (multipart) uploads are gated: the client sends every object up to 8 MiB so.
_UPLOAD_PATH = "/upload/storage/v1/b/"
# Hop-by-hop headers, and the length: the proxy sends each body whole with its own length.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RacedUpload:
    """The first upload of an object, held until a second upload of the same object arrives."""

    def __init__(self, matches: Callable[[str], bool], timeout: float) -> None:
        self.matches = matches
        self.timeout = timeout
        self.name: str | None = None  # the object's name, once its first upload arrived
        self.raced = threading.Event()  # set when the second upload arrives

    def wait_raced(self, timeout: float) -> str:
        """Blocks until a second upload of the held object has arrived; returns its name."""
        if not self.raced.wait(timeout):
            raise TimeoutError(f"no second upload of {self.name!r} within {timeout:.0f} s")
        assert self.name is not None
        return self.name


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upload = self.path.startswith(_UPLOAD_PATH) and "uploadType=multipart" in self.path
        if upload:
            self.server.gate.before_upload(_object_name(body))
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            status = response.status
            if upload and status == 412 and self.server.gate.forbid_existing:
                status, answer = 403, _FORBIDDEN
            self.send_response(status)
            for name, value in response.getheaders():
                if name.lower() not in _NOT_FORWARDED:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


# Cloud Storage's answer to a principal lacking a permission (JSON API error format).
_FORBIDDEN = json.dumps(
    {
        "error": {
            "code": 403,
            "message": "writer does not have storage.objects.delete access to the object.",
            "errors": [{"reason": "forbidden", "domain": "global"}],
        }
    }
).encode()


def _object_name(body: bytes) -> str:
    """The object's name from a multipart upload, whose first part is the JSON metadata."""
    _headers, _, rest = body.partition(b"\r\n\r\n")
    metadata, _, _ = rest.partition(b"\r\n--")
    return str(json.loads(metadata)["name"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, gate: StorageGate) -> None:
        self.upstream = upstream
        self.gate = gate
        super().__init__((LOOPBACK, 0), _Handler)


class StorageGate:
    """The proxy on a free port of 127.0.0.1; ``upstream`` is the emulator's URL."""

    def __init__(self, upstream: str) -> None:
        # As the Storage client takes STORAGE_EMULATOR_HOST: a URL, or a bare host:port.
        self._httpd = _Server(
            urlsplit(upstream if "://" in upstream else f"//{upstream}").netloc, self
        )
        self._races: list[RacedUpload] = []
        self._lock = threading.Lock()
        # Answer 403, not 412, to an upload over an existing object (``forbid_overwrites``).
        self.forbid_existing = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def race(self, matches: Callable[[str], bool], timeout: float = 60.0) -> RacedUpload:
        """Holds the first upload of the first object whose name ``matches`` until a second
        upload of that object arrives (or ``timeout`` seconds pass)."""
        race = RacedUpload(matches, timeout)
        with self._lock:
            self._races.append(race)
        return race

    def forbid_overwrites(self) -> None:
        """From now on, an upload over an existing object is answered 403 instead of 412."""
        self.forbid_existing = True

    def before_upload(self, name: str) -> None:
        """Called with each upload's object name before it is forwarded; waits if it is the
        first upload of a raced object."""
        with self._lock:
            race = next((r for r in self._races if r.name == name), None)
            if race is not None:  # the second upload: both go on now, at once
                self._races.remove(race)
                race.raced.set()
                return
            race = next((r for r in self._races if r.name is None and r.matches(name)), None)
            if race is None:
                return
            race.name = name
        # Bounded, so a test that goes wrong cannot keep a writer waiting for ever.
        race.raced.wait(race.timeout)

    def start(self) -> StorageGate:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="storage-gate", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> StorageGate:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
