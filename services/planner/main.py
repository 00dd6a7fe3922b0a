"""Planner service: Cloud Scheduler POSTs /run, which hands the sources out in slices on the
plans topic; Pub/Sub pushes each slice to /plan, which plans its sources' windows and publishes
their window tasks."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping

from flask import Flask, jsonify

from services import structured_log
from services.planner.budget import shared_budget, shared_reads
from services.planner.discovery import RegistrySources, RunSources, discover, parent_api
from services.planner.fanout import fan_out
from services.planner.run import run_planner
from services.planner.scope_check import scoped_waits
from services.push_app import build, create_app
from services.settings import PlannerSettings, planner_settings, secret_reader
from shared.clock import Clock, SystemClock
from shared.gcp.clients import firestore_client, pubsub_publisher, storage_client
from shared.gcp.cursor_store import CursorStore
from shared.gcp.destinations import Destinations
from shared.gcp.publisher import Publisher
from shared.gcp.rate_limiter import budget_limiter, found_rate, served_in_minute
from shared.gcp.rate_scope_store import RateScopeStore
from shared.gcp.secret_manager import CachedSecrets, read_secret_version
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.unmarked_batches import BatchFinder
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import PlanTask
from shared.pipeline.rate_share import AUTO, SharedRead

log = logging.getLogger(__name__)


def create_planner_app(
    env: Mapping[str, str] = os.environ,
    clock: Clock | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> Flask:
    settings = planner_settings(env)
    read_secret = read_secret or secret_reader(env, read_secret_version)
    clock = clock or SystemClock()
    db = firestore_client(settings.project, settings.database)
    windows = WindowStore(db, clock)
    cursors = CursorStore(db, windows, clock)
    publisher = Publisher(
        pubsub_publisher(), settings.project, settings.window_topic, plan_topic=settings.plan_topic
    )
    registry = SourceRegistry(db, clock, settings.accounts_refresh_ms)
    unmarked = None
    if settings.bucket:
        # Each source's batches are looked for under its own destination.
        unmarked = Destinations(
            registry, clock, storage_client(settings.project), settings.bucket, settings.prefix
        )
    connect = parent_api
    budget = shared_budget(settings)
    if budget is not None:
        # The listing is made with the parent's keys: it draws from the children's budget.
        connect = functools.partial(parent_api, limiter=budget_limiter(db, *budget, clock=clock))
    list_children = functools.partial(
        discover, secrets=CachedSecrets(read_secret, clock), clock=clock, connect=connect
    )
    sources = RegistrySources(settings, registry, list_children, clock)
    waits = functools.partial(
        shared_reads, settings, clock, found_rate=functools.partial(found_rate, db)
    )
    if budget is not None and settings.parent is not None and settings.parent.rate_limit == AUTO:
        store = RateScopeStore(db, settings.parent.id, clock)
        served = functools.partial(served_in_minute, db, budget[0])
        waits = scoped_waits(waits, store, served, clock)
    return planner_app(
        settings, cursors, windows, publisher, clock, unmarked, sources, registry.wake, waits
    )


def planner_app(
    settings: PlannerSettings,
    cursors: CursorStore,
    windows: WindowStore,
    publisher: Publisher,
    clock: Clock,
    unmarked: BatchFinder | None = None,
    sources: Callable[[], RunSources] | None = None,
    record_wake: Callable[[str, int], None] | None = None,
    waits: Callable[[list[str]], Mapping[str, SharedRead]] | None = None,
) -> Flask:
    """The ``/run`` and ``/plan`` endpoints around the planner's work, given its
    collaborators."""

    def plan(task: PlanTask) -> None:
        # Acknowledged even when a source failed (run_planner logs it as an error): the next
        # minute's run plans it again, while a redelivery would plan the slice's other sources
        # again too, and a source that keeps failing would send its slice to the dead letters.
        run_planner(
            settings,
            cursors,
            windows,
            publisher,
            clock,
            unmarked,
            lambda: list(task.sources),
            record_wake,
            task.waits,
        )

    app = create_app("planner", settings.project, {"/plan": (PlanTask, plan)})

    @app.post("/run")
    def run():
        listed = sources() if sources else RunSources(list(settings.sources), [])
        # Computed once for the run: each child's share needs every child sharing the budget.
        shared = waits(listed.active) if waits else {}
        handed_out = fan_out(listed.due, settings.plan_slice, publisher, shared)
        structured_log.event(
            log,
            logging.INFO,
            f"handed out {handed_out['sources']} source(s) in {handed_out['slices']} slice(s)",
            **handed_out,
        )
        return jsonify(handed_out), 200

    return app


def app() -> Flask:
    """The gunicorn entry point: ``gunicorn 'services.planner.main:app()'``."""
    return build("planner", create_planner_app)
