"""The whole pipeline on one machine: the three services as separate gunicorn processes,
wired by push subscriptions on the Pub/Sub emulator, as Cloud Run and Pub/Sub would wire them.

The demo, the benchmark and the integration tests all run the pipeline through this class.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from google.api_core.exceptions import Conflict

from harness.emulators import Emulator, EmulatorSpec, http_request
from harness.pubsub_setup import (
    ensure_pull_subscription,
    ensure_push_subscription,
    ensure_topic,
)
from shared.clock import Clock, SystemClock
from shared.gcp.clients import firestore_client, pubsub_publisher, pubsub_subscriber, storage_client
from shared.gcp.cursor_store import CursorStore
from shared.gcp.window_store import WindowStore
from shared.pipeline.progress import Progress
from shared.pipeline.topics import TopicNames

SERVICES = ("planner", "fetcher", "writer")
# Redeliveries back off up to this locally (60 s in production), so a local run reaches the
# dead-letter topic in seconds rather than minutes.
LOCAL_MAX_BACKOFF_SECONDS = 4


@dataclass(frozen=True)
class PipelineConfig:
    project: str
    bucket: str
    # The single-account variables; empty for a fleet read only from the sources file or an
    # MSP parent's children (``extra_env``: DUO_SOURCES_FILE, DUO_MSP_PARENT).
    duo_api_host: str = ""
    duo_ikey: str = ""
    duo_skey: str = ""
    source: str = "default"
    prefix: str = "duo-telephony"
    gzip: bool = False
    enrich: bool = False
    rate_per_minute: float | str = 30.0  # or "auto"
    lookback: str = "24h"
    parallelism: int | None = None  # PLAN_PARALLELISM; None: the planner's default
    time_budget: str = "4m"
    lease: str = "60s"
    topics: TopicNames = field(default_factory=TopicNames)
    fetcher_threads: int = 8
    writer_threads: int = 8
    planner_threads: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def service_env(self) -> dict[str, str]:
        single = {
            "DUO_API_HOST": self.duo_api_host,
            "DUO_IKEY": self.duo_ikey,
            "DUO_SKEY": self.duo_skey,
        }
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "SOURCE_ID": self.source,
            **{name: value for name, value in single.items() if value},
            "DUO_RATE_LIMIT_PER_MINUTE": str(self.rate_per_minute),
            "WINDOW_TOPIC": self.topics.windows,
            "BATCH_TOPIC": self.topics.batches,
            "PLAN_TOPIC": self.topics.plans,
            "GCS_BUCKET": self.bucket,
            "GCS_PREFIX": self.prefix,
            "GCS_GZIP": str(self.gzip).lower(),
            "ENRICH_RECORDS": str(self.enrich).lower(),
            "LOOKBACK": self.lookback,
            "FETCH_TIME_BUDGET": self.time_budget,
            "WINDOW_LEASE": self.lease,
            **({"PLAN_PARALLELISM": str(self.parallelism)} if self.parallelism else {}),
            **self.extra_env,
        }


class LocalPipeline:
    def __init__(
        self,
        config: PipelineConfig,
        cloud_env: Mapping[str, str],
        log_dir: Path,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.log_dir = Path(log_dir)
        self._clock = clock or SystemClock()
        self._env = {**cloud_env, **config.service_env()}
        self.services: dict[str, Emulator] = {}
        self._replaced: list[Emulator] = []  # old instances left to drain; stopped with the rest
        self._wired = False

    def start(self) -> LocalPipeline:
        try:
            self._ensure_bucket()
            for name in SERVICES:
                self.start_service(name)
            self._wire_subscriptions()
        except BaseException:
            self.stop()
            raise
        return self

    def start_planner_only(self) -> LocalPipeline:
        """The planner alone, its topics there but read by nobody: to time what Cloud
        Scheduler's call does, without the fetchers' and writers' work beside it."""
        try:
            publisher, project = pubsub_publisher(), self.config.project
            for topic in astuple(self.config.topics):
                ensure_topic(publisher, project, topic)
            self.start_service("planner")
        except BaseException:
            self.stop()
            raise
        return self

    def _service_spec(self, name: str, overrides: Mapping[str, str]) -> EmulatorSpec:
        threads = {
            "fetcher": self.config.fetcher_threads,
            "writer": self.config.writer_threads,
            "planner": self.config.planner_threads,
        }
        # Production's gunicorn settings, with a line in the log when SIGTERM has been handled.
        conf = Path(__file__).resolve().parent / "gunicorn_conf.py"

        def argv(host: str, port: int) -> list[str]:
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(conf),
                "--bind",
                f"{host}:{port}",
                "--threads",
                str(threads[name]),
                f"services.{name}.main:app()",
            ]

        env = {**self._env, **overrides}
        return EmulatorSpec(name=name, argv=argv, ready_path="/healthz", env=env, kind="service")

    def start_service(self, name: str, overrides: Mapping[str, str] | None = None) -> None:
        """Starts (or restarts, on a new port) one service, and points its subscription at it;
        ``overrides`` changes its environment (a fixed configuration, say)."""
        if name in self.services:
            self.services[name].stop()
        self.services[name] = Emulator(self._service_spec(name, overrides or {}), self.log_dir)
        self.services[name].start()
        if self._wired:
            self._wire_subscriptions()

    def replace_service(self, name: str) -> Emulator:
        """Starts a new instance of ``name`` and points its subscription at it while the old
        instance keeps running, as Cloud Run brings a new instance up while a stopping one
        drains; returns the old one, for the caller to signal and wait on."""
        old = self.services.pop(name)
        self._replaced.append(old)
        self.start_service(name)
        return old

    def kill_service(self, name: str) -> None:
        """Ends a service at once (SIGKILL), as a crashed instance would end."""
        self.services[name].kill()

    def _ensure_bucket(self) -> None:
        client = storage_client(self.config.project)
        with contextlib.suppress(Conflict):
            client.create_bucket(self.config.bucket)

    def _wire_subscriptions(self) -> None:
        project, topics = self.config.project, self.config.topics
        publisher, subscriber = pubsub_publisher(), pubsub_subscriber()
        windows = ensure_topic(publisher, project, topics.windows)
        batches = ensure_topic(publisher, project, topics.batches)
        plans = ensure_topic(publisher, project, topics.plans)
        dead = ensure_topic(publisher, project, topics.dead_letters)
        ensure_pull_subscription(subscriber, project, topics.dead_letters, dead)
        ensure_push_subscription(
            subscriber,
            project,
            f"{topics.plans}-planner",
            plans,
            f"http://{self.services['planner'].address}/plan",
            ack_deadline_seconds=120,
            dead_letter_topic_path=dead,
            maximum_backoff_seconds=LOCAL_MAX_BACKOFF_SECONDS,
        )
        ensure_push_subscription(
            subscriber,
            project,
            f"{topics.windows}-fetcher",
            windows,
            f"http://{self.services['fetcher'].address}/",
            ack_deadline_seconds=600,
            dead_letter_topic_path=dead,
            maximum_backoff_seconds=LOCAL_MAX_BACKOFF_SECONDS,
        )
        ensure_push_subscription(
            subscriber,
            project,
            f"{topics.batches}-writer",
            batches,
            f"http://{self.services['writer'].address}/",
            ack_deadline_seconds=60,
            dead_letter_topic_path=dead,
            maximum_backoff_seconds=LOCAL_MAX_BACKOFF_SECONDS,
        )
        self._wired = True

    def trigger_planner(self, timeout: float = 120) -> dict[str, int]:
        """What Cloud Scheduler does: POST the planner's /run; its answer, the sources and
        slices it handed out (the slices are planned after it answers, pushed to /plan)."""
        status, body = http_request(
            "POST", f"http://{self.services['planner'].address}/run", timeout=timeout
        )
        if status != 200:
            raise RuntimeError(f"planner /run answered {status}: {body[:500]}")
        return json.loads(body)

    def status(self) -> dict[str, Any]:
        db = firestore_client(self.config.project)
        try:
            store = CursorStore(db, WindowStore(db, self._clock), self._clock)
            return store.status(self.config.source)
        finally:
            db.close()

    def reading(self) -> Progress | None:
        """How far the windows being read are, against Duo's count (as ``status`` shows)."""
        db = firestore_client(self.config.project)
        try:
            return WindowStore(db, self._clock).reading(self.config.source)
        finally:
            db.close()

    def window_docs(self) -> dict[str, dict[str, Any]]:
        """Every window document of the source, by window id."""
        db = firestore_client(self.config.project)
        try:
            windows = WindowStore(db, self._clock).windows(self.config.source)
            return {snapshot.id: snapshot.to_dict() for snapshot in windows.stream()}
        finally:
            db.close()

    def stop(self) -> None:
        for service in [*reversed(list(self.services.values())), *self._replaced]:
            service.stop()

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
