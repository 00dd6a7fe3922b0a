"""Counting Firestore's billable operations at its API client, on a stand-in for the client:
each document returned or looked up is a read, an empty answer still one, and a commit's
writes are writes or deletes once it succeeded."""

from __future__ import annotations

from typing import Any

import pytest

from shared.gcp.operations import Operations, count_firestore


class FakeApi:
    """The four calls of Firestore's API client the counting wraps; responses are dicts, for
    which ``"field" in response`` asks what it asks of a proto-plus message."""

    def __init__(self, responses: list[dict[str, Any]], fail_commit: bool = False) -> None:
        self._responses = responses
        self._fail_commit = fail_commit

    def run_query(self, **kwargs: Any) -> Any:
        return iter(self._responses)

    def batch_get_documents(self, **kwargs: Any) -> Any:
        return iter(self._responses)

    def run_aggregation_query(self, **kwargs: Any) -> Any:
        return iter(self._responses)

    def commit(self, request: Any = None, **kwargs: Any) -> str:
        if self._fail_commit:
            raise RuntimeError("aborted")
        return "committed"


def counted(responses: list[dict[str, Any]], fail_commit: bool = False):
    api, tally = FakeApi(responses, fail_commit), Operations()
    count_firestore(api, tally)
    return api, tally


def test_each_document_a_query_returns_is_a_read() -> None:
    api, tally = counted([{"document": 1}, {"read_time": 2}, {"document": 3}])
    assert len(list(api.run_query(request={}))) == 3
    assert tally.snapshot() == {"firestore_reads": 2}


def test_a_query_that_returns_nothing_is_one_read() -> None:
    api, tally = counted([{"read_time": 2}])
    assert list(api.run_query(request={})) == [{"read_time": 2}]
    assert tally.snapshot() == {"firestore_reads": 1}


def test_a_lookup_reads_found_and_missing_documents_alike() -> None:
    api, tally = counted([{"found": 1}, {"missing": "x"}])
    stream = api.batch_get_documents(request={})
    next(stream)  # a single get reads only the first answer, and stops
    assert tally.snapshot() == {"firestore_reads": 1}
    next(stream)
    assert tally.snapshot() == {"firestore_reads": 2}


def test_an_aggregation_is_one_read() -> None:
    api, tally = counted([{"result": {"count": 40}}])
    list(api.run_aggregation_query(request={}))
    assert tally.snapshot() == {"firestore_reads": 1}


def test_a_commit_counts_its_writes_and_deletes() -> None:
    api, tally = counted([])
    writes = [{"update": 1}, {"delete": "a"}, {"update": 2, "update_transforms": []}]
    assert api.commit(request={"writes": writes}) == "committed"
    assert tally.snapshot() == {"firestore_writes": 2, "firestore_deletes": 1}


def test_a_commit_that_fails_writes_nothing() -> None:
    api, tally = counted([], fail_commit=True)
    with pytest.raises(RuntimeError):
        api.commit(request={"writes": [{"update": 1}]})
    assert tally.snapshot() == {}
