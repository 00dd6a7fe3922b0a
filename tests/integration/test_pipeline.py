"""The whole pipeline as it runs in production: three services as separate processes, wired
by push subscriptions on the Pub/Sub emulator, Firestore and Storage emulators, and the Duo
simulator. Every test ends by comparing the bucket with the simulator's ground truth."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs

import pytest
from google.cloud import firestore
from google.cloud.pubsub_v1 import SubscriberClient
from google.pubsub_v1 import PubsubMessage

from harness.catchup import LocalStack, RunOptions, catch_up, local_stack, settle
from harness.gunicorn_conf import SIGTERM_HANDLED
from harness.pubsub_setup import ensure_pull_subscription
from harness.storage_gate import StorageGate
from shared.clock import SystemClock
from shared.gcp.clients import pubsub_publisher, pubsub_subscriber, storage_client
from shared.gcp.window_store import WindowStore
from shared.pipeline.ids import batch_id, window_id
from shared.pipeline.messages import RecordBatch, WindowTask, decode, encode
from shared.pipeline.objects import parse_object_name
from shared.secops.udm_mapping import to_udm

pytestmark = pytest.mark.integration


def options(**overrides) -> RunOptions:
    settings = {
        "records": 6000,
        "days": 1.0,
        "rate_limit": 600,
        "bucket": f"pipeline-{uuid.uuid4().hex[:10]}",
        "plan_every": 2.0,
        "timeout": 300.0,
    }
    return RunOptions(**(settings | overrides))


def quiet(_line: str) -> None:
    pass


def windows(stack: LocalStack) -> list[dict]:
    db = firestore.Client(project=stack.pipeline.config.project)
    store = WindowStore(db, SystemClock())
    return [
        doc.to_dict() | {"id": doc.id}
        for doc in store.windows(stack.pipeline.config.source).stream()
    ]


def blobs(stack: LocalStack) -> dict[str, int]:
    """Object name -> generation, for this run's source."""
    client = storage_client(stack.pipeline.config.project)
    return {
        blob.name: blob.generation
        for blob in client.list_blobs(stack.options.bucket, prefix=f"{stack.options.prefix}/")
        if f"_{stack.pipeline.config.source}_" in blob.name
    }


def copy_subscription(stack: LocalStack, topic: str) -> str:
    """A pull subscription that keeps a copy of every message published to ``topic``."""
    project = stack.pipeline.config.project
    publisher = pubsub_publisher()
    return ensure_pull_subscription(
        pubsub_subscriber(), project, f"{topic}-copy", publisher.topic_path(project, topic)
    )


def drain(subscription: str) -> list[bytes]:
    subscriber = pubsub_subscriber()
    messages = []
    while received := _pull(subscriber, subscription):
        messages += [m.data for m in received]
    return messages


def _pull(subscriber: SubscriberClient, subscription: str) -> list[PubsubMessage]:
    """One pull, acknowledged: it returns as soon as messages are there, or after about a
    second with none (the emulator answers just before the deadline)."""
    response = subscriber.pull(
        request={"subscription": subscription, "max_messages": 1000}, timeout=2
    )
    received = response.received_messages
    if received:
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]}
        )
    return [m.message for m in received]


def test_a_catch_up_lands_every_record_exactly_once_at_close_to_minimum_cost(
    local_cloud, tmp_path: Path
):
    with local_stack(options(records=8000, days=2), tmp_path, quiet) as stack:
        summary = catch_up(stack, quiet)
        objects = blobs(stack)
        empty_windows = len([w for w in windows(stack) if w["records"] == 0])
    assert summary.expected == 8000
    assert summary.records == 8000
    assert summary.missing == 0 and summary.duplicated == 0
    # 8 full pages, at most one partial page per parallel window, and the steady-state windows
    # planned while the catch-up ran.
    assert summary.duo_requests <= 8 + 4 + empty_windows
    assert summary.rate_limited == 0
    assert all(name.endswith(".ndjson") for name in objects)
    assert sorted(objects) == sorted(objects, key=lambda name: name.rsplit("/", 1)[1][:22])


