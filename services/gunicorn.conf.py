"""gunicorn settings shared by the three services (Cloud Run's container and local runs)."""

import os
import signal

workers = 1  # one process per instance; Cloud Run scales instances, threads share a client
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))  # concurrent push deliveries
timeout = 0  # Cloud Run enforces the request timeout; gunicorn must not kill long fetches
graceful_timeout = 9  # Cloud Run sends SIGKILL 10 s after SIGTERM
accesslog = None
loglevel = "warning"


def post_worker_init(worker):
    """On SIGTERM, tell long work to stop at its next safe point before gunicorn drains."""
    from services.push_app import stopping

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        stopping.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
