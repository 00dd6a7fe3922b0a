"""Crashes during a local catch-up: a service worker killed with SIGKILL every so often (the
fetcher's every other time), as a crashing Cloud Run instance would die, and how long each
window the killed fetcher held took to be taken up again."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.pipeline import LocalPipeline


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master: its child processes."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:  # field 4 of stat: the parent
            children.append(int(stat.parent.name))
    return children


@dataclass
class ChaosReport:
    kills: dict[str, int] = field(default_factory=dict)
    recoveries: list[float] = field(default_factory=list)  # seconds, per window a kill held
    unrecovered: int = 0  # windows not taken up again before the run ended


class Chaos:
    """Kills a worker every ``every`` seconds (drawn from the range) while the catch-up runs;
    ``windows`` gives the open windows' documents by id (the harness reads Firestore)."""

    def __init__(
        self,
        pipeline: LocalPipeline,
        windows: Callable[[], dict[str, dict[str, Any]]],
        every: tuple[float, float] = (15.0, 30.0),
        seed: int = 1,
    ) -> None:
        self._pipeline = pipeline
        self._windows = windows
        self._every = every
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.report = ChaosReport()

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        turn = 0
        watched: dict[str, tuple[float, int]] = {}  # window id -> (killed at, attempts then)
        next_kill = time.monotonic() + self._rng.uniform(*self._every)
        while not self._stop.wait(1.0):
            self._follow(watched)
            if time.monotonic() < next_kill:
                continue
            name = "fetcher" if turn % 2 == 0 else ("writer", "planner")[turn // 2 % 2]
            turn += 1
            if name == "fetcher":
                held = {
                    window_id: (time.monotonic(), doc["attempts"])
                    for window_id, doc in self._windows().items()
                    if doc["state"] == "fetching"
                }
                watched.update(held)
            self._kill_worker(name)
            next_kill = time.monotonic() + self._rng.uniform(*self._every)
        self._follow(watched)  # the run may have ended within the last second's poll
        self.report.unrecovered = len(watched)

    def _kill_worker(self, name: str) -> None:
        master = self._pipeline.services[name].pid
        for pid in worker_pids(master) if master else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.report.kills[name] = self.report.kills.get(name, 0) + 1

    def _follow(self, watched: dict[str, tuple[float, int]]) -> None:
        """Windows a killed fetcher held are recovered once claimed again or finished."""
        if not watched:
            return
        docs = self._windows()
        for window_id, (killed_at, attempts) in list(watched.items()):
            doc = docs.get(window_id)
            if doc is None or doc["attempts"] > attempts or doc["state"] in ("fetched", "done"):
                self.report.recoveries.append(time.monotonic() - killed_at)
                del watched[window_id]