def test_records_duo_publishes_late_are_repaired_through_the_running_services(
    local_cloud, tmp_path: Path
):
    # Issue 8, case 1, end to end: the planner sends the checks, the fetcher's app answers
    # them (204, not 500), re-reads land the late records. The records are dense (15 min) so
    # that some of the last 2 min are late, still hidden when the catch-up ends (windows end
    # on whole minutes: up to a minute after the start); a check comes after they show:
    # 2 min (Duo's delay) + 2 min late < 270 s after a window's end.
    repair = {"REPAIR_CHECKS": "270s,24h", "REPAIR_CHECK_BATCH": "1m"}
    late = options(records=3000, days=0.01, late_rate=0.2, late_by="2m")
    with local_stack(late, tmp_path, quiet, extra_env=repair) as stack:
        caught_up = catch_up(stack, quiet)
        settled = settle(stack, period=5.0, progress=quiet)
        fetcher_errors = [
            line
            for line in (tmp_path / "fetcher.log").read_text().splitlines()
            if '"severity": "ERROR"' in line
        ]
    # Some records were hidden when their window was first read, and only a re-read found them.
    assert caught_up.expected < 3000
    assert caught_up.missing == 0  # late records not yet checked are not counted missing...
    assert settled.expected == 3000
    assert settled.missing == 0 and settled.duplicated == 0  # ...once settled, they are
    assert settled.repair.check_requests >= 1
    assert settled.repair.records_repaired == 3000 - caught_up.records
    assert fetcher_errors == []


def test_429_storms_and_5xx_bursts_delay_but_lose_nothing(local_cloud, tmp_path: Path):
    # One window of four pages against a budget of three requests a minute: the fourth page
    # meets a 429 for sure. The planner runs once a minute, as Cloud Scheduler does; planning
    # faster would spend the tiny budget on new windows and starve the catch-up. With seed 4
    # the simulator's fault dice answer the first requests (one window, asked one at a time)
    # ok, malformed, 5xx, ok, 5xx: both kinds are served whatever the timing.
    run = options(
        records=4000,
        seed=4,
        parallelism=1,
        rate_limit=3,
        fail_rate=0.2,
        malformed_rate=0.1,
        plan_every=60.0,
        timeout=600.0,
    )
    # The pipeline is told the account allows far more than the simulator does: a 429 storm.
    with local_stack(run, tmp_path, quiet, {"DUO_RATE_LIMIT_PER_MINUTE": "600"}) as stack:
        summary = catch_up(stack, quiet)
        served = stack.duo.simulator.api.stats()
    assert served["rate_limited"] > 0
    assert served["server_errors"] > 0
    assert served["malformed"] > 0
    assert summary.records == summary.expected == 4000
    assert summary.missing == 0 and summary.duplicated == 0


def test_gzip_objects_of_enriched_records(local_cloud, tmp_path: Path):
    with local_stack(options(records=2500, gzip=True, enrich=True), tmp_path, quiet) as stack:
        summary = catch_up(stack, quiet)
        client = storage_client(stack.pipeline.config.project)
        names = sorted(blobs(stack))
        first = (
            client.bucket(stack.options.bucket).blob(names[0]).download_as_bytes(raw_download=True)
        )
        host = stack.duo.api_host.split("//")[1].split(":")[0]
    assert summary.missing == 0 and summary.duplicated == 0 and summary.records == 2500
    assert all(name.endswith(".ndjson.gz") for name in names)
    record = json.loads(gzip.decompress(first).splitlines()[0])
    assert list(record)[-2:] == ["eventtype", "host"]
    assert record["eventtype"] == "telephony" and record["host"] == host
    assert to_udm(record)["metadata"]["eventType"] == "USER_UNCATEGORIZED"


