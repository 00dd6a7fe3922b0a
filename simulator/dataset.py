"""The simulator's telephony events: deterministic per seed, generated once, served in order.

Records are compact tuples (timestamps as integer microseconds); the Duo JSON shape is built only
for the records actually served. The base data set covers the ``days`` that end two minutes
before the simulator starts, so all of it is visible at once. Optional "live" records keep
arriving while the simulator runs; they are derived lazily from the clock, minute by minute,
each minute from its own seeded RNG, so a run is reproducible without a background thread.
"""

from __future__ import annotations

import bisect
import datetime
import math
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

# Duo serves nothing newer than two minutes before the request.
VISIBILITY_DELAY_US = 120_000_000
_US_PER_DAY = 86_400_000_000
_US_PER_MINUTE = 60_000_000

CONTEXTS = ("authentication", "enrollment", "administrator login", "verify")
_CONTEXT_WEIGHTS = (80, 8, 7, 5)
TYPES = ("sms", "phone")
_SMS_CREDITS = (1,) * 90 + (2,) * 8 + (0,) * 2  # sms is usually one credit
_PHONE_CREDITS = (2,) * 50 + (1,) * 30 + (3,) * 15 + (0,) * 5  # calls cost more

# Real US area codes with the fictional 555 exchange; UK and AU numbers from the ranges their
# regulators reserve for drama, so no generated number belongs to anyone.
_US_AREA_CODES = (
    "212", "213", "305", "312", "313", "415", "512", "617", "646", "702", "713", "734", "808",
    "919", "206", "303", "404", "503", "602", "720",
)  # fmt: skip

# Chance that an event group is a burst of several events in one millisecond, and its size:
# about a quarter of neighbours share a millisecond, so 1000-record page boundaries regularly
# fall inside a burst (in the default demo data, seed 7 with 5000 records, at record 2000).
_BURST_PROBABILITY = 0.12
_BURST_SIZE = (2, 6)


class Record(NamedTuple):
    ts_us: int
    telephony_id: str
    context: str
    credits: int
    phone: str
    txid: str
    type: str

    @property
    def ts_ms(self) -> int:
        return self.ts_us // 1000


@dataclass(frozen=True)
class DatasetSpec:
    records: int = 5000
    days: float = 2.0
    seed: int = 7
    live_per_minute: float = 0.0
    # Duo's imperfection: this share of the records becomes visible ``late_by_seconds`` after
    # the two minutes Duo promises (its ingestion lags), so it falls in windows already read.
    late_rate: float = 0.0
    late_by_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.records < 0:
            raise ValueError("records must be >= 0")
        if not 0 < self.days <= 180:
            raise ValueError("days must be in (0, 180]: Duo serves only the past 180 days")
        if self.live_per_minute < 0:
            raise ValueError("live_per_minute must be >= 0")
        if not 0 <= self.late_rate <= 1:
            raise ValueError("late_rate must be a share within [0, 1]")
        if self.late_by_seconds < 0:
            raise ValueError("late_by_seconds must be >= 0")


def format_ts(ts_us: int) -> str:
    """Duo's timestamp format: ``2023-03-21T22:34:49.466370+00:00`` (always 6 digits, UTC)."""
    seconds, micros = divmod(ts_us, 1_000_000)
    base = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{micros:06d}+00:00"


def to_item(record: Record) -> dict[str, object]:
    """The record as Duo's v2 item, keys in Duo's order."""
    return {
        "context": record.context,
        "credits": record.credits,
        "phone": record.phone,
        "telephony_id": record.telephony_id,
        "ts": format_ts(record.ts_us),
        "txid": record.txid,
        "type": record.type,
    }


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _uuid4_at(h: str, o: int) -> str:
    """A uuid4-shaped id from the 32 hex digits of ``h`` at offset ``o``."""
    return (
        f"{h[o : o + 8]}-{h[o + 8 : o + 12]}-4{h[o + 13 : o + 16]}-"
        f"{_VARIANT[h[o + 16]]}{h[o + 17 : o + 20]}-{h[o + 20 : o + 32]}"
    )


