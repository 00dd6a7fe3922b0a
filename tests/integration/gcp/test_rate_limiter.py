"""The Firestore-shared Duo rate limit against the Firestore emulator.

Separate FirestoreRateLimiter objects stand for separate fetcher instances; each is used by
several threads. Timed tests use the real clock with generous tolerances.
"""

import itertools
import threading
import time

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.document import DocumentReference

from shared.clock import SystemClock
from shared.duo.rate_limit import LATE_START_FRACTION, strict_interval
from shared.gcp.rate_limiter import DEFAULT_COLLECTION, FirestoreRateLimiter
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

SOURCE = "DI0123456789ABCDEF"
T0 = 1_800_000_000.0
# What may separate acquire()'s return from the test's reading of the clock on a busy machine.
RECORDING_SLACK = 0.025


def _at(moment: float) -> object:
    """Equal to ``moment`` up to the rounding of sums of intervals at epoch magnitude (about
    1e-7 s per addition); approx's default relative tolerance would accept half an hour."""
    return pytest.approx(moment, abs=1e-5)


def _document(db: firestore.Client) -> dict:
    return db.collection(DEFAULT_COLLECTION).document(SOURCE).get().to_dict()


def _run_instances(
    db: firestore.Client, rate: float, instances: int, threads: int, requests: int
) -> tuple[list[float], float]:
    """Request start times of ``instances`` limiters x ``threads`` threads x ``requests``
    acquires each, sorted, and the seconds the whole run took."""
    limiters = [
        FirestoreRateLimiter(db, SOURCE, rate=rate, burst=1, clock=SystemClock())
        for _ in range(instances)
    ]
    starts: list[float] = []
    record = threading.Lock()

    def work(limiter: FirestoreRateLimiter) -> None:
        for _ in range(requests):
            limiter.acquire()
            now = time.time()
            with record:
                starts.append(now)

    workers = [
        threading.Thread(target=work, args=(limiter,))
        for limiter in limiters
        for _ in range(threads)
    ]
    began = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    return sorted(starts), time.time() - began


def test_instances_and_threads_together_keep_the_rate(firestore_db):
    rate = 10.0
    interval = 1 / rate
    starts, elapsed = _run_instances(firestore_db, rate, instances=4, threads=2, requests=5)

    assert len(starts) == 40
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    span = starts[-1] - starts[0]
    achieved = (len(starts) - 1) / span
    writes = _document(firestore_db)["writes"]
    print(
        f"\nconfigured {rate}/s, achieved {achieved:.2f}/s, smallest gap {min(gaps):.4f} s, "
        f"{writes} writes in {elapsed:.2f} s"
    )
    # Each request starts at its slot or at most LATE_START_FRACTION of an interval after it.
    assert min(gaps) >= interval * (1 - LATE_START_FRACTION) - RECORDING_SLACK
    assert span >= (len(starts) - 1) * interval - interval * LATE_START_FRACTION - RECORDING_SLACK
    # Slots dropped because a thread woke late lower it; a busy machine may drop a few.
    assert achieved >= 0.7 * rate
    for start in starts:
        assert sum(start <= t < start + 1 for t in starts) <= rate + 1


def test_the_document_is_written_about_once_a_second_whatever_the_rate(firestore_db):
    rate = 20.0
    starts, elapsed = _run_instances(firestore_db, rate, instances=2, threads=3, requests=10)

    writes = _document(firestore_db)["writes"]
    print(f"\n{len(starts)} requests at {rate}/s: {writes} writes in {elapsed:.2f} s")
    assert len(starts) == 60
    # 20 slots per reservation: 60 requests need 4 (each instance 2); dropped late slots may
    # add one or two. One write per request would be 60.
    assert 4 <= writes <= 6
    # Both instances reserve at the start; after that, one second of budget per write.
    assert writes <= elapsed + 2


def test_a_pause_elsewhere_reaches_an_instance_at_its_next_reservation(firestore_db):
    clock = FakeClock(T0)
    # A burst of 20 lets both instances hold nine unused slots at T0.
    throttled = FirestoreRateLimiter(firestore_db, SOURCE, rate=10, burst=20, clock=clock)
    other = FirestoreRateLimiter(firestore_db, SOURCE, rate=10, burst=20, clock=clock)
    throttled.acquire()
    other.acquire()
    assert clock.now() == T0

    throttled.pause(30)
    assert _document(firestore_db)["paused_until"] == T0 + 30

    times = []
    for _ in range(9):
        other.acquire()
        times.append(clock.now())
    # The other instance still uses the slots it held (documented) ...
    assert times == [_at(T0)] * 9
    # ... while the paused one dropped its own: its next batch starts at paused_until, and
    # without a burst after the pause.
    throttled.acquire()
    assert clock.now() == T0 + 30
    # The other instance's next reservation sees the pause, after that batch (ten slots).
    other.acquire()
    assert clock.now() == _at(T0 + 30 + 10 * strict_interval(10, burst=20))