def test_redelivered_and_reordered_messages_change_nothing(local_cloud, tmp_path: Path):
    run = options(records=6000, parallelism=3)
    with (
        StorageGate(local_cloud.env["STORAGE_EMULATOR_HOST"]) as gate,
        # Late-record checks off: every message on the topics is a task or a batch, and every
        # Duo request a page.
        local_stack(
            run, tmp_path, quiet, {"STORAGE_EMULATOR_HOST": gate.url, "REPAIR_CHECKS": "none"}
        ) as stack,
    ):
        topics = stack.pipeline.config.topics
        # Hold the first second page: its window is certainly in flight while the copies of
        # its task and of its first batch arrive.
        second_page = stack.duo.simulator.api.hold(lambda _n, query: "next_offset=" in query)
        # Hold the first upload until a copy of its batch uploads the same object: two copies
        # are inside the create-only upload at once.
        first_upload = gate.race(lambda _name: True)
        with (
            _Replayer(stack, [topics.windows, topics.batches]) as replayer,
            _Generations(stack) as generations,
        ):
            stack.pipeline.trigger_planner()
            held = _window_of(second_page.wait_arrived(timeout=60))
            _wait_for_entries(
                stack, "fetcher", lambda e: e["message"] == f"window {held} skipped", 1
            )
            # The original and two copies of its first batch, handled while it is in flight.
            _wait_for_entries(stack, "writer", _delivery_of(f"{held}-p00000"), 3)
            raced = parse_object_name(first_upload.wait_raced(timeout=60))
            second_page.release()
            summary = catch_up(stack, quiet)
            replayer.stop()
            _wait_until(lambda: _open_windows(stack) == 0, "every window fetched")
            for name, copies in replayer.deliveries().items():
                service = "writer" if _is_batch(name) else "fetcher"
                _wait_for_entries(stack, service, _delivery_of(name), copies)
            done = windows(stack)
            for window in done:
                _wait_for_entries(stack, "fetcher", _report(window["id"], "fetched"), 1)
        requests = stack.duo.simulator.api.stats()["requests"]
        landed = [e for e in _entries(stack, "writer") if "records_written" in e]
    assert summary.missing == 0 and summary.duplicated == 0
    assert summary.records == summary.expected == 6000
    # Three copies of each of the three backlog windows' tasks and of their six pages at least.
    assert replayer.replayed[topics.windows] >= 3 * 3
    assert replayer.replayed[topics.batches] >= 3 * 6
    # Every object kept the generation it was first seen with, and was never patched.
    assert generations.changed == []
    assert generations.seen and all(meta == 1 for _gen, meta in generations.seen.values())
    # Each batch's records were written once, however many of its copies raced; the raced
    # copy found the object the other had just created.
    written: Counter[str] = Counter()
    for entry in landed:
        written[_batch_of(entry)] += entry["records_written"]
    assert dict(written) == {_batch_of(e): e["records"] for e in landed}
    assert [e for e in landed if e["conflicting"]] == []
    raced_batch = batch_id(raced.window_id, raced.page)
    assert any(e["already_present"] for e in landed if _batch_of(e) == raced_batch)
    # No window was fetched twice: one request per checkpointed page, and one for a window
    # whose read found nothing (an empty read takes no page number).
    assert requests == sum(w["pages"] or 1 for w in done)


def test_a_fetcher_killed_mid_window_resumes_from_its_checkpoint(local_cloud, tmp_path: Path):
    run = options(records=9000, parallelism=1)
    short_lease = {"FETCH_TIME_BUDGET": "3s", "WINDOW_LEASE": "15s"}
    with local_stack(run, tmp_path, quiet, short_lease) as stack:
        fourth_page = stack.duo.simulator.api.hold(lambda number, _query: number == 4)
        stack.pipeline.trigger_planner()
        held = _window_of(fourth_page.wait_arrived(timeout=60))
        stack.pipeline.kill_service("fetcher")  # SIGKILL while page 4 is in flight
        fourth_page.release()  # its answer meets a closed socket
        at_kill = _window(stack, held)
        before_restart = len(_entries(stack, "fetcher"))
        stack.pipeline.start_service("fetcher")
        summary = catch_up(stack, quiet)
        _wait_for_entries(stack, "fetcher", _report(held, "fetched"), 1)
        finished = _window(stack, held)
        resumed = [
            e
            for e in _entries(stack, "fetcher")[before_restart:]
            if e.get("window_id") == held and "outcome" in e
        ]
    # Pages 1 to 3 were checkpointed, page 4 was not.
    assert at_kill["state"] == "fetching" and at_kill["pages"] == 3
    assert summary.records == summary.expected == 9000
    assert summary.missing == 0 and summary.duplicated == 0
    # The restarted fetcher asked for page 4 again and nothing before it: pages 4 to 9.
    assert sum(e["pages"] for e in resumed) == 6
    assert sum(e["requests"] for e in resumed) == 6
    # Two claims at least: the killed one and the resumed one (more if the 3 s budget handed on).
    assert finished["pages"] == 9 and finished["attempts"] >= 2


