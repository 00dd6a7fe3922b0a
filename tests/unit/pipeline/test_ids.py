"""Window ids read back: what ``window_id`` writes, and nothing else."""

from __future__ import annotations

import pytest

from shared.pipeline.ids import parse_window_id, window_id


def test_a_window_id_reads_back_to_its_times():
    assert parse_window_id(window_id(1_799_990_000_000, 1_799_993_599_999)) == (
        1_799_990_000_000,
        1_799_993_599_999,
    )


@pytest.mark.parametrize(
    "text",
    [
        "1799990000000",
        "1799990000000-",
        "179999000000-1799993599999",
        "1799990000000-1799993599999x",
        "a-b",
    ],
)
def test_anything_else_is_refused_naming_it(text: str):
    with pytest.raises(ValueError, match="is not a window id"):
        parse_window_id(text)
