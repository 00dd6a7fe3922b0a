"""Object names, grouping by hour and the bytes of the objects the writer would upload."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.duo.records import RecordError
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import (
    GZIP_CONTENT_TYPE,
    MAX_LINE_BYTES,
    NDJSON_CONTENT_TYPE,
    LineTooLongError,
    ObjectName,
    decode_offsets,
    decode_records,
    encode_batch,
    encode_line,
    name_floor,
    parse_object_name,
)

WINDOW = "1700000000000-1700003600000"


def record(ts: str, telephony_id: str = "id", **extra: Any) -> dict[str, Any]:
    return {"context": "authentication", "telephony_id": telephony_id, "ts": ts, **extra}


def batch(*records: dict[str, Any], page: int = 3, source: str = "acme-1") -> RecordBatch:
    return RecordBatch(source, WINDOW, page, list(records))


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_name_has_the_hour_folder_first_ts_source_window_and_page() -> None:
    objects = encode_batch(batch(record("2024-03-05T07:08:09.012345+00:00")), "duo/tel", False)
    assert [obj.name for obj in objects] == [
        "duo/tel/2024/03/05/07/20240305T070809012345Z_acme-1_1700000000000-1700003600000"
        "_p00003.ndjson"
    ]


def test_gzip_adds_the_gz_suffix_and_content_type() -> None:
    (plain,) = encode_batch(batch(record("2024-03-05T07:08:09.012345+00:00")), "p", False)
    (packed,) = encode_batch(batch(record("2024-03-05T07:08:09.012345+00:00")), "p", True)
    assert packed.name == plain.name + ".gz"
    assert (plain.content_type, packed.content_type) == (NDJSON_CONTENT_TYPE, GZIP_CONTENT_TYPE)
    assert gzip.decompress(packed.data) == plain.data


def test_first_ts_is_the_earliest_record_and_in_utc_whatever_the_offset() -> None:
    records = [
        record("2024-03-05T09:30:00.000001+02:00", "b"),  # 07:30:00.000001Z
        record("2024-03-05T07:10:00.500000+00:00", "a"),
    ]
    (obj,) = encode_batch(batch(*records), "p", False)
    assert obj.name.startswith("p/2024/03/05/07/20240305T071000500000Z_")
    assert obj.metadata["first_ts"] == "2024-03-05T07:10:00.500000+00:00"
    assert obj.metadata["last_ts"] == "2024-03-05T07:30:00.000001+00:00"


def test_a_batch_is_one_object_in_its_first_records_hour_keeping_the_batch_order() -> None:
    records = [
        record("2024-03-05T07:59:59.999999+00:00", "a"),
        record("2024-03-05T08:00:00.000000+00:00", "b"),
        record("2024-03-05T07:00:00.000000+00:00", "c"),
        record("2024-03-05T08:30:00.000000+00:00", "d"),
    ]
    (obj,) = encode_batch(batch(*records), "p", False)
    assert obj.name.split("/")[1:5] == ["2024", "03", "05", "07"]
    assert [r["telephony_id"] for r in lines(obj.data)] == ["a", "b", "c", "d"]
    assert obj.record_count == 4
    assert obj.name.split("/")[-1].startswith("20240305T070000000000Z_")
    assert (obj.metadata["first_ts"], obj.metadata["last_ts"]) == (
        "2024-03-05T07:00:00+00:00",
        "2024-03-05T08:30:00+00:00",
    )


def test_a_sparse_page_spanning_a_thousand_hours_is_still_one_object() -> None:
    # Issue 8, case 8: one object per hour made a sparse page up to 1,000 uploads in one
    # writer request, past the ack deadline. A batch is one upload whatever it spans.
    hours = [f"2024-01-{1 + n // 24:02d}T{n % 24:02d}:15:00.000000+00:00" for n in range(0, 744, 3)]
    records = [record(ts, f"r{n}") for n, ts in enumerate(hours)]
    (obj,) = encode_batch(batch(*records), "p", False)
    assert obj.name.rsplit("/", 1)[0] == "p/2024/01/01/00"
    assert obj.record_count == len(hours) == 248


def test_an_empty_batch_is_no_object() -> None:
    assert encode_batch(batch(), "p", False) == []


def test_names_sort_by_time_across_hour_folders_days_and_batches() -> None:
    earlier = encode_batch(batch(record("2024-01-09T23:59:00.000000+00:00")), "p", False)
    later = encode_batch(batch(record("2024-01-10T00:30:00.000000+00:00"), page=0), "p", False)
    latest = encode_batch(batch(record("2024-01-10T01:00:00.000000+00:00"), page=2), "p", False)
    names = [obj.name for obj in later + latest + earlier]
    times = [parse_object_name(name).first_ts for name in names]
    assert sorted(names) == [names[2], names[0], names[1]]
    assert sorted(times) == [times[2], times[0], times[1]]


def test_the_same_batch_gives_the_same_names_and_bytes() -> None:
    records = [
        record("2024-03-05T07:08:09.012345+00:00", "a", phone="+1"),
        record("2024-03-05T10:00:00.000000+00:00", "b"),
    ]
    for use_gzip in (False, True):
        first = encode_batch(batch(*records), "p", use_gzip)
        again = encode_batch(batch(*[dict(r) for r in records]), "p", use_gzip)
        assert first == again
        assert [obj.md5_base64 for obj in first] == [
            base64.b64encode(hashlib.md5(obj.data).digest()).decode() for obj in again
        ]


def test_gzip_bytes_carry_no_timestamp_and_are_fixed() -> None:
    (obj,) = encode_batch(batch(record("2024-03-05T07:08:09.012345+00:00")), "p", True)
    # Magic, deflate, no flags (so no file name), mtime 0.
    assert obj.data[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
    body = (
        b'{"context":"authentication","telephony_id":"id",'
        b'"ts":"2024-03-05T07:08:09.012345+00:00"}\n'
    )
    assert obj.data == gzip.compress(body, mtime=0)
    assert obj.metadata["ndjson_md5"] == base64.b64encode(hashlib.md5(body).digest()).decode()


# Two records' NDJSON and its MD5 in base64, worked out outside the code under test with
# `openssl md5 -binary | base64`.
BODY_AB = (
    b'{"context":"authentication","telephony_id":"a","ts":"2024-03-05T07:08:09+00:00"}\n'
    b'{"context":"authentication","telephony_id":"b","ts":"2024-03-05T07:09:00+00:00"}\n'
)
BODY_AB_MD5 = "dmkGg5Yfpxt5SUpwoxHPhQ=="


def records_ab() -> RecordBatch:
    return batch(record("2024-03-05T07:08:09+00:00", "a"), record("2024-03-05T07:09:00+00:00", "b"))


def test_metadata_describes_the_object() -> None:
    (obj,) = encode_batch(records_ab(), "p", False)
    assert obj.data == BODY_AB
    assert obj.md5_base64 == BODY_AB_MD5
    assert obj.record_count == 2
    assert obj.metadata == {
        "source": "acme-1",
        "window_id": WINDOW,
        "page": "3",
        "records": "2",
        "first_ts": "2024-03-05T07:08:09+00:00",
        "last_ts": "2024-03-05T07:09:00+00:00",
        "ndjson_md5": BODY_AB_MD5,
    }


def test_a_gzip_object_names_the_md5_of_its_ndjson_and_of_its_bytes() -> None:
    (obj,) = encode_batch(records_ab(), "p", True)
    assert gzip.decompress(obj.data) == BODY_AB
    assert obj.metadata["ndjson_md5"] == BODY_AB_MD5
    # Cloud Storage checks an upload against the MD5 of the bytes sent: the gzip bytes.
    assert obj.md5_base64 == base64.b64encode(hashlib.md5(obj.data).digest()).decode()
    assert obj.md5_base64 != BODY_AB_MD5


def test_a_line_keeps_key_order_and_unicode_compact() -> None:
    item = {"ts": "2024-01-01T00:00:00+00:00", "phone": "+33 6 ☎", "z": 1, "a": {"y": [1, None]}}
    line = encode_line(item)
    assert (
        line
        == (
            '{"ts":"2024-01-01T00:00:00+00:00","phone":"+33 6 ☎","z":1,"a":{"y":[1,null]}}\n'
        ).encode()
    )
    assert list(json.loads(line)) == ["ts", "phone", "z", "a"]


def test_a_line_over_4_mb_is_refused_and_one_at_the_limit_is_kept() -> None:
    base = record("2024-01-01T00:00:00+00:00", "big", pad="")
    room = MAX_LINE_BYTES - len(encode_line(base))
    assert len(encode_line({**base, "pad": "x" * room})) == MAX_LINE_BYTES
    with pytest.raises(LineTooLongError, match="'big' encodes to 4000001 bytes"):
        encode_line({**base, "pad": "x" * (room + 1)})
    with pytest.raises(LineTooLongError):
        encode_batch(
            batch(record("2024-01-01T00:00:00+00:00"), {**base, "pad": "é" * room}), "p", False
        )


def test_a_record_without_a_valid_ts_is_refused() -> None:
    with pytest.raises(RecordError, match="no valid ts"):
        encode_batch(batch(record("yesterday")), "p", False)


def test_an_empty_batch_has_no_objects() -> None:
    assert encode_batch(batch(), "p", True) == []


def test_parse_reads_back_every_part() -> None:
    name = (
        "a/b/2024/03/05/07/"
        "20240305T070809012345Z_acme-1_1700000000000-1700003600000_p00042.ndjson.gz"
    )
    parsed = parse_object_name(name, prefix="a/b")
    assert parsed == ObjectName(
        prefix="a/b",
        first_ts=datetime(2024, 3, 5, 7, 8, 9, 12345, tzinfo=UTC),
        source="acme-1",
        window_id="1700000000000-1700003600000",
        page=42,
        gzip=True,
    )
    assert parsed.hour == datetime(2024, 3, 5, 7, tzinfo=UTC)
    assert parsed.name == name


@pytest.mark.parametrize("use_gzip", [False, True])
def test_parse_round_trips_the_written_names(use_gzip: bool) -> None:
    records = [record("2024-03-05T07:08:09.012345+00:00"), record("2024-03-06T00:00:00+00:00")]
    for obj in encode_batch(batch(*records, page=99999), "duo", use_gzip):
        parsed = parse_object_name(obj.name, prefix="duo")
        assert (parsed.source, parsed.window_id, parsed.page, parsed.gzip) == (
            "acme-1",
            WINDOW,
            99999,
            use_gzip,
        )
        assert parsed.first_ts.isoformat() == obj.metadata["first_ts"]
        assert parsed.name == obj.name


def test_an_empty_prefix_gives_names_that_start_with_the_year() -> None:
    (obj,) = encode_batch(batch(record("2024-03-05T07:08:09+00:00")), "", False)
    assert obj.name.startswith("2024/03/05/07/20240305T070809000000Z_")
    assert parse_object_name(obj.name).prefix == ""


GOOD = "p/2024/03/05/07/20240305T070809012345Z_acme-1_1700000000000-1700003600000_p00042.ndjson"


@pytest.mark.parametrize(
    "name",
    [
        GOOD.replace("/07/", "/08/"),  # not its hour folder
        GOOD.replace("2024/03/05", "2024/3/05"),
        GOOD.replace(".ndjson", ".json"),
        GOOD + ".gzip",
        GOOD.replace("_p00042", "_p42"),
        GOOD.replace("acme-1", "Acme_1"),
        GOOD.replace("1700000000000-", "170000000000-"),
        GOOD.replace("20240305T070809012345Z", "20240305T070809Z"),
        GOOD.replace("20240305T07", "20240235T07").replace("03/05", "02/35"),  # no such day
        "20240305T070809012345Z_acme-1_1700000000000-1700003600000_p00042.ndjson",
        "p/2024/03/05/07/",
        "p/2024/03/05/07/notes.txt",
    ],
)
def test_names_outside_the_layout_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        parse_object_name(name)


def test_parse_refuses_another_prefix() -> None:
    assert parse_object_name(GOOD, prefix="p/").prefix == "p"
    with pytest.raises(ValueError, match="not under the prefix"):
        parse_object_name(GOOD, prefix="q")
    with pytest.raises(ValueError, match="not under the prefix"):
        parse_object_name("x/" + GOOD, prefix="p")


def test_object_name_refuses_parts_that_would_not_parse_back() -> None:
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="page"):
        ObjectName("p", ts, "acme", WINDOW, 100_000, False)
    with pytest.raises(ValueError, match="source"):
        ObjectName("p", ts, "a_b", WINDOW, 1, False)
    with pytest.raises(ValueError, match="UTC"):
        ObjectName("p", ts.astimezone(timezone(timedelta(hours=1))), "acme", WINDOW, 1, False)
    with pytest.raises(ValueError, match="prefix"):
        ObjectName("/p", ts, "acme", WINDOW, 1, False)


@pytest.mark.parametrize("prefix", ["p", ""])
def test_a_name_lies_between_the_floors_of_its_first_records_microsecond_and_the_next(
    prefix: str,
) -> None:
    # The planner lists a gap's objects from one floor to another: an object must fall in
    # exactly the floors around its earliest record.
    us = 1_704_844_740_123_456  # 2024-01-09T23:59:00.123456Z
    (obj,) = encode_batch(batch(record("2024-01-09T23:59:00.123456+00:00")), prefix, False)
    assert name_floor(prefix, us) <= obj.name < name_floor(prefix, us + 1)
    assert (
        name_floor(prefix, us - 1) < name_floor(prefix, us) < name_floor(prefix, us + 3_600_000_000)
    )


@pytest.mark.parametrize("use_gzip", [False, True])
def test_an_object_reads_back_to_its_records_and_its_batchs_tokens(use_gzip: bool) -> None:
    records = [
        record("2024-01-09T23:59:00.000000+00:00", "a"),
        record("2024-01-10T00:00:01.000000+00:00", "b"),
    ]
    with_tokens = RecordBatch("acme-1", WINDOW, 3, records, ("1704844740000,x", None))
    (obj,) = encode_batch(with_tokens, "p", use_gzip)
    assert decode_records(obj.data, use_gzip) == records
    assert decode_offsets(obj.metadata) == ("1704844740000,x", None)
    (old,) = encode_batch(batch(*records), "p", use_gzip)
    assert decode_offsets(old.metadata) is None
