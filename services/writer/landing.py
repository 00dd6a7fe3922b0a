"""The writer's work on one record batch: its objects in Cloud Storage, then its marker.

The marker is written only after every object of the batch is durably stored with the
batch's records, and it is what lets the planner call a window finished and move the
watermark past it. An object found with other records under the batch's name is never
overwritten, and the batch is not marked: Pub/Sub redelivers it, dead-letters it, and the
planner reads the window again, landing the missing records under new names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from services import structured_log
from shared.gcp.bucket_writer import WriteResult
from shared.gcp.window_store import WindowStore
from shared.pipeline.messages import RecordBatch

log = logging.getLogger(__name__)


class BatchConflictError(RuntimeError):
    """Objects of the batch's names already hold other records; the batch did not land."""


def land_batch(
    batch: RecordBatch, write: Callable[[RecordBatch], WriteResult], store: WindowStore
) -> WriteResult | None:
    """Writes the batch with ``write`` (``write_batch`` bound to the bucket) unless its marker
    says it already landed (None then): the feed may have deleted the objects after
    transferring them, and writing them again would make SecOps ingest them twice."""
    if store.batch_landed(batch.source, batch.window_id, batch.page):
        structured_log.event(
            log, logging.INFO, f"batch {batch.batch_id} already landed", source=batch.source
        )
        return None
    if store.superseded(batch):
        # Its window is being read again (this batch did not land in time): the re-read lands
        # these records, if they are missing; landing them here too could land them twice.
        structured_log.event(
            log,
            logging.WARNING,
            f"batch {batch.batch_id} superseded by a re-read of its window",
            source=batch.source,
        )
        return None
    result = write(batch)
    if result.conflicting:
        raise BatchConflictError(
            f"batch {batch.batch_id}: {result.conflicting} of its objects already exist with "
            "other records; not marked landed, so the window is read again"
        )
    store.record_batch(batch, list(result.object_names))
    structured_log.event(
        log,
        logging.INFO,
        f"batch {batch.batch_id} landed",
        source=batch.source,
        window_id=batch.window_id,
        page=batch.page,
        records=len(batch.records),
        records_written=result.records_written,
        bytes_written=result.bytes_written,
        objects=len(result.object_names),
        already_present=result.already_present,
        conflicting=result.conflicting,
    )
    return result
