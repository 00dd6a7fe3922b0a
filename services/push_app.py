"""The HTTP surface shared by the services: a Flask app that takes Pub/Sub push deliveries.

The answer tells Pub/Sub what to do: 2xx acknowledges, anything else redelivers (and after
the subscription's maximum attempts, dead-letters). A message that can never be valid is
acknowledged and logged as an error with its id, so it is never retried forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, request

from services import structured_log
from services.settings import ConfigError
from shared.pipeline.messages import Message, MessageError, decode_push

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]
Kinds = type[Message] | tuple[type[Message], ...]

# Set when the platform asks the instance to stop (SIGTERM): long work ends at a safe point.
stopping = threading.Event()

APP_LOAD_ERROR = 4  # gunicorn halts on this exit code instead of respawning the worker


def build(component: str, factory: Callable[[], Flask]) -> Flask:
    """The services' gunicorn entry: JSON logs, and a configuration error ends the instance
    with one line naming the setting at fault rather than a traceback."""
    structured_log.configure(component)
    try:
        return factory()
    except ConfigError as error:
        structured_log.event(log, logging.CRITICAL, f"configuration error: {error}")
        raise SystemExit(APP_LOAD_ERROR) from None


def create_app(
    component: str,
    project: str,
    routes: dict[str, tuple[Kinds, Handler]] | None = None,
) -> Flask:
    """An app with ``/healthz`` and one push endpoint per route (path → the message type, or
    types, it takes, and their handler)."""
    app = Flask(component)

    @app.before_request
    def trace() -> None:
        structured_log.set_trace(request.headers.get("X-Cloud-Trace-Context"), project)

    @app.get("/healthz")
    def health() -> tuple[str, int]:
        return ("stopping", 503) if stopping.is_set() else ("ok", 200)

    for path, (kind, handler) in (routes or {}).items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        app.add_url_rule(
            path,
            endpoint="push_" + "_".join(k.__name__ for k in kinds),
            view_func=_push_view(kinds, handler),
            methods=["POST"],
        )
    return app


def _push_view(kinds: tuple[type, ...], handler: Handler) -> Callable[[], tuple[str, int]]:
    expected = " or ".join(k.__name__ for k in kinds)

    def view() -> tuple[str, int]:
        envelope = request.get_json(silent=True)
        message_id = None
        try:
            message_id, message = decode_push(envelope)
            if not isinstance(message, kinds):
                raise MessageError(f"expected a {expected}, got a {type(message).__name__}")
            handler(message)
        except MessageError as error:
            structured_log.event(
                log,
                logging.ERROR,
                f"dropped an invalid message: {error.reason}",
                message_id=error.message_id or message_id,
                subscription=(envelope or {}).get("subscription")
                if isinstance(envelope, dict)
                else None,
            )
            return "", 204
        except Exception:
            log.exception("message %s failed; Pub/Sub will redeliver it", message_id)
            return "", 500
        return "", 204

    return view