def test_a_fetcher_stopped_with_sigterm_hands_its_window_on(local_cloud, tmp_path: Path):
    # A budget far longer than the test: only the SIGTERM path can hand the window on.
    run = options(records=9000, parallelism=1)
    long_budget = {"FETCH_TIME_BUDGET": "5m", "WINDOW_LEASE": "10m"}
    with local_stack(run, tmp_path, quiet, long_budget) as stack:
        tasks = copy_subscription(stack, stack.pipeline.config.topics.windows)
        third_page = stack.duo.simulator.api.hold(lambda number, _query: number == 3)
        stack.pipeline.trigger_planner()
        held = _window_of(third_page.wait_arrived(timeout=60))
        old = stack.pipeline.services["fetcher"]
        old.terminate()  # SIGTERM, as Cloud Run scales in, while page 3 is in flight
        _wait_for_entries(stack, "fetcher", lambda e: e["message"] == SIGTERM_HANDLED, 1)
        # The replacement takes the pushes from now on, as another Cloud Run instance would.
        stack.pipeline.replace_service("fetcher")
        third_page.release()
        old.stop()  # waits for the old instance to finish its request and exit
        handed_on = [e for e in _entries(stack, "fetcher") if _report(held, "handed_on")(e)]
        published = [decode(data) for data in drain(tasks)]
        summary = catch_up(stack, quiet)
        _wait_for_entries(stack, "fetcher", _report(held, "fetched"), 1)
        fetched = [e for e in _entries(stack, "fetcher") if _report(held, "fetched")(e)]
        finished = _window(stack, held)
    # The stopping instance checkpointed page 3, gave the window back and sent its task again,
    # seconds after SIGTERM rather than at its five-minute budget.
    assert [(e["pages"], e["requests"]) for e in handed_on] == [(3, 3)]
    assert handed_on[0]["seconds"] < 60
    assert [t.window_id for t in published if isinstance(t, WindowTask)] == [held, held]
    # The replacement went on from page 4: a clean hand-over re-fetches nothing.
    assert [(e["pages"], e["requests"]) for e in fetched] == [(6, 6)]
    assert finished["pages"] == 9 and finished["attempts"] == 2
    assert summary.records == summary.expected == 9000
    assert summary.missing == 0 and summary.duplicated == 0


def test_a_writer_that_keeps_failing_loses_nothing_once_fixed(local_cloud, tmp_path: Path):
    run = options(records=3000)
    broken = {
        "GCS_BUCKET": f"missing-{uuid.uuid4().hex[:10]}",
        "FETCH_TIME_BUDGET": "3s",
        "WINDOW_LEASE": "15s",
        # Locally a batch is dead-lettered within seconds (5 attempts, backoff up to 4 s):
        # read the window again 20 s after it was fetched rather than 15 minutes.
        "LANDING_TIMEOUT": "20s",
    }
    with local_stack(run, tmp_path, quiet, broken) as stack:
        stack.pipeline.trigger_planner()
        failures = _wait_for_log_lines(stack, "writer", "Pub/Sub will redeliver", 8, timeout=120)
        before_fix = blobs(stack)
        # Redelivered, or dead-lettered and read again after the landing timeout: either way
        # the fixed writer lands every batch, once. The planner, which looks in the same bucket
        # before a batch is read again, is fixed with it (until then it waits, saying why).
        for service in ("writer", "planner"):
            stack.pipeline.start_service(service, {"GCS_BUCKET": stack.options.bucket})
        summary = catch_up(stack, quiet)
    assert failures >= 8 and before_fix == {}
    assert summary.records == summary.expected == 3000
    assert summary.missing == 0 and summary.duplicated == 0


