"""The scheduler's run hands the sources out in slices: every source in exactly one plan task,
in the order found, none larger than PLAN_SLICE."""

from __future__ import annotations

from services.planner.fanout import fan_out, slices
from shared.pipeline.messages import PlanTask
from shared.pipeline.rate_share import SharedRead
from tests.unit.services.fakes import FakePublisher

T = 1_800_000_000_000


def test_a_thousand_sources_make_forty_tasks_of_twenty_five_each_source_in_one():
    sources = [f"account-{n:04d}" for n in range(1000)]
    plans = slices(sources, 25)
    assert len(plans) == 40
    assert {len(plan.sources) for plan in plans} == {25}
    assert [source for plan in plans for source in plan.sources] == sources


def test_the_last_slice_takes_the_rest_and_a_source_named_twice_is_planned_once():
    assert slices(["a", "b", "a", "c", "d"], 3) == [PlanTask(("a", "b", "c")), PlanTask(("d",))]


def test_no_source_publishes_no_task():
    publisher = FakePublisher([])
    assert fan_out([], 25, publisher) == {"sources": 0, "slices": 0}
    assert publisher.plans == []


def test_the_slices_are_published_together_and_counted():
    publisher = FakePublisher([])
    assert fan_out([f"s{n}" for n in range(60)], 25, publisher) == {"sources": 60, "slices": 3}
    assert [kind for kind, *_ in publisher.events] == ["publish_plans"]  # one call, all slices


def test_each_task_carries_the_shared_budget_parts_of_its_own_sources_only():
    waits = {"child-a": SharedRead(240_000, None, T), "child-c": SharedRead(180_000, None, T)}
    assert slices(["own", "child-a", "child-c"], 2, waits) == [
        PlanTask(("own", "child-a"), {"child-a": waits["child-a"]}),
        PlanTask(("child-c",), {"child-c": waits["child-c"]}),
    ]


def test_the_childrens_reads_of_the_run_come_first_in_their_order_in_one_task():
    # 60 reads this run, in 25-source slices otherwise: one task plans them in the order they
    # start in, so the fetchers receive them about in that order.
    reads = {f"child-{n:02d}": SharedRead(0, T + (59 - n) * 1_000, T) for n in range(60)}
    waiting = {"child-zz": SharedRead(240_000, None, T)}
    plans = slices(["own", *reads, "child-zz"], 25, reads | waiting)
    assert plans[0].sources == tuple(f"child-{n:02d}" for n in reversed(range(60)))
    assert plans[0].waits == reads
    assert plans[1] == PlanTask(("own", "child-zz"), waiting)
