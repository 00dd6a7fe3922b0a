"""Wires a TelephonyApi to sockets: a threading HTTP server on 127.0.0.1, plain HTTP."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol

from simulator.api import Response

LOOPBACK = "127.0.0.1"


class Api(Protocol):
    """What the server serves: the single account's TelephonyApi or a fleet's."""

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        client_address: str = ...,
        body: bytes = ...,
    ) -> Response: ...


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so clients may keep connections alive; every response is length-delimited
    # or chunked.
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        # Read whole, also for keep-alive: the Accounts API's POSTs carry a signed body.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        headers = {name: value for name, value in self.headers.items()}
        response = self.server.api.handle(
            self.command, path, query, headers, client_address=self.client_address[0], body=body
        )
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in response.body:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown

    def __init__(self, port: int, api: Api, verbose: bool) -> None:
        self.api = api
        self.verbose = verbose
        super().__init__((LOOPBACK, port), _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client hanging up mid-response is normal for a test server; say so only if asked.
        if self.verbose:
            super().handle_error(request, client_address)


class SimulatorServer:
    """The simulator on 127.0.0.1. ``port=0`` picks a free port; ``.port`` tells which.

    Binding happens in the constructor, so the port is known (and taken) before ``start``.
    Use as a context manager in tests: ``with SimulatorServer(api) as sim: sim.base_url``.
    """

    def __init__(self, api: Api, port: int = 0, verbose: bool = False) -> None:
        self.api = api
        self._httpd = _Server(port, api, verbose)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host_port}"

    def start(self) -> SimulatorServer:
        """Serve in a background daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="duo-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
