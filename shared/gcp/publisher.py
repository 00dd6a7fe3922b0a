"""Publishing the pipeline's messages, waiting until Pub/Sub has them durably."""

from __future__ import annotations

from collections.abc import Iterable

from google.cloud import pubsub_v1

from shared.pipeline.messages import PlanTask, RecordBatch, SpanCheck, WindowTask, encode
from shared.pipeline.schemas import PLAN_TASK, RECORD_BATCH, SPAN_CHECK, WINDOW_TASK

PUBLISH_TIMEOUT_SECONDS = 60.0


class Publisher:
    def __init__(
        self,
        client: pubsub_v1.PublisherClient,
        project: str,
        window_topic: str,
        batch_topic: str | None = None,
        plan_topic: str | None = None,
    ) -> None:
        self._client = client
        self._window_topic = client.topic_path(project, window_topic)
        self._batch_topic = client.topic_path(project, batch_topic) if batch_topic else None
        self._plan_topic = client.topic_path(project, plan_topic) if plan_topic else None

    def publish_tasks(self, tasks: Iterable[WindowTask]) -> int:
        futures = [
            self._client.publish(
                self._window_topic,
                encode(task),
                type=WINDOW_TASK,
                source=task.source,
                window_id=task.window_id,
            )
            for task in tasks
        ]
        for future in futures:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        return len(futures)

    def publish_plans(self, plans: Iterable[PlanTask]) -> int:
        """Every plan task sent at once, then waited on together: a fleet's slices take one
        round trip, not one each."""
        if self._plan_topic is None:
            raise RuntimeError("this publisher has no plan topic")
        futures = [
            self._client.publish(self._plan_topic, encode(plan), type=PLAN_TASK) for plan in plans
        ]
        for future in futures:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        return len(futures)

    def publish_check(self, check: SpanCheck) -> str:
        """A late-record check, on the window topic: the fetchers do it."""
        future = self._client.publish(
            self._window_topic, encode(check), type=SPAN_CHECK, source=check.source
        )
        return future.result(timeout=PUBLISH_TIMEOUT_SECONDS)

    def publish_batch(self, batch: RecordBatch) -> str:
        if self._batch_topic is None:
            raise RuntimeError("this publisher has no batch topic")
        future = self._client.publish(
            self._batch_topic,
            encode(batch),
            type=RECORD_BATCH,
            source=batch.source,
            window_id=batch.window_id,
            batch_id=batch.batch_id,
        )
        return future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
