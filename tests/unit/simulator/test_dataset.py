"""The simulator's data set: reproducible, Duo-shaped, in serving order, bursty, live."""

from __future__ import annotations

import datetime
import re
import uuid

import pytest

from simulator.dataset import (
    CONTEXTS,
    VISIBILITY_DELAY_US,
    Dataset,
    DatasetSpec,
    format_ts,
    to_item,
)

START = 1_800_000_000.0
TS_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00")
E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def all_records(dataset: Dataset) -> list:
    return dataset.slice(0, len(dataset))


def test_same_seed_gives_the_same_records_and_another_seed_does_not() -> None:
    a = all_records(Dataset(DatasetSpec(records=2000, seed=7), START))
    b = all_records(Dataset(DatasetSpec(records=2000, seed=7), START))
    c = all_records(Dataset(DatasetSpec(records=2000, seed=8), START))
    assert a == b
    assert {r.telephony_id for r in a}.isdisjoint({r.telephony_id for r in c})


def test_a_later_start_shifts_the_same_records_in_time() -> None:
    a = all_records(Dataset(DatasetSpec(records=500, seed=3), START))
    b = all_records(Dataset(DatasetSpec(records=500, seed=3), START + 3600))
    assert [r.telephony_id for r in a] == [r.telephony_id for r in b]
    assert {rb.ts_us - ra.ts_us for ra, rb in zip(a, b, strict=True)} == {3_600_000_000}


@pytest.mark.parametrize("count", [0, 1, 7, 5000])
def test_exactly_the_requested_number_of_records(count: int) -> None:
    dataset = Dataset(DatasetSpec(records=count), START)
    assert len(dataset) == count
    assert dataset.visible_end(START) == count  # all of it is visible at start


def test_records_span_the_days_that_end_two_minutes_before_start() -> None:
    records = all_records(Dataset(DatasetSpec(records=3000, days=2), START))
    end_us = int(START * 1e6) - VISIBILITY_DELAY_US
    assert all(end_us - 2 * 86_400_000_000 <= r.ts_us <= end_us for r in records)
    # spread over the whole span, not bunched at one end
    assert records[0].ts_us < end_us - 47 * 3_600_000_000
    assert records[-1].ts_us > end_us - 3_600_000_000


def test_records_are_in_serving_order_with_unique_ids() -> None:
    records = all_records(Dataset(DatasetSpec(records=5000), START))
    keys = [(r.ts_us, r.telephony_id) for r in records]
    assert keys == sorted(keys)
    assert len({r.telephony_id for r in records}) == 5000


def test_items_have_duo_fields_in_duo_order_and_realistic_values() -> None:
    records = all_records(Dataset(DatasetSpec(records=3000), START))
    items = [to_item(r) for r in records]
    for item in items:
        assert list(item) == [
            "context",
            "credits",
            "phone",
            "telephony_id",
            "ts",
            "txid",
            "type",
        ]
        assert TS_FORMAT.fullmatch(item["ts"]), item["ts"]
        assert E164.fullmatch(item["phone"]), item["phone"]
        assert item["context"] in CONTEXTS
        assert item["type"] in ("sms", "phone")
        assert isinstance(item["credits"], int) and 0 <= item["credits"] <= 3
        for key in ("telephony_id", "txid"):
            parsed = uuid.UUID(item[key])
            assert str(parsed) == item[key] and parsed.version == 4
    assert {i["context"] for i in items} == set(CONTEXTS)
    sms = [i["credits"] for i in items if i["type"] == "sms"]
    calls = [i["credits"] for i in items if i["type"] == "phone"]
    assert sms.count(1) / len(sms) > 0.8  # sms usually costs one credit
    assert sum(calls) / len(calls) > sum(sms) / len(sms)  # calls cost more
    assert len({i["phone"] for i in items}) < len(items) / 2  # users come back


def test_ts_format_matches_duo_exactly() -> None:
    ts_us = 1_679_438_089_466_370  # Duo's documentation example
    assert format_ts(ts_us) == "2023-03-21T22:34:49.466370+00:00"
    assert format_ts(1_679_438_089_000_000) == "2023-03-21T22:34:49.000000+00:00"
    record = Dataset(DatasetSpec(records=10), START)[0]
    parsed = datetime.datetime.fromisoformat(to_item(record)["ts"])
    assert round(parsed.timestamp() * 1e6) == record.ts_us


def test_several_events_regularly_share_a_millisecond() -> None:
    records = all_records(Dataset(DatasetSpec(records=5000), START))
    shared = sum(
        1
        for i, r in enumerate(records)
        if (i > 0 and records[i - 1].ts_ms == r.ts_ms)
        or (i + 1 < len(records) and records[i + 1].ts_ms == r.ts_ms)
    )
    assert shared / len(records) > 0.1
    # with the default seed, a 1000-record page boundary falls inside such a burst
    boundaries = [i for i in range(1000, 5000, 1000) if records[i - 1].ts_ms == records[i].ts_ms]
    assert boundaries


def test_live_records_arrive_over_time_and_show_two_minutes_later() -> None:
    dataset = Dataset(DatasetSpec(records=100, live_per_minute=60, seed=5), START)
    assert dataset.visible_end(START) == 100
    assert dataset.visible_end(START + 120) == 100  # arrived, not yet visible
    # at start + 3 min the first live minute [start, start + 60 s) is visible, the second is not
    assert dataset.visible_end(START + 180) == 160
    assert dataset.visible_end(START + 240) == 220
    live = dataset.slice(100, 220)
    assert all(r.ts_us >= int(START * 1e6) for r in live)
    keys = [(r.ts_us, r.telephony_id) for r in all_records(dataset)]
    assert keys == sorted(keys)


def test_ended_live_arrivals_stop_after_the_minute_under_way() -> None:
    dataset = Dataset(DatasetSpec(records=100, live_per_minute=60, seed=5), START)
    # at start + 150 s the minute [start, start + 60 s) is under way (its records show at 2 min)
    end_ms = dataset.end_live(START + 150)
    assert end_ms == int(START * 1000) + 60_000
    assert dataset.visible_end(START + 3600) == 160
    assert all(r.ts_ms < end_ms for r in all_records(dataset))


def test_live_records_are_deterministic_and_fractional_rates_add_up() -> None:
    a = Dataset(DatasetSpec(records=10, live_per_minute=0.5, seed=9), START)
    b = Dataset(DatasetSpec(records=10, live_per_minute=0.5, seed=9), START)
    end_a = a.visible_end(START + 120 + 600)  # ten full minutes visible
    assert end_a == 15
    b.visible_end(START + 300)  # b materializes in two steps
    assert b.visible_end(START + 120 + 600) == 15
    assert a.slice(0, 15) == b.slice(0, 15)


def test_index_of_finds_the_event_a_token_names() -> None:
    dataset = Dataset(DatasetSpec(records=1000), START)
    record = dataset[500]
    assert dataset.index_of(record.ts_ms, record.telephony_id, len(dataset)) == 500
    assert dataset.index_of(record.ts_ms + 1, record.telephony_id, len(dataset)) is None
    assert dataset.index_of(record.ts_ms, str(uuid.UUID(int=0)), len(dataset)) is None


@pytest.mark.parametrize(
    "kwargs", [{"records": -1}, {"days": 0}, {"days": 181}, {"live_per_minute": -1}]
)
def test_invalid_specs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DatasetSpec(**kwargs)
