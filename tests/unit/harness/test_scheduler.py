"""The demo's stand-in for Cloud Scheduler: a failed planner call is reported and the next one is
made on time, as Cloud Scheduler makes it; nothing the demo started is stopped for it."""

from __future__ import annotations

import http.client

import pytest

from harness.scheduler import Scheduler
from tests.fakes import FakeClock


class Planner:
    """The planner's /run, whose worker restarts in the middle of the second call."""

    def __init__(self, clock: FakeClock, fail_on: set[int]) -> None:
        self.clock = clock
        self.fail_on = fail_on
        self.calls: list[float] = []

    def __call__(self) -> list[dict[str, int]]:
        self.calls.append(self.clock.now())
        self.clock.advance(2)  # a run takes two seconds
        if len(self.calls) in self.fail_on:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        return [{"planned": 1}]


def test_a_failed_planner_call_is_reported_and_the_next_one_is_made_on_time():
    clock = FakeClock(0)
    planner = Planner(clock, fail_on={2})
    said: list[str] = []
    scheduler = Scheduler(planner, 60, said.append, clock.now)

    scheduler.run_until(lambda: len(planner.calls) == 4, clock.sleep)

    assert planner.calls == [0, 60, 120, 180]
    assert scheduler.failures == 1
    assert said == [
        "planner call failed (RemoteDisconnected: Remote end closed connection without "
        "response); the next one is made on time, as Cloud Scheduler would"
    ]


def test_a_call_that_takes_longer_than_the_period_is_followed_at_once():
    clock = FakeClock(0)
    slow = Planner(clock, fail_on=set())
    scheduler = Scheduler(slow, 1, [].append, clock.now)
    scheduler.run_until(lambda: len(slow.calls) == 3, clock.sleep)
    assert slow.calls == [0, 2, 4]


def test_polling_calls_only_when_a_call_is_due_and_returns_what_the_planner_said():
    clock = FakeClock(0)
    planner = Planner(clock, fail_on={1})
    scheduler = Scheduler(planner, 60, [].append, clock.now)
    assert scheduler.poll() is None  # the first call, failed
    clock.advance(30)
    assert scheduler.poll() is None  # not due
    clock.advance(28)
    assert scheduler.poll() == [{"planned": 1}]
    assert planner.calls == [0, 60]


def test_ctrl_c_during_a_call_ends_the_run():
    def interrupted() -> list:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Scheduler(interrupted, 60, [].append, FakeClock(0).now).call()
