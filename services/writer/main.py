"""Writer service: Pub/Sub pushes record batches to POST /; it lands them in Cloud Storage."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

from flask import Flask

from services.push_app import build, create_app
from services.settings import writer_settings
from services.writer.landing import land_batch
from shared.clock import Clock, SystemClock
from shared.gcp.bucket_writer import WriteResult
from shared.gcp.clients import firestore_client, storage_client
from shared.gcp.destinations import Destinations
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch


def create_writer_app(env: Mapping[str, str] = os.environ, clock: Clock | None = None) -> Flask:
    settings = writer_settings(env)
    clock = clock or SystemClock()
    db = firestore_client(settings.project, settings.database)
    store = WindowStore(db, clock)
    destinations = Destinations(
        SourceRegistry(db, clock),
        clock,
        storage_client(settings.project),
        settings.bucket,
        settings.prefix,
    )
    write = functools.partial(destinations.write, gzip=settings.gzip)
    return writer_app(settings.project, write, store)


def writer_app(
    project: str, write: Callable[[RecordBatch], WriteResult], store: WindowStore
) -> Flask:
    """The push endpoint around the writer's work, given its collaborators."""

    def handle(batch: RecordBatch) -> None:
        land_batch(batch, write, store)

    return create_app("writer", project, {"/": (RecordBatch, handle)})


def app() -> Flask:
    """The gunicorn entry point: ``gunicorn 'services.writer.main:app()'``."""
    return build("writer", create_writer_app)
