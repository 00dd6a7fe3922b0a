"""Reading records: NDJSON or a response body, plain or gzip, with per-line errors."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from shared.secops.record_source import SourceError, SourceLine, parse_stream, read_records

# The example response of Duo's telephony v2 documentation.
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "duo-docs-telephony-v2.json"
SAMPLE_IDS = [
    "220f89ff-bff8-4466-b6cb-b7787940ce68",
    "60799fee-f08f-4ba8-971f-4e53b3473e9a",
    "5bf1a860-fe39-49e3-be29-217659663a74",
]


def ndjson(*records: dict) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def parse(data: bytes, origin: str = "mem") -> list[SourceLine]:
    return list(parse_stream(origin, io.BytesIO(data)))


def test_ndjson_yields_one_record_per_line_and_skips_blank_lines() -> None:
    data = b'{"telephony_id": "a"}\n\n   \n{"telephony_id": "b"}\r\n{"telephony_id": "c"}'
    assert parse(data) == [
        SourceLine("mem", 1, record={"telephony_id": "a"}),
        SourceLine("mem", 4, record={"telephony_id": "b"}),
        SourceLine("mem", 5, record={"telephony_id": "c"}),
    ]


def test_a_line_that_is_not_json_is_an_error_and_the_rest_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b'{"telephony_id": "a"}\n{"telephony_id": "b", \n{"telephony_id": "c"}\n')
    lines = list(read_records(str(path)))
    assert [line.record for line in lines] == [{"telephony_id": "a"}, None, {"telephony_id": "c"}]
    bad = lines[1]
    assert (bad.origin, bad.line_no) == (str(path), 2)
    assert (
        bad.error
        == "not valid JSON (Expecting property name enclosed in double quotes at column 22)"
    )
    assert bad.location == f"{path}:2"


def test_a_first_line_that_is_not_json_does_not_swallow_the_rest() -> None:
    lines = parse(b'oops\n{"telephony_id": "b"}\n')
    assert lines[0].error == "not valid JSON (Expecting value at column 1)"
    assert lines[1] == SourceLine("mem", 2, record={"telephony_id": "b"})


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[1, 2]", "a JSON array, not an object"),
        (b'"text"', "a JSON string, not an object"),
        (b"42", "a JSON number, not an object"),
        (b"null", "a JSON null, not an object"),
        (b'{"a": "\xff"}', "not UTF-8 text (invalid start byte at byte 7)"),
    ],
)
def test_a_line_that_is_no_json_object_is_an_error(line: bytes, error: str) -> None:
    assert parse(line + b"\n" + ndjson({"x": "1"})) == [
        SourceLine("mem", 1, error=error),
        SourceLine("mem", 2, record={"x": "1"}),
    ]


def test_a_pretty_printed_response_body_yields_its_items() -> None:
    lines = parse(SAMPLE.read_bytes(), origin="sample.json")
    assert [line.record["telephony_id"] for line in lines] == SAMPLE_IDS
    assert [line.item_no for line in lines] == [1, 2, 3]
    assert lines[1].location == "sample.json:1 item 2"
    assert all(line.error is None for line in lines)


def test_a_response_body_on_one_line_yields_its_items() -> None:
    body = json.loads(SAMPLE.read_text())
    lines = parse(ndjson({"telephony_id": "first"}, body))
    assert lines[0].record == {"telephony_id": "first"}
    assert [(line.line_no, line.item_no, line.record["telephony_id"]) for line in lines[1:]] == [
        (2, 1, SAMPLE_IDS[0]),
        (2, 2, SAMPLE_IDS[1]),
        (2, 3, SAMPLE_IDS[2]),
    ]


def test_a_response_item_that_is_not_an_object_is_an_error() -> None:
    body = {"stat": "OK", "response": {"items": [{"telephony_id": "a"}, 7]}}
    assert parse(ndjson(body)) == [
        SourceLine("mem", 1, record={"telephony_id": "a"}, item_no=1),
        SourceLine("mem", 1, error="a JSON number, not an object", item_no=2),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"stat": "FAIL", "code": 40002, "message": "Invalid request parameters"},
            "a Duo error response: 40002 Invalid request parameters",
        ),
        ({"stat": "OK", "response": []}, "a Duo response without a response.items list"),
    ],
)
def test_a_response_without_items_is_an_error(body: dict, error: str) -> None:
    assert parse(ndjson(body)) == [SourceLine("mem", 1, error=error)]


def test_a_broken_pretty_printed_document_is_one_error_at_the_bad_line() -> None:
    data = b'\n{\n  "stat": "OK",\n  "response": {"items": [}\n}\n'
    assert parse(data) == [
        SourceLine("mem", 4, error="not valid JSON (Expecting value at column 26)")
    ]


def test_gzip_is_recognised_by_its_magic_bytes_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "records.json"  # no .gz suffix
    path.write_bytes(gzip.compress(ndjson({"telephony_id": "a"}) + b"not json\n"))
    lines = list(read_records(str(path)))
    assert lines == [
        SourceLine(str(path), 1, record={"telephony_id": "a"}),
        SourceLine(str(path), 2, error="not valid JSON (Expecting value at column 1)"),
    ]


def test_a_gzipped_response_body(tmp_path: Path) -> None:
    path = tmp_path / "page.json.gz"
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    assert [line.record["telephony_id"] for line in read_records(str(path))] == SAMPLE_IDS


def test_concatenated_gzip_members_are_read_whole() -> None:
    data = gzip.compress(ndjson({"n": "1"})) + gzip.compress(ndjson({"n": "2"}))
    assert [line.record for line in parse(data)] == [{"n": "1"}, {"n": "2"}]


def test_truncated_gzip_keeps_the_lines_before_and_reports_the_rest() -> None:
    data = gzip.compress(ndjson(*({"n": str(i)} for i in range(2000))))
    lines = parse(data[: len(data) - 40])
    assert lines[0].record == {"n": "0"}
    assert lines[-1].error is not None
    assert lines[-1].error.startswith("unreadable gzip data (")
    assert lines[-1].line_no == len(lines)
    assert all(line.error is None for line in lines[:-1])


class _RawStream(io.RawIOBase):
    """A stream without peek, like a gs:// BlobReader, that counts what is read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