def test_a_pause_delays_another_instance_with_the_real_clock(firestore_db):
    throttled = FirestoreRateLimiter(firestore_db, SOURCE, rate=5, burst=1)
    other = FirestoreRateLimiter(firestore_db, SOURCE, rate=5, burst=1)
    throttled.acquire()  # reserves one second of slots
    throttled.pause(1.5)  # longer than that second: only the pause can hold the other
    paused_until = _document(firestore_db)["paused_until"]

    other.acquire()
    assert time.time() >= paused_until


def test_a_reservation_is_a_batch_of_evenly_spaced_slots(firestore_db):
    clock = FakeClock(T0)
    first = FirestoreRateLimiter(firestore_db, SOURCE, rate=4, burst=1, clock=clock)
    second = FirestoreRateLimiter(firestore_db, SOURCE, rate=4, burst=1, clock=clock)

    step = strict_interval(4, 1)  # just over 0.25 s
    times = []
    for _ in range(4):
        first.acquire()
        times.append(clock.now())
    assert times == [_at(T0 + n * step) for n in range(4)]
    assert _document(firestore_db) == {"tat": _at(T0 + 4 * step), "paused_until": 0.0, "writes": 1}

    second.acquire()  # the next batch is the other instance's
    assert clock.now() == _at(T0 + 4 * step)
    first.acquire()  # its own next batch comes after that one
    assert clock.now() == _at(T0 + 8 * step)
    assert _document(firestore_db) == {
        "tat": _at(T0 + 12 * step),
        "paused_until": 0.0,
        "writes": 3,
    }


def test_burst_slots_are_shared_out_once(firestore_db):
    clock = FakeClock(T0)
    limiters = [
        FirestoreRateLimiter(firestore_db, SOURCE, rate=2, burst=3, clock=clock) for _ in range(4)
    ]
    times = []
    for limiter in limiters:
        limiter.acquire()
        times.append(clock.now())
    # Two slots per batch: the burst of three at T0 goes to the first two instances (the
    # second's other slot is one step later); each later batch starts two steps further on.
    step = strict_interval(2, burst=3)
    assert times == [_at(T0), _at(T0), _at(T0 + 2 * step), _at(T0 + 4 * step)]


def test_late_slots_are_dropped_not_used_in_a_burst(firestore_db):
    clock = FakeClock(T0)
    limiter = FirestoreRateLimiter(firestore_db, SOURCE, rate=10, burst=1, clock=clock)
    limiter.acquire()  # reserves ten slots from T0, one step (just over 0.1 s) apart
    clock.advance(0.52)  # the sixth slot is 0.02 s late: still usable; earlier ones not

    limiter.acquire()
    assert clock.now() == T0 + 0.52
    limiter.acquire()
    assert clock.now() == _at(T0 + 6 * strict_interval(10, 1))
    assert _document(firestore_db)["writes"] == 1


@pytest.mark.parametrize("document_exists", [False, True])
def test_an_instance_that_writes_between_a_read_and_a_write_wins(
    firestore_db, monkeypatch, document_exists
):
    clock = FakeClock(T0)
    first = FirestoreRateLimiter(firestore_db, SOURCE, rate=10, burst=1, clock=clock)
    other = FirestoreRateLimiter(firestore_db, SOURCE, rate=10, burst=1, clock=clock)
    if document_exists:
        firestore_db.collection(DEFAULT_COLLECTION).document(SOURCE).set(
            {"tat": T0 - 5, "paused_until": 0.0, "writes": 0}
        )
    races = [other.acquire]
    read = DocumentReference.get

    def read_then_race(self, *args, **kwargs):
        snapshot = read(self, *args, **kwargs)
        if races:
            races.pop()()  # the other instance reserves ten slots from T0 right now
        return snapshot

    monkeypatch.setattr(DocumentReference, "get", read_then_race)
    first.acquire()

    # Its write was refused, it backed off briefly, read again and took the next batch.
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.01
    assert clock.now() == _at(T0 + 10 * strict_interval(10, 1))
    assert _document(firestore_db)["writes"] == 2
    assert _document(firestore_db)["tat"] == _at(T0 + 20 * strict_interval(10, 1))


def test_an_instance_that_wrote_last_reserves_without_a_read_and_one_written_since_reads_again(
    firestore_db, monkeypatch
):
    # A slow account's budget (a slot per reservation) on one instance: one read, not one a
    # request; another instance's write in between makes the write on what it knew fail.
    clock = FakeClock(T0)
    first = FirestoreRateLimiter(firestore_db, SOURCE, rate=1, burst=1, clock=clock)
    other = FirestoreRateLimiter(firestore_db, SOURCE, rate=1, burst=1, clock=clock)
    reads = []
    read = DocumentReference.get

    def counted(self, *args, **kwargs):
        reads.append(self.id)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(DocumentReference, "get", counted)
    starts = []
    for limiter in (first, first, first, other, first):
        limiter.acquire()
        starts.append(clock.now())
    interval = strict_interval(1, 1)
    assert starts == [_at(T0 + n * interval) for n in range(5)]  # one slot each, in turn
    assert len(reads) == 3  # first's first reservation, the other's, first's after the other's
    assert _document(firestore_db)["writes"] == 5