def _phone(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.85:
        return f"+1{rng.choice(_US_AREA_CODES)}555{rng.randrange(10_000):04d}"
    if roll < 0.93:
        return f"+447700900{rng.randrange(1000):03d}"
    return f"+61491570{rng.randrange(1000):03d}"


def _phone_pool(rng: random.Random, records: int) -> list[str]:
    # Users authenticate repeatedly, so numbers recur; the pool grows with the data set.
    return [_phone(rng) for _ in range(max(20, records // 15))]


def _generate(
    rng: random.Random, count: int, first_ms: int, last_ms: int, phones: list[str]
) -> list[Record]:
    """``count`` records with timestamps in ``[first_ms, last_ms]``, in serving order."""
    # Speed matters (100,000 records in well under 2 s): ids come from one big hex draw of the
    # seeded RNG, choices use int(rand() * n), and tuples skip NamedTuple's Python __new__.
    rand = rng.random
    ids = f"{rng.getrandbits(256 * count):0{64 * count}x}" if count else ""
    contexts = rng.choices(CONTEXTS, weights=_CONTEXT_WEIGHTS, k=count)
    new = tuple.__new__
    span, n_phones = last_ms - first_ms + 1, len(phones)
    n_sms, n_phone = len(_SMS_CREDITS), len(_PHONE_CREDITS)
    out: list[Record] = []
    i = 0
    while i < count:
        size = rng.randint(*_BURST_SIZE) if rand() < _BURST_PROBABILITY else 1
        ms_us = (first_ms + int(rand() * span)) * 1000
        for _ in range(min(size, count - i)):
            if rand() < 0.6:
                kind, credits = "sms", _SMS_CREDITS[int(rand() * n_sms)]
            else:
                kind, credits = "phone", _PHONE_CREDITS[int(rand() * n_phone)]
            ts_us = ms_us + int(rand() * 1000)
            phone = phones[int(rand() * n_phones)]
            o = 64 * i
            fields = (
                ts_us,
                _uuid4_at(ids, o),
                contexts[i],
                credits,
                phone,
                _uuid4_at(ids, o + 32),
                kind,
            )
            out.append(new(Record, fields))
            i += 1
    out.sort()  # tuples compare (ts_us, telephony_id) first; ids are unique
    return out


class Dataset:
    """Every record the simulator knows, sorted by (ts in microseconds, telephony_id).

    ``start`` is the simulator's start time (epoch seconds, from its clock). The list only ever
    grows at the end (live records are newer than every base record), so indexes are stable and
    readers may keep using an index range they obtained earlier.
    """

    def __init__(self, spec: DatasetSpec, start: float) -> None:
        self.spec = spec
        self.start_us = int(start * 1_000_000)
        rng = random.Random(spec.seed)
        self._phones = _phone_pool(rng, spec.records)
        last_ms = (self.start_us - VISIBILITY_DELAY_US) // 1000 - 1
        first_ms = last_ms - int(spec.days * _US_PER_DAY) // 1000 + 1
        self._records = _generate(rng, spec.records, first_ms, last_ms, self._phones)
        self._live_minutes = 0  # live minutes already appended
        self._live_end_minute: int | None = None  # end_live(): no live minute from here on
        self._lock = threading.Lock()

    @property
    def base_count(self) -> int:
        return self.spec.records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> Record:
        return self._records[index]

    def slice(self, start: int, stop: int) -> list[Record]:
        return self._records[start:stop]

    def _live_count_before(self, minute: int) -> int:
        # Cumulative arrivals, so fractional rates (0.5/minute) add up exactly.
        return math.floor(self.spec.live_per_minute * minute)

    def _materialize_live(self, now_us: int) -> None:
        """Append the live minutes that can hold visible records at ``now_us``."""
        if self.spec.live_per_minute <= 0:
            return
        horizon = now_us - VISIBILITY_DELAY_US - self.start_us
        wanted = horizon // _US_PER_MINUTE + 1 if horizon >= 0 else 0
        with self._lock:
            if self._live_end_minute is not None:
                wanted = min(wanted, self._live_end_minute)
            while self._live_minutes < wanted:
                minute = self._live_minutes
                count = self._live_count_before(minute + 1) - self._live_count_before(minute)
                first_ms = -(-(self.start_us + minute * _US_PER_MINUTE) // 1000)  # ceil: >= start
                rng = random.Random(f"duo-sim-live:{self.spec.seed}:{minute}")
                self._records.extend(
                    _generate(rng, count, first_ms, first_ms + 59_999, self._phones)
                )
                self._live_minutes += 1

    def end_live(self, now: float) -> int:
        """Stops live arrivals: no record newer than the live minute under way at ``now``.
        Returns where the records end (ms, exclusive), so a run can wait until everything
        before it has been fetched and checked."""
        self._materialize_live(int(now * 1_000_000))
        with self._lock:
            self._live_end_minute = self._live_minutes
            return -(-(self.start_us + self._live_minutes * _US_PER_MINUTE) // 1000)

    def visible_end(self, now: float) -> int:
        """Index one past the newest record visible at ``now`` (ts <= now - 2 minutes)."""
        now_us = int(now * 1_000_000)
        self._materialize_live(now_us)
        cutoff = now_us - VISIBILITY_DELAY_US
        return bisect.bisect_right(self._records, cutoff, key=lambda r: r.ts_us)

    def is_late(self, record: Record) -> bool:
        """Whether the record is one Duo publishes late: a fixed share of the records, chosen
        by their (random) ids, so the same records are late on every run with this seed."""
        return self.is_late_id(record.telephony_id)

    def is_late_id(self, telephony_id: str) -> bool:
        return (
            self.spec.late_rate > 0
            and int(telephony_id[-8:], 16) < self.spec.late_rate * 0x1_0000_0000
        )

    def visible(self, record: Record, now_us: int) -> bool:
        delay = VISIBILITY_DELAY_US
        if self.is_late(record):
            delay += int(self.spec.late_by_seconds * 1_000_000)
        return record.ts_us + delay <= now_us

    def visible_from(self, start: int, stop: int, now: float, step: int = 1) -> Iterator[Record]:
        """The records visible at ``now`` from index ``start`` towards ``stop`` (excluded),
        ascending (``step`` 1) or descending (-1). Only the newest records, those a late
        record may still hide among, are looked at one by one."""
        now_us = int(now * 1_000_000)
        settled = now_us - VISIBILITY_DELAY_US - int(self.spec.late_by_seconds * 1_000_000)
        hidden_from = bisect.bisect_right(self._records, settled, key=lambda r: r.ts_us)
        for i in range(start, stop, step):
            record = self._records[i]
            if i < hidden_from or self.visible(record, now_us):
                yield record

    def first_at_or_after_ms(self, ms: int, hi: int) -> int:
        return bisect.bisect_left(self._records, ms * 1000, hi=hi, key=lambda r: r.ts_us)

    def first_after_us(self, us: int, hi: int) -> int:
        return bisect.bisect_right(self._records, us, hi=hi, key=lambda r: r.ts_us)

    def index_of(self, ts_ms: int, telephony_id: str, hi: int) -> int | None:
        """Index of the record a paging token names, among the first ``hi`` records."""
        i = self.first_at_or_after_ms(ts_ms, hi)
        end_us = (ts_ms + 1) * 1000
        while i < hi and self._records[i].ts_us < end_us:
            if self._records[i].telephony_id == telephony_id:
                return i
            i += 1
        return None

    def iter_range(self, start: int, stop: int) -> Iterator[Record]:
        for i in range(start, stop):
            yield self._records[i]
