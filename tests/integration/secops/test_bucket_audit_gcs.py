"""``duo-telephony verify gs://...`` against fake-gcs-server: planted defects, and a bucket the
whole pipeline wrote."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from harness.catchup import RunOptions, catch_up, local_stack
from services.cli import main
from shared.pipeline.messages import RecordBatch
from shared.pipeline.objects import MAX_LINE_BYTES, encode_batch
from shared.secops.bucket_audit import audit

pytestmark = pytest.mark.integration

PREFIX = "duo/telephony"
WINDOW = "1709622000000-1709625599999"  # 2024-03-05 07:00 to 08:00 UTC


def record(telephony_id: str, minute: int, **extra: Any) -> dict[str, Any]:
    return {
        "context": "authentication",
        "phone": "+12125556707",
        "telephony_id": telephony_id,
        "ts": f"2024-03-05T07:{minute:02d}:00.000000+00:00",
        "type": "sms",
        **extra,
    }


def upload(bucket: storage.Bucket, page: int, records: list[dict[str, Any]], tail: bytes) -> str:
    """One object of the writer's layout holding ``records``, then ``tail``; gzip, as the
    pipeline can write it."""
    [obj] = encode_batch(RecordBatch("acme", WINDOW, page, records), PREFIX, gzip=True)
    data = gzip.compress(gzip.decompress(obj.data) + tail)
    bucket.blob(obj.name).upload_from_string(data, content_type=obj.content_type)
    return obj.name


def test_planted_defects_in_a_bucket_are_found_and_named(gcs_bucket, capsys) -> None:
    first = upload(gcs_bucket, 0, [record("a", 1), record("b", 2)], b"")
    broken = b'{"telephony_id": "c", "ts": \n'
    huge = json.dumps(record("d", 4, padding="x" * MAX_LINE_BYTES)).encode() + b"\n"
    second = upload(gcs_bucket, 1, [record("e", 3), record("a", 5)], broken + huge)
    # Beside the prefix, not under it: the feed does not read it, nor does the audit.
    gcs_bucket.blob(f"{PREFIX}-old/notes.txt").upload_from_string(b"not json\n")

    code = main(["verify", f"gs://{gcs_bucket.name}/{PREFIX}"])
    out = capsys.readouterr().out

    assert code == 1
    assert "  objects  2\n  records  5\n" in out
    assert "defects: 3 - exit code 1" in out
    assert "  duplicate_id: 1  (" in out
    assert f"    a: {first}:1, {second}:2\n" in out
    assert f"    {second}:3: not valid JSON (Expecting value at column 28)\n" in out
    assert f"    {second}:4: {len(huge):,} bytes; the feed accepts at most 4,000,000\n" in out
    assert "notes.txt" not in out


def test_a_bucket_the_pipeline_wrote_passes(local_cloud, tmp_path: Path) -> None:
    run = RunOptions(
        records=3000,
        days=1,
        rate_limit=600,
        bucket=f"audit-{uuid.uuid4().hex[:10]}",
        plan_every=2,
        timeout=300,
    )
    with local_stack(run, tmp_path, progress=lambda _: None) as stack:
        summary = catch_up(stack, lambda _: None)
        report = audit(f"gs://{run.bucket}/{run.prefix}")
    assert summary.expected == 3000
    assert report.exit_code == 0 and report.defect_count == 0
    assert report.records == summary.expected
    assert (report.objects, report.bytes) == (summary.objects, summary.bytes)
    assert report.event_types == {"GENERIC_EVENT": 3000}
    assert list(report.coverage) == [stack.pipeline.config.source]
