"""Creates the pipeline's topics and subscriptions if they are missing (local runs and tests;
production declares the same in cloudbuild.yaml)."""

from __future__ import annotations

import contextlib

from google.api_core.exceptions import AlreadyExists
from google.cloud import pubsub_v1


def ensure_topic(publisher: pubsub_v1.PublisherClient, project: str, name: str) -> str:
    path = publisher.topic_path(project, name)
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=path)
    return path


def ensure_push_subscription(
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    name: str,
    topic_path: str,
    endpoint: str,
    *,
    ack_deadline_seconds: int,
    dead_letter_topic_path: str,
    max_delivery_attempts: int = 5,
    maximum_backoff_seconds: int = 60,
) -> str:
    """A push subscription whose messages go to the dead-letter topic after repeated failures.

    An existing subscription gets the new endpoint (a local run picks new ports each time).
    """
    path = subscriber.subscription_path(project, name)
    request = {
        "name": path,
        "topic": topic_path,
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": ack_deadline_seconds,
        "dead_letter_policy": {
            "dead_letter_topic": dead_letter_topic_path,
            "max_delivery_attempts": max_delivery_attempts,
        },
        "retry_policy": {
            "minimum_backoff": {"seconds": 1},
            "maximum_backoff": {"seconds": maximum_backoff_seconds},
        },
    }
    try:
        subscriber.create_subscription(request=request)
    except AlreadyExists:
        subscriber.modify_push_config(
            request={"subscription": path, "push_config": {"push_endpoint": endpoint}}
        )
    return path


def ensure_pull_subscription(
    subscriber: pubsub_v1.SubscriberClient, project: str, name: str, topic_path: str
) -> str:
    path = subscriber.subscription_path(project, name)
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(request={"name": path, "topic": topic_path})
    return path
