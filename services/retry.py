"""``duo-telephony retry SOURCE WINDOW``: puts a quarantined (or failed) window back, so the
next planner run sends it and a fetcher reads it again from where it stopped."""

from __future__ import annotations

import argparse
import os
import re
import sys

from services.settings import ConfigError, firestore_database
from shared.clock import SystemClock
from shared.gcp.clients import firestore_client
from shared.gcp.source_registry import SourceRegistry
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import WINDOW_ID_PATTERN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the source id (as status shows it)")
    parser.add_argument("window", help="the window id, <mintime>-<maxtime> (as status shows it)")


def run(args: argparse.Namespace) -> int:
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
    if not project:
        print("duo-telephony retry: GOOGLE_CLOUD_PROJECT is required but not set", file=sys.stderr)
        return 2
    if not re.fullmatch(WINDOW_ID_PATTERN, args.window):
        print(f"duo-telephony retry: {args.window!r} is not a window id", file=sys.stderr)
        return 2
    try:
        database = firestore_database(os.environ)
    except ConfigError as error:
        print(f"duo-telephony retry: {error}", file=sys.stderr)
        return 2
    db = firestore_client(project, database)
    store = WindowStore(db, SystemClock())
    if not store.requeue(args.source, args.window):
        print(
            f"duo-telephony retry: source {args.source} has no quarantined or failed window "
            f"{args.window}",
            file=sys.stderr,
        )
        return 1
    # A source the planner skips while it has nothing to do (shared.pipeline.wake) is due again
    # at once, so the window is sent by the next run.
    SourceRegistry(db, SystemClock()).wake(args.source, None)
    print(f"window {args.window} of {args.source} is planned again; the next planner run sends it")
    return 0