def test_a_message_that_can_never_be_valid_is_dropped_with_its_id(local_cloud, tmp_path: Path):
    with local_stack(options(records=100), tmp_path, quiet) as stack:
        config = stack.pipeline.config
        dead = copy_subscription(stack, config.topics.dead_letters)
        publisher = pubsub_publisher()
        topic = publisher.topic_path(config.project, config.topics.windows)
        message_id = publisher.publish(topic, b'{"type": "window-task"}').result(timeout=30)
        first = _wait_for_entries(stack, "fetcher", lambda e: e.get("message_id") == message_id, 1)
        # The yardstick: a valid task whose window document is corrupt (no state; no mintime,
        # so the planner never reads it), which the fetcher answers 500 on every delivery.
        # Once Pub/Sub has dead-lettered it, the invalid message, first delivered earlier,
        # would have been dead-lettered too had its delivery failed.
        now = int(time.time() * 1000)
        control = WindowTask(config.source, now - 7_200_000, now - 3_600_000)
        db = firestore.Client(project=config.project)
        WindowStore(db, SystemClock()).window(config.source, control.window_id).set(
            {"corrupt": True}
        )
        publisher.publish(topic, encode(control)).result(timeout=30)
        dead_letters = _dead_letters_until(dead, encode(control), timeout=90)
        deliveries = [e for e in _entries(stack, "fetcher") if e.get("message_id") == message_id]
        summary = catch_up(stack, quiet)
    entry = first[0]
    assert entry["severity"] == "ERROR" and entry["message_id"] == message_id
    assert "invalid" in entry["message"]
    assert len(deliveries) == 1  # acknowledged at its first delivery
    assert dead_letters == [encode(control)]
    assert summary.missing == 0 and summary.records == 100


class _Replayer:
    """Copies every message published to ``topics`` and publishes each copy three more times,
    shuffled with the others: twice at once (racing the original) and once one to three
    rounds later (behind newer messages), as at-least-once delivery may. Copies carry an
    attribute so they are not copied again."""

    def __init__(self, stack: LocalStack, topics: list[str]) -> None:
        project = stack.pipeline.config.project
        self._publisher = pubsub_publisher()
        self._subscriber = pubsub_subscriber()
        self._copies = {
            copy_subscription(stack, topic): self._publisher.topic_path(project, topic)
            for topic in topics
        }
        self._topic_names = dict(zip(self._copies.values(), topics, strict=True))
        self._rng = random.Random(3)
        self._later: list[tuple[int, str, bytes]] = []  # (round due, topic path, data)
        self._names: Counter[str] = Counter()  # batch or window id -> originals and copies
        self.replayed: Counter[str] = Counter()  # topic -> copies published
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replayer", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> _Replayer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Publishes what is still due, stops, and raises what went wrong in the thread."""
        self._stopping.set()
        self._thread.join(timeout=60)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def deliveries(self) -> dict[str, int]:
        """How many deliveries of each batch and window the services will see, at least."""
        return dict(self._names)

    def _run(self) -> None:
        try:
            number = 0
            while not self._stopping.is_set():  # a round's pulls wait up to a second
                number += 1
                self._round(number, last=False)
            self._round(number + 1, last=True)
        except BaseException as error:  # the test sees it when it stops the replayer
            self._error = error

    def _round(self, number: int, *, last: bool) -> None:
        out: list[tuple[str, bytes]] = []
        for subscription, topic in self._copies.items():
            pulled = _pull(self._subscriber, subscription)
            for data in [m.data for m in pulled if "replayed" not in m.attributes]:
                out += [(topic, data), (topic, data)]
                self._later.append((number + self._rng.randint(1, 3), topic, data))
                self._names[_name_of(data)] += 4
        due = [(topic, data) for at, topic, data in self._later if last or at <= number]
        self._later = [item for item in self._later if not (last or item[0] <= number)]
        out += due
        self._rng.shuffle(out)
        futures = [self._publisher.publish(topic, data, replayed="1") for topic, data in out]
        for future in futures:
            future.result(timeout=30)
        for topic, _data in out:
            self.replayed[self._topic_names[topic]] += 1


