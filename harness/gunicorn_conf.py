"""gunicorn settings for local runs: production's (``services/gunicorn.conf.py``) unchanged, and
one line on stderr once an instance has run its SIGTERM handler, so a test knows for certain
that the services' ``stopping`` event is set instead of guessing the moment with a sleep;
and after every request a line with the worker's running operation totals and the request's
start and end (``harness.service_operations``), from which the benchmark tells what each
service cost.

The harness passes this file to ``gunicorn --config``; production never sees it.
"""

import os
import runpy
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

SIGTERM_HANDLED = "harness: the SIGTERM handler has run"

_PRODUCTION = runpy.run_path(
    str(Path(__file__).resolve().parent.parent / "services" / "gunicorn.conf.py")
)
globals().update({name: value for name, value in _PRODUCTION.items() if not name.startswith("_")})


def post_worker_init(worker: Any) -> None:
    _PRODUCTION["post_worker_init"](worker)
    handler = signal.getsignal(signal.SIGTERM)

    def report(signum: int, frame: FrameType | None) -> None:
        if callable(handler):
            handler(signum, frame)
        # os.write, not logging: safe whatever the interrupted main thread was doing.
        os.write(2, f"{SIGTERM_HANDLED}\n".encode())

    signal.signal(signal.SIGTERM, report)


def pre_request(worker: Any, req: Any) -> None:
    req.harness_started = time.monotonic()


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Counts the request (as Cloud Run would bill it) and writes the worker's running
    operation totals, for the benchmark; the readiness probe is not a request production
    pays for."""
    if req.path == "/healthz":
        return
    from harness.service_operations import totals_line
    from shared.gcp.operations import CLOUD_RUN_REQUEST_MS, CLOUD_RUN_REQUESTS, OPERATIONS

    seconds = time.monotonic() - req.harness_started
    ended = time.time()
    OPERATIONS.add(CLOUD_RUN_REQUESTS)
    OPERATIONS.add(CLOUD_RUN_REQUEST_MS, round(seconds * 1000))
    # Wall-clock ends, the duration from the monotonic clock: what Cloud Run's instance is
    # billed for is where the requests overlap (harness.instance_time).
    line = totals_line(os.getpid(), ended, OPERATIONS.snapshot(), (ended - seconds, ended))
    os.write(2, line.encode())
