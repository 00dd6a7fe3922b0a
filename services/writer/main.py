"""Writer service: Pub/Sub pushes record batches to POST /; it lands them in Cloud Storage."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask

from services.push_app import build, create_app
from services.settings import writer_settings
from services.writer.landing import land_batch
from shared.clock import Clock, SystemClock
from shared.gcp.clients import firestore_client, storage_client
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch

log = logging.getLogger("writer")


def create_writer_app(env: Mapping[str, str] = os.environ, clock: Clock | None = None) -> Flask:
    settings = writer_settings(env)
    clock = clock or SystemClock()
    store = WindowStore(firestore_client(settings.project), clock)
    bucket = storage_client(settings.project).bucket(settings.bucket)

    def handle(batch: RecordBatch) -> None:
        land_batch(batch, bucket, settings.prefix, settings.gzip, store)

    return create_app("writer", settings.project, {"/": (RecordBatch, handle)})


def app() -> Flask:
    """The gunicorn entry point: ``gunicorn 'services.writer.main:app()'``."""
    return build("writer", create_writer_app)