class _Generations:
    """Lists the run's objects twice a second while it runs; any object whose generation or
    metageneration differs from what it was first seen with was rewritten or patched."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self._client = storage_client(stack.pipeline.config.project)
        self.seen: dict[str, tuple[int, int]] = {}  # name -> (generation, metageneration)
        self.changed: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="generations", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> _Generations:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)
        if self._error is not None and exc is None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stopping.wait(0.5):
                self._look()
            self._look()  # once more after the last write the test waited for
        except BaseException as error:  # raised when the test leaves the block
            self._error = error

    def _look(self) -> None:
        prefix = f"{self._stack.options.prefix}/"
        for blob in self._client.list_blobs(self._stack.options.bucket, prefix=prefix):
            if f"_{self._stack.pipeline.config.source}_" not in blob.name:
                continue
            now = (blob.generation, blob.metageneration)
            if self.seen.setdefault(blob.name, now) != now:
                self.changed.append(blob.name)


def _name_of(data: bytes) -> str:
    message = decode(data)
    return message.batch_id if isinstance(message, RecordBatch) else message.window_id


def _is_batch(name: str) -> bool:
    return "-p" in name  # batch ids end in -pNNNNN; window ids are two times


def _delivery_of(name: str) -> Callable[[dict], bool]:
    """A log entry of one handled delivery of the batch or window ``name``."""
    if _is_batch(name):
        return lambda e: e["message"] in (f"batch {name} landed", f"batch {name} already landed")
    return lambda e: e.get("window_id") == name and "outcome" in e


def _batch_of(entry: dict) -> str:
    return entry["message"].split()[1]  # "batch <id> landed"


def _report(window: str, outcome: str) -> Callable[[dict], bool]:
    return lambda e: e["message"] == f"window {window} {outcome}"


def _window_of(query: str) -> str:
    """The id of the window a Duo request asks for."""
    params = parse_qs(query)
    return window_id(int(params["mintime"][0]), int(params["maxtime"][0]))


def _open_windows(stack: LocalStack) -> int:
    return len([w for w in windows(stack) if w["state"] not in ("fetched", "done")])


def _dead_letters_until(subscription: str, wanted: bytes, timeout: float) -> list[bytes]:
    """Everything dead-lettered until ``wanted`` has been."""
    subscriber = pubsub_subscriber()
    found: list[bytes] = []
    deadline = time.monotonic() + timeout
    while wanted not in found:
        if time.monotonic() > deadline:
            raise AssertionError(f"not dead-lettered within {timeout:.0f} s: {wanted!r}")
        found += [m.data for m in _pull(subscriber, subscription)]
    return found


def _window(stack: LocalStack, window_id: str) -> dict:
    return next(w for w in windows(stack) if w["id"] == window_id)


def _entries(stack: LocalStack, service: str) -> list[dict]:
    """The service's structured log entries (other lines, such as gunicorn's, are skipped)."""
    entries = []
    for line in (stack.pipeline.log_dir / f"{service}.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line == SIGTERM_HANDLED:
                entries.append({"message": line})
            continue
        if isinstance(entry, dict) and "message" in entry:
            entries.append(entry)
    return entries


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def _wait_for_entries(
    stack: LocalStack,
    service: str,
    matches: Callable[[dict], bool],
    count: int,
    timeout: float = 60,
) -> list[dict]:
    """Waits until ``service`` has logged ``count`` entries that match; returns them."""
    found: list[dict] = []

    def enough() -> bool:
        found[:] = [e for e in _entries(stack, service) if matches(e)]
        return len(found) >= count

    _wait_until(enough, f"{count} matching entries in the {service} log", timeout)
    return found


def _wait_for_log_lines(
    stack: LocalStack, service: str, needle: str, count: int, timeout: float
) -> int:
    path = stack.pipeline.log_dir / f"{service}.log"
    deadline = time.monotonic() + timeout
    while True:
        seen = path.read_text().count(needle)
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)
