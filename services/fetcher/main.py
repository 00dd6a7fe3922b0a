"""Fetcher service: Pub/Sub pushes window tasks to POST /; it pages Duo and publishes batches."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from flask import Flask

from services import structured_log
from services.fetcher.duo_clients import DuoClients, SourceUnavailableError, UnknownSourceError
from services.fetcher.window_fetch import CHECK_EVENT, WindowFetcher
from services.push_app import build, create_app, stopping
from services.settings import fetcher_settings, secret_reader
from shared.clock import Clock, SystemClock
from shared.gcp.clients import firestore_client, pubsub_publisher
from shared.gcp.publisher import Publisher
from shared.gcp.secret_manager import CachedSecrets, read_secret_version
from shared.gcp.source_registry import CachedEntries, SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import MessageError, SpanCheck, WindowTask

log = logging.getLogger("fetcher")


def create_fetcher_app(
    env: Mapping[str, str] = os.environ,
    clock: Clock | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> Flask:
    read_secret = read_secret or secret_reader(env, read_secret_version)
    settings = fetcher_settings(env, read_secret)
    clock = clock or SystemClock()
    db = firestore_client(settings.project, settings.database)
    registry = SourceRegistry(db, clock)
    entries = CachedEntries(registry, clock)
    clients = DuoClients(settings, db, clock, entries, CachedSecrets(read_secret, clock))
    fetcher = WindowFetcher(
        WindowStore(db, clock),
        Publisher(
            pubsub_publisher(), settings.project, settings.window_topic, settings.batch_topic
        ),
        clients.api,
        clock,
        lease_seconds=settings.lease_seconds,
        time_budget_seconds=settings.time_budget_seconds,
        enrich_host=clients.host if settings.enrich else None,
        should_stop=stopping.is_set,
        repair_checks=settings.repair_checks_ms,
        record_wake=registry.wake,
    )
    return fetcher_app(settings.project, fetcher)


def fetcher_app(project: str, fetcher: WindowFetcher) -> Flask:
    """The push endpoint around the fetcher's work, given its fetcher."""

    def handle(message: WindowTask | SpanCheck) -> None:
        try:
            if isinstance(message, SpanCheck):
                checked = fetcher.check(message)
                structured_log.event(
                    log, logging.INFO, f"{CHECK_EVENT} {checked.outcome}", **vars(checked)
                )
                return
            report = fetcher.fetch(message)
        except UnknownSourceError as error:
            # No redelivery can make it valid: acknowledged and logged with its id.
            raise MessageError(str(error)) from None
        except SourceUnavailableError as error:
            # Shown on the source's registry entry; its windows wait, planned, for the fix
            # (the planner sends them again once the source is active).
            structured_log.event(log, logging.ERROR, str(error), source=message.source)
            return
        level = logging.ERROR if report.outcome == "failed" else logging.INFO
        structured_log.event(
            log, level, f"window {message.window_id} {report.outcome}", **vars(report)
        )

    return create_app("fetcher", project, {"/": ((WindowTask, SpanCheck), handle)})


def app() -> Flask:
    """The gunicorn entry point: ``gunicorn 'services.fetcher.main:app()'``."""
    return build("fetcher", create_fetcher_app)
