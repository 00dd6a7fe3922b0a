"""The subscriptions the pipeline declares behave as it relies on, on the Pub/Sub emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.pubsub_setup import ensure_pull_subscription, ensure_push_subscription, ensure_topic
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber

pytestmark = pytest.mark.integration


class Endpoint:
    """A push endpoint answering every delivery with ``status``, counting them."""

    def __init__(self, status: int) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.deliveries += 1
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.status = status
        self.deliveries = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def refusing() -> Iterator[Endpoint]:
    endpoint = Endpoint(500)
    yield endpoint
    endpoint.close()


def test_a_message_the_endpoint_keeps_refusing_goes_to_the_dead_letter_topic(
    local_cloud, pubsub_names, refusing
):
    project = local_cloud.project
    publisher, subscriber = pubsub_publisher(), pubsub_subscriber()
    topic = ensure_topic(publisher, project, f"batches-{pubsub_names}")
    dead = ensure_topic(publisher, project, f"dead-{pubsub_names}")
    inspect = ensure_pull_subscription(subscriber, project, f"dead-{pubsub_names}", dead)
    ensure_push_subscription(
        subscriber,
        project,
        f"writer-{pubsub_names}",
        topic,
        refusing.url,
        ack_deadline_seconds=60,
        dead_letter_topic_path=dead,
        max_delivery_attempts=5,
        maximum_backoff_seconds=2,
    )
    publisher.publish(topic, b'{"a": 1}', batch_id="b-1").result(timeout=30)
    deadline = time.monotonic() + 60
    received = []
    while not received and time.monotonic() < deadline:
        response = subscriber.pull(
            request={"subscription": inspect, "max_messages": 10}, timeout=10
        )
        received = list(response.received_messages)
    assert [m.message.data for m in received] == [b'{"a": 1}']
    attributes = received[0].message.attributes
    assert attributes["batch_id"] == "b-1"
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert refusing.deliveries == 5


def test_declaring_again_points_the_subscription_at_a_new_endpoint(local_cloud, pubsub_names):
    project = local_cloud.project
    publisher, subscriber = pubsub_publisher(), pubsub_subscriber()
    topic = ensure_topic(publisher, project, f"windows-{pubsub_names}")
    dead = ensure_topic(publisher, project, f"dead-{pubsub_names}")
    name = f"fetcher-{pubsub_names}"
    for url in ("http://127.0.0.1:1/", "http://127.0.0.1:2/"):
        path = ensure_push_subscription(
            subscriber,
            project,
            name,
            topic,
            url,
            ack_deadline_seconds=600,
            dead_letter_topic_path=dead,
        )
    subscription = subscriber.get_subscription(request={"subscription": path})
    assert subscription.push_config.push_endpoint == "http://127.0.0.1:2/"
    assert subscription.ack_deadline_seconds == 600
    assert subscription.dead_letter_policy.max_delivery_attempts == 5
