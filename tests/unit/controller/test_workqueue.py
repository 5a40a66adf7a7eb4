"""The controller's work queue: dedup, never two workers on one key, delays, backoff, shutdown, workers."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmesh.controller.workqueue import (
    ExponentialBackoff,
    QueueShutDownError,
    WorkQueue,
    run_workers,
)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=20))


def test_a_key_added_twice_is_queued_once() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a", "b"):
            queue.add(key)
        assert len(queue) == 2
        assert [await queue.get(), await queue.get()] == ["a", "b"]
        assert len(queue) == 0

    run(scenario)


def test_a_key_added_while_processing_is_handed_out_again_only_after_done() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")
        queue.add("a")
        assert len(queue) == 0, "a second worker must not get a key that is being processed"
        assert queue.processing == {"a"}
        queue.done(key)
        assert len(queue) == 1
        assert await queue.get() == "a"
        queue.done("a")
        assert len(queue) == 0 and not queue.processing

    run(scenario)


def test_done_without_a_new_add_does_not_requeue() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        queue.done(await queue.get())
        assert len(queue) == 0
        await asyncio.wait_for(queue.join(), 1)

    run(scenario)


def test_backoff_doubles_from_the_base_up_to_the_cap_and_forget_resets_it() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff()
    delays = [backoff.when("a") for _ in range(14)]
    assert delays[:5] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8])
    assert all(later == pytest.approx(min(2 * earlier, 60.0)) for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == 60.0
    assert backoff.failures("a") == 14
    assert backoff.when("b") == pytest.approx(0.05), "keys back off independently"
    backoff.forget("a")
    assert backoff.failures("a") == 0
    assert backoff.when("a") == pytest.approx(0.05)
    for _ in range(200):  # far past the cap: no overflow
        assert backoff.when("c") <= 60.0


def test_backoff_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="base"):
        ExponentialBackoff(base=0)
    with pytest.raises(ValueError, match="maximum"):
        ExponentialBackoff(base=2, maximum=1)


def test_rate_limited_adds_wait_longer_each_time() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.04, maximum=1))
        loop = asyncio.get_running_loop()
        waited = []
        for _ in range(3):
            start = loop.time()
            queue.add_rate_limited("a")
            assert len(queue) == 0 and queue.waiting == 1
            key = await queue.get()
            waited.append(loop.time() - start)
            queue.done(key)
        assert waited[0] >= 0.035 and waited[1] >= 0.075 and waited[2] >= 0.155, waited
        assert waited[0] < waited[1] < waited[2]
        assert queue.num_requeues("a") == 3
        queue.forget("a")
        assert queue.num_requeues("a") == 0

    run(scenario)


def test_delayed_keys_come_out_in_the_order_they_become_ready() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("late", 0.15)
        queue.add_after("early", 0.03)
        queue.add_after("middle", 0.08)
        queue.add("now")
        assert len(queue) == 1 and queue.waiting == 3
        order = []
        for _ in range(4):
            key = await queue.get()
            order.append(key)
            queue.done(key)
        assert order == ["now", "early", "middle", "late"]

    run(scenario)


def test_the_earliest_delay_of_a_key_wins_and_it_comes_out_once() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        queue.add_after("a", 5.0)
        queue.add_after("a", 0.05)  # earlier: replaces the 5 s timer
        queue.add_after("a", 1.0)  # later than the pending one: ignored
        assert queue.waiting == 1
        assert await queue.get() == "a"
        assert loop.time() - start < 0.5
        queue.done("a")
        await asyncio.sleep(1.2)
        assert len(queue) == 0 and queue.waiting == 0, "the replaced timers must not add it again"

    run(scenario)


def test_a_waiting_getter_is_woken_by_an_add() -> None:
    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue()
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        assert not getter.done()
        queue.add(7)
        assert await asyncio.wait_for(getter, 1) == 7

    run(scenario)


def test_a_cancelled_getter_does_not_swallow_the_key_it_was_woken_for() -> None:
    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.add(1)  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        assert await asyncio.wait_for(second, 1) == 1
        with pytest.raises(asyncio.CancelledError):
            await first

    run(scenario)


def test_shutdown_drains_queued_keys_drops_delayed_ones_and_releases_getters() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        idle_getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.shutdown()
        with pytest.raises(QueueShutDownError):
            await asyncio.wait_for(idle_getter, 1)

        queue = WorkQueue()
        queue.add("queued")
        queue.add_after("delayed", 0.05)
        queue.shutdown()
        queue.add("ignored")
        queue.add_after("ignored-too", 0.01)
        assert await queue.get() == "queued"
        queue.done("queued")
        await asyncio.sleep(0.1)
        with pytest.raises(QueueShutDownError):
            await queue.get()
        assert queue.waiting == 0

    run(scenario)


def test_workers_never_work_on_one_key_at_once_and_miss_no_add() -> None:
    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue()
        active: Counter[int] = Counter()
        most_at_once: Counter[int] = Counter()
        started: Counter[int] = Counter()
        # For each key, how many adds a run has not seen yet: every add must be followed by a run.
        unseen: Counter[int] = Counter()

        async def handler(key: int) -> None:
            started[key] += 1
            unseen[key] = 0
            active[key] += 1
            most_at_once[key] = max(most_at_once[key], active[key])
            await asyncio.sleep(0.002 * (key % 3))
            active[key] -= 1

        async def producer() -> None:
            for round_ in range(40):
                for key in range(7):
                    for _ in range(3):  # a burst: the three adds of a key coalesce
                        queue.add(key)
                        unseen[key] += 1
                    if key == round_ % 7:
                        await asyncio.sleep(0.001)
                await asyncio.sleep(0.001 if round_ % 3 else 0)

        workers = asyncio.create_task(run_workers(queue, 4, handler))
        await producer()
        await asyncio.wait_for(queue.join(), 5)
        queue.shutdown()
        await asyncio.wait_for(workers, 5)
        assert set(most_at_once.values()) == {1}
        assert all(count == 0 for count in unseen.values()), unseen
        assert sum(started.values()) <= 40 * 7 * 2, "adds of a queued key must coalesce"

    run(scenario)


def test_a_failing_handler_is_retried_with_backoff_then_forgotten() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.02, maximum=1))
        loop = asyncio.get_running_loop()
        calls: list[float] = []

        async def handler(key: str) -> None:
            calls.append(loop.time())
            if len(calls) < 4:
                raise RuntimeError("agent unreachable")

        queue.add("a")
        workers = asyncio.create_task(run_workers(queue, 2, handler))
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        await queue.join()
        gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
        assert gaps[0] >= 0.015 and gaps[1] >= 0.035 and gaps[2] >= 0.075, gaps
        assert queue.num_requeues("a") == 0, "success forgets the failures"
        queue.shutdown()
        await workers

    run(scenario)


def test_a_handler_asks_to_be_called_again_later() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        calls: list[float] = []

        async def handler(key: str) -> float | None:
            calls.append(loop.time())
            return 0.1 if len(calls) == 1 else None

        queue.add("a")
        workers = asyncio.create_task(run_workers(queue, 1, handler))
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        assert calls[1] - calls[0] >= 0.09
        await asyncio.sleep(0.2)
        assert len(calls) == 2
        queue.shutdown()
        await workers

    run(scenario)


def test_run_workers_needs_a_worker() -> None:
    async def scenario() -> None:
        async def handler(key: str) -> None:
            return None

        with pytest.raises(ValueError, match="at least 1"):
            await run_workers(WorkQueue(), 0, handler)

    run(scenario)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 4)),
        st.tuples(st.just("get"), st.just(0)),
        st.tuples(st.just("done"), st.integers(0, 10)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_queue_invariants_hold_for_any_sequence(ops: list[tuple[str, int]]) -> None:
    """Against a model: a key is queued at most once, never queued while processed, and every add is
    eventually followed by a hand-out of that key."""

    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue()
        held: list[int] = []
        owed: set[int] = set()  # keys added since they were last handed out
        for op, value in ops:
            if op == "add":
                queue.add(value)
                owed.add(value)
            elif op == "get" and len(queue):
                key = await queue.get()
                assert key not in held
                held.append(key)
                owed.discard(key)
            elif op == "done" and held:
                queue.done(held.pop(value % len(held)))
            queued = list(queue._queue)
            assert len(queued) == len(set(queued))
            assert not set(queued) & set(held)
        for key in held:
            queue.done(key)
        handed: set[int] = set()
        while len(queue):
            key = await queue.get()
            handed.add(key)
            queue.done(key)
        assert owed <= handed

    asyncio.run(scenario())