def test_ndjson_is_streamed_not_read_whole() -> None:
    data = ndjson(*({"n": str(i)} for i in range(20_000)))
    stream = _RawStream(data)
    lines = parse_stream("stream", stream)
    assert next(lines).record == {"n": "0"}
    assert stream.bytes_read < len(data) // 10
    assert sum(1 for _ in lines) == 19_999


def test_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_records(str(tmp_path / "missing.ndjson")))


# The gs:// path against the Storage emulator is tested in the integration tests; these fakes
# only pin the order, the naming and the download options.
class _FakeBlob:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data
        self.open_args: tuple = ()

    def open(self, mode: str, **kwargs: object) -> io.BytesIO:
        self.open_args = (mode, kwargs)
        return io.BytesIO(self._data)


class _FakeClient:
    def __init__(self, blobs: list[_FakeBlob]) -> None:
        self.blobs = blobs
        self.listed: tuple = ()

    def list_blobs(self, bucket: str, prefix: str | None = None) -> list[_FakeBlob]:
        self.listed = (bucket, prefix)
        return self.blobs


def test_gs_objects_are_read_in_name_order_with_their_uri_as_origin() -> None:
    blobs = [
        _FakeBlob("duo/2023/b.ndjson.gz", gzip.compress(ndjson({"n": "b"}))),
        _FakeBlob("duo/2023/a.ndjson", ndjson({"n": "a1"}, {"n": "a2"})),
    ]
    client = _FakeClient(blobs)
    lines = list(read_records("gs://logs/duo/2023/", storage_client=client))
    assert client.listed == ("logs", "duo/2023/")
    assert [(line.location, line.record) for line in lines] == [
        ("gs://logs/duo/2023/a.ndjson:1", {"n": "a1"}),
        ("gs://logs/duo/2023/a.ndjson:2", {"n": "a2"}),
        ("gs://logs/duo/2023/b.ndjson.gz:1", {"n": "b"}),
    ]
    assert blobs[0].open_args == ("rb", {"chunk_size": 1024 * 1024, "raw_download": True})


def test_a_whole_bucket_is_listed_without_a_prefix() -> None:
    client = _FakeClient([_FakeBlob("x", ndjson({"n": "1"}))])
    assert [line.record for line in read_records("gs://logs", storage_client=client)] == [
        {"n": "1"}
    ]
    assert client.listed == ("logs", None)


@pytest.mark.parametrize(
    ("uri", "message"),
    [("gs://", "no bucket in 'gs://'"), ("gs://logs/none/", "no objects under gs://logs/none/")],
)
def test_a_gs_source_without_objects_raises(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        list(read_records(uri, storage_client=_FakeClient([])))


def test_a_cloud_error_is_a_source_error() -> None:
    from google.api_core.exceptions import NotFound

    class _MissingBucket(_FakeClient):
        def list_blobs(self, bucket: str, prefix: str | None = None) -> list[_FakeBlob]:
            raise NotFound("bucket missing")

    with pytest.raises(SourceError, match="404 bucket missing"):
        list(read_records("gs://gone/x", storage_client=_MissingBucket([])))
