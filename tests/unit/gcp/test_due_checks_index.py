"""The late-record checks' query without its composite index: Firestore refuses it, and the
planner's error names the index, the database and the command that makes it."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core.exceptions import FailedPrecondition
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from shared.gcp.window_store import MissingIndexError, WindowStore
from shared.pipeline.repair import CHECK_BATCH_MS
from tests.fakes import FakeClock

# Firestore's answer to a query whose composite index does not exist (or is still building).
NO_INDEX = FailedPrecondition(
    "The query requires an index. You can create it here: "
    "https://console.firebase.google.com/v1/r/project/acme/firestore/indexes?create_composite=x"
)


class RefusingDb:
    """A Firestore client on ``database`` whose queries fail with ``error``."""

    def __init__(self, database: str, error: Exception) -> None:
        self._database = database
        self.error = error

    def __getattr__(self, name: str) -> Any:
        # collection, document, where, order_by, limit: the query is built on this object.
        return lambda *args, **kwargs: self

    def stream(self) -> Any:
        raise self.error


def test_a_missing_index_names_the_index_the_database_and_the_command() -> None:
    store = WindowStore(RefusingDb("duo-telephony", NO_INDEX), FakeClock())
    with pytest.raises(MissingIndexError) as raised:
        store.due_checks("acme-prod", limit=10, batch_ms=CHECK_BATCH_MS)
    message = str(raised.value)
    assert "composite index on windows (state, next_check_at_ms)" in message
    assert "in the Firestore database duo-telephony" in message
    assert "step firestore-index" in message
    assert (
        "gcloud firestore indexes composite create --collection-group=windows "
        "--database=duo-telephony --field-config=field-path=state,order=ascending "
        "--field-config=field-path=next_check_at_ms,order=ascending" in message
    )
    assert "The query requires an index" in message  # Firestore's own words, kept


def test_another_refusal_is_not_taken_for_a_missing_index() -> None:
    other = FailedPrecondition("the database is being deleted")
    store = WindowStore(RefusingDb("duo-telephony", other), FakeClock())
    with pytest.raises(FailedPrecondition) as raised:
        store.due_checks("acme-prod", limit=10, batch_ms=CHECK_BATCH_MS)
    assert raised.value is other


def test_the_client_keeps_the_database_it_was_opened_on_where_the_store_reads_it() -> None:
    client = firestore.Client(
        project="acme", database="duo-telephony", credentials=AnonymousCredentials()
    )
    assert client._database == "duo-telephony"
