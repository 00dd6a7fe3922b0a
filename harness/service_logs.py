"""The services' logs as the local harness keeps them: one file per service (``<name>.log`` in
the run's log folder), the service's structured lines (one JSON object a line) among
gunicorn's own lines and tracebacks. Everything in the harness reads them through here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def read_log(path: Path) -> list[str]:
    # A worker killed mid-write can leave a broken character; that line is skipped, not fatal.
    with path.open(encoding="utf-8", errors="replace") as log:
        return list(log)


def structured_lines(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each JSON object line with what it holds; other lines (gunicorn's, tracebacks, a line
    cut short by a killed worker) are skipped."""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield line, entry


def log_entries(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """What the JSON object lines hold, in order."""
    return (entry for _, entry in structured_lines(lines))
